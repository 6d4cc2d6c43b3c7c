//! `${{ }}` templates inside strings, split the way the runner's `TemplateReader` does.

use crate::Value;
use crate::error::{EvalError, ParseError};
use crate::eval::{Context, eval};
use crate::parser::{Expr, parse_at};

/// A string that may contain `${{ expression }}` parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text outside any `${{ }}`.
    Literal(String),
    /// An expression, and the byte offset of its (trimmed) text in the template string.
    Expr(Expr, usize),
}

const OPEN: &str = "${{";

/// Splits `s` into literal text and expressions.
///
/// Like GitHub: the end of an expression is the first `}}` outside a single-quoted string,
/// an expression is trimmed and must not be empty, consecutive literal text is merged, and a
/// template that is nothing but one string literal (`${{ 'text' }}`) is literal text, which
/// is how `${{ '${{ not an expression }}' }}` escapes the syntax.
pub fn parse_template(s: &str) -> Result<Template, ParseError> {
    let mut parts: Vec<Part> = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let Some(found) = s[i..].find(OPEN) else {
            push_literal(&mut parts, &s[i..]);
            break;
        };
        let start = i + found;
        if start > i {
            push_literal(&mut parts, &s[i..start]);
        }
        let inner_start = start + OPEN.len();
        let Some(end) = find_close(s, inner_start) else {
            return Err(ParseError::new(
                "The expression is not closed. An unescaped ${{ sequence was found, but the closing }} sequence was not found.",
                start,
                s.len() - start,
            ));
        };
        let raw = &s[inner_start..end];
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new(
                "An expression was expected",
                start,
                end + 2 - start,
            ));
        }
        let offset = inner_start + (raw.len() - raw.trim_start().len());
        let expr = parse_at(trimmed, offset)?;
        parts.push(Part::Expr(expr, offset));
        i = end + 2;
    }
    if let [Part::Expr(expr, _)] = parts.as_slice()
        && let Some(text) = string_literal_text(expr.source())
    {
        parts = vec![Part::Literal(text)];
    }
    Ok(Template { parts })
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if let Some(Part::Literal(last)) = parts.last_mut() {
        last.push_str(text);
    } else {
        parts.push(Part::Literal(text.to_owned()));
    }
}

/// Position of the `}}` closing an expression whose text starts at `from`: the runner toggles
/// a "quoted" flag on every `'` (which also handles `''` escapes) and stops at the first `}`
/// preceded by `}` outside quotes.
fn find_close(s: &str, from: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut quoted = false;
    for i in from..b.len() {
        match b[i] {
            b'\'' => quoted = !quoted,
            b'}' if !quoted && b[i - 1] == b'}' => return Some(i - 1),
            _ => {}
        }
    }
    None
}

/// The runner's `IsExpressionString`: text made only of single-quoted strings back to back,
/// such as `'it''s'`, yields the unquoted text.
fn string_literal_text(expr: &str) -> Option<String> {
    let mut out = String::new();
    let mut quoted = false;
    for (i, c) in expr.char_indices() {
        if c == '\'' {
            quoted = !quoted;
            if quoted && i != 0 {
                out.push(c);
            }
        } else if !quoted {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl Template {
    /// The literal text and expressions, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// True when there is no expression to evaluate.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The expressions, in order.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e, _) => Some(e),
            Part::Literal(_) => None,
        })
    }

    /// Whether the template is exactly one `${{ }}` with no text around it, in which case its
    /// value keeps the expression's type.
    pub fn is_single_expression(&self) -> bool {
        matches!(self.parts.as_slice(), [Part::Expr(..)])
    }

    /// Evaluates the template. A template that is exactly one `${{ expr }}` (no text at all
    /// around it, not even whitespace, as on GitHub) gives the expression's value with its
    /// type; anything else gives a string, the literal text and each expression's string
    /// conversion concatenated.
    pub fn evaluate(&self, ctx: &Context) -> Result<Value, EvalError> {
        if let [Part::Expr(expr, _)] = self.parts.as_slice() {
            crate::functions::reset_memory();
            return Ok(eval(&expr.root, ctx)?.into_value());
        }
        self.evaluate_string(ctx).map(Value::String)
    }

    /// Evaluates the template to a string.
    pub fn evaluate_string(&self, ctx: &Context) -> Result<String, EvalError> {
        // One evaluation: its strings count against one limit.
        crate::functions::reset_memory();
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Expr(expr, _) => out.push_str(&eval(&expr.root, ctx)?.to_expr_string()),
            }
        }
        Ok(out)
    }
}
