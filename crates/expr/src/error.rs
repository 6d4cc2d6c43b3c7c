//! Errors reported by the parser, the checker and the evaluator.

/// A syntax or validation error, located in the string that was parsed.
///
/// `offset` and `len` are byte positions in the string handed to [`crate::parse`],
/// [`crate::parse_template`] or [`crate::parse_condition`] (for a template or condition, the
/// whole string, not only the expression inside `${{ }}`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
    pub len: usize,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>, offset: usize, len: usize) -> Self {
        ParseError {
            message: message.into(),
            offset,
            len,
        }
    }

    /// Moves the error by `base` bytes: used when the expression was cut out of a larger string.
    pub(crate) fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

/// An error raised while evaluating an expression. Evaluation of GitHub expressions is total
/// except for these cases, which GitHub also reports as failures of the step or job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// `fromJSON()` was given text that is not JSON.
    #[error("fromJSON: {message}")]
    FromJson { message: String },
    /// `format()` was given an invalid format string, too few arguments, or format specifiers.
    #[error("format: {message}")]
    Format { message: String },
    /// A function that needs the outside world (`hashFiles`) was called without a [`crate::Host`].
    #[error("{function}() is not available here: no host was supplied to evaluate it")]
    NoHost { function: String },
    /// `hashFiles()` failed, either on its arguments or in the host.
    #[error("hashFiles: {message}")]
    HashFiles { message: String },
    /// The strings made in one evaluation passed the runner's 1 MiB.
    #[error("The maximum allowed memory size was exceeded")]
    Memory,
    /// A `case()` predicate that is not a boolean.
    #[error("case predicate must evaluate to a boolean value")]
    CasePredicate,
}
