//! `if:` conditions of jobs and steps.

use crate::error::{EvalError, ParseError};
use crate::eval::{Context, Status, eval};
use crate::parser::{Expr, parse_at};
use crate::template::{Part, Template, parse_template};

/// A parsed `if:` condition.
///
/// GitHub's rules: an empty condition means `success()`; a condition that calls none of
/// `success()`, `failure()`, `cancelled()`, `always()` means `success() && (condition)`; the
/// condition may be written bare or wholly inside one `${{ }}`. When `${{ }}` is mixed with
/// other text (`${{ a }} || b`), GitHub treats the whole value as a string template, whose
/// result is a non-empty string and therefore true: [`Condition::is_interpolation_mistake`]
/// flags that, and evaluation reproduces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Empty or whitespace: `success()`.
    Empty,
    Expr(Expr),
    /// Text mixed with `${{ }}`: a string whose truthiness decides.
    Template(Template),
}

/// Parses an `if:` value.
pub fn parse_condition(s: &str) -> Result<Condition, ParseError> {
    if s.trim().is_empty() {
        return Ok(Condition { kind: Kind::Empty });
    }
    if !s.contains("${{") {
        return parse_at(s, 0).map(|e| Condition {
            kind: Kind::Expr(e),
        });
    }
    let template = parse_template(s)?;
    let kind = match template.parts() {
        [Part::Expr(expr, _)] => Kind::Expr(expr.clone()),
        // `${{ 'text' }}` is literal text to GitHub, and a literal condition is parsed as an
        // expression.
        [Part::Literal(text)] if text.trim().is_empty() => Kind::Empty,
        [Part::Literal(text)] => {
            let offset = s.find("${{").unwrap_or(0);
            Kind::Expr(parse_at(text, offset)?)
        }
        _ => Kind::Template(template),
    };
    Ok(Condition { kind })
}

impl Condition {
    /// Whether a status function appears; if not, the condition only runs after success.
    pub fn uses_status_function(&self) -> bool {
        match &self.kind {
            Kind::Empty => false,
            Kind::Expr(e) => e.uses_status_function(),
            Kind::Template(t) => t.exprs().any(Expr::uses_status_function),
        }
    }

    /// True for `if: ${{ a }} || b`-style values, which GitHub evaluates as a string and which
    /// are therefore (almost) always true.
    pub fn is_interpolation_mistake(&self) -> bool {
        matches!(self.kind, Kind::Template(_))
    }

    /// The expressions the condition evaluates (several for an interpolation mistake).
    pub fn exprs(&self) -> Vec<&Expr> {
        match &self.kind {
            Kind::Empty => Vec::new(),
            Kind::Expr(e) => vec![e],
            Kind::Template(t) => t.exprs().collect(),
        }
    }

    /// The condition as GitHub runs it, for logs: `success()`, `success() && (x)`, `x`, or for
    /// an interpolation mistake `success() && (format('{0} || b', a))`.
    pub fn effective_source(&self) -> String {
        let body = match &self.kind {
            Kind::Empty => return "success()".to_owned(),
            Kind::Expr(e) => e.source().to_owned(),
            Kind::Template(t) => {
                // GitHub rewrites such a template into a `format()` call.
                let (mut text, mut args, mut index) = (String::new(), String::new(), 0);
                for part in t.parts() {
                    match part {
                        Part::Literal(l) => text
                            .push_str(&l.replace('\'', "''").replace('{', "{{").replace('}', "}}")),
                        Part::Expr(e, _) => {
                            text.push_str(&format!("{{{index}}}"));
                            index += 1;
                            args.push_str(", ");
                            args.push_str(e.source());
                        }
                    }
                }
                format!("format('{text}'{args})")
            }
        };
        if self.uses_status_function() {
            body
        } else {
            format!("success() && ({body})")
        }
    }

    /// Decides whether the job or step runs.
    pub fn evaluate(&self, ctx: &Context) -> Result<bool, EvalError> {
        // The implicit `success() &&` short-circuits: nothing else is evaluated after a failure.
        if !self.uses_status_function() && ctx.status != Status::Success {
            return Ok(false);
        }
        match &self.kind {
            Kind::Empty => Ok(true),
            Kind::Expr(e) => {
                crate::functions::reset_memory();
                Ok(eval(&e.root, ctx)?.truthy())
            }
            Kind::Template(t) => Ok(!t.evaluate_string(ctx)?.is_empty()),
        }
    }
}
