//! Validation of an expression against the place it appears in a workflow.

use crate::ast::{Func, NodeKind};
use crate::error::ParseError;
use crate::parser::{Expr, located};

/// What an expression may use where it appears (GitHub's "context availability" table).
#[derive(Debug, Clone, Copy)]
pub struct Allowed<'a> {
    /// Context names allowed here, e.g. `["github", "needs", "strategy", "matrix", "inputs"]`
    /// (compared ignoring case).
    pub contexts: &'a [&'a str],
    /// Whether `success()`, `failure()`, `cancelled()` and `always()` may be called (only in
    /// `if:` conditions).
    pub status_functions: bool,
    /// Whether `hashFiles()` may be called.
    pub hash_files: bool,
}

/// Reports every context and function in `expr` that is not allowed, in source order, with
/// GitHub's wording ("Unrecognized named-value", "Unrecognized function") and the position of
/// the offending name in the string the expression was parsed from.
pub fn check(expr: &Expr, allowed: &Allowed) -> Vec<ParseError> {
    let mut errors: Vec<ParseError> = Vec::new();
    expr.root.walk(&mut |node| {
        let (start, end) = (node.offset, node.offset + node.len);
        match &node.kind {
            NodeKind::Context(name)
                if !allowed
                    .contexts
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(name)) =>
            {
                errors.push(
                    located("Unrecognized named-value", &expr.source, start, end)
                        .shifted(expr.base),
                );
            }
            NodeKind::Call(f, _) => {
                let ok = match f {
                    Func::HashFiles => allowed.hash_files,
                    f if f.is_status() => allowed.status_functions,
                    _ => true,
                };
                if !ok {
                    errors.push(
                        located("Unrecognized function", &expr.source, start, end)
                            .shifted(expr.base),
                    );
                }
            }
            _ => {}
        }
    });
    errors.sort_by_key(|e| e.offset);
    errors
}
