//! From the YAML tree to the typed model, reporting every shape error (unknown keys, wrong
//! types, missing keys) rather than stopping at the first.
//!
//! The [`Parser`] and its shape checks (a mapping, known keys with a "did you mean", a
//! string, a template) are here; each part of the model has a module: `workflow` (the
//! top-level keys, and `defaults`, `concurrency`, `permissions`, which a job has too),
//! `triggers` (`on:`), `jobs` (a job and its `strategy`) and `step`.

mod jobs;
mod step;
pub(crate) use step::Place;
mod triggers;
mod workflow;

use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::{Node, NodeKind, Scalar, Span};

pub use triggers::EVENTS;

pub(crate) struct Parser {
    pub(crate) diags: Vec<Diagnostic>,
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known name, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// GitHub's same-repository form `$/path` of a reusable workflow (the workflow's own
/// repository and commit) is read as the local path `./path` (the plan reads it from there).
/// A step's `$/` action stays as written: it needs no checkout (the engine reads it from the
/// repository itself).
pub(super) fn same_repository(mut uses: Spanned<String>) -> Spanned<String> {
    if let Some(rest) = uses.value.strip_prefix("$/") {
        uses.value = format!("./{rest}");
    }
    uses
}

impl Parser {
    fn error(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(msg, span));
    }

    fn expect_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            NodeKind::Map(m) => Some(m),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        format!("{what} must be a mapping, found {}", node.describe()),
                        node.span,
                    )
                    .with_label("expected a mapping"),
                );
                None
            }
        }
    }

    /// Reports keys that are not in `allowed`, with a suggestion.
    fn check_keys(&mut self, entries: &[(Node, Node)], allowed: &[&str], what: &str) {
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !allowed.contains(&key) {
                let mut d = Diagnostic::error(format!("unknown key `{key}` in {what}"), k.span)
                    .with_label("unknown key");
                d = match suggest(key, allowed) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("expected one of: {}", allowed.join(", "))),
                };
                self.diags.push(d);
            }
        }
    }

    /// Warns of each key of `ignored` among `entries`: GitHub has it, pipewright accepts it
    /// and does not act on it yet (`why` says what that means).
    fn ignored_keys(&mut self, entries: &[(Node, Node)], ignored: &[&str], what: &str, why: &str) {
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if ignored.contains(&key) {
                self.diags.push(
                    Diagnostic::warning(format!("`{key}` in {what} is ignored: {why}"), k.span)
                        .with_label("ignored"),
                );
            }
        }
    }

    /// Like `check_keys`, but an unknown key is a warning (GitHub ignores it).
    fn check_keys_leniently(&mut self, entries: &[(Node, Node)], allowed: &[&str], what: &str) {
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !allowed.contains(&key) {
                let mut d = Diagnostic::warning(
                    format!("unknown key `{key}` in {what}: ignored, as GitHub ignores it"),
                    k.span,
                )
                .with_label("ignored");
                d = match suggest(key, allowed) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("expected one of: {}", allowed.join(", "))),
                };
                self.diags.push(d);
            }
        }
    }

    /// A plain string (no expression evaluation).
    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match node.scalar() {
            Some(Scalar::String(s)) => Some(Spanned {
                value: s.to_owned(),
                span: node.span,
            }),
            // Numbers and booleans are fine where a string is expected; GitHub stringifies them.
            Some(Scalar::Number(_) | Scalar::Bool(_)) => Some(Spanned {
                value: node.as_str().unwrap_or_default().to_owned(),
                span: node.span,
            }),
            _ => {
                self.error(
                    format!("{what} must be a string, found {}", node.describe()),
                    node.span,
                );
                None
            }
        }
    }

    /// A string or a sequence of strings.
    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        match &node.kind {
            NodeKind::Seq(items) => {
                Some(items.iter().filter_map(|i| self.string(i, what)).collect())
            }
            NodeKind::Scalar(..) if !node.is_null() => self.string(node, what).map(|s| vec![s]),
            _ => {
                self.error(
                    format!(
                        "{what} must be a string or a sequence of strings, found {}",
                        node.describe()
                    ),
                    node.span,
                );
                None
            }
        }
    }

    /// A value that may be a template; only its shape is checked here.
    fn scalar_template(&mut self, node: &Node, what: &str) -> Option<Node> {
        match node.kind {
            NodeKind::Scalar(..) => Some(node.clone()),
            _ => {
                self.error(
                    format!("{what} must be a scalar, found {}", node.describe()),
                    node.span,
                );
                None
            }
        }
    }

    /// A mapping of names to scalar templates (`env`, `with`, `outputs`).
    fn scalar_map(&mut self, node: &Node, what: &str) -> Option<Node> {
        if let NodeKind::Scalar(..) = node.kind
            && node
                .as_str()
                .is_some_and(|s| s.trim_start().starts_with("${{"))
        {
            return Some(node.clone());
        }
        let entries = self.expect_map(node, what)?;
        for (k, v) in entries {
            if !matches!(v.kind, NodeKind::Scalar(..)) {
                self.error(
                    format!(
                        "{what}: the value of `{}` must be a string, number or boolean, found {}",
                        k.as_str().unwrap_or_default(),
                        v.describe()
                    ),
                    v.span,
                );
            }
        }
        Some(node.clone())
    }

    fn condition(&mut self, node: &Node) -> Option<Spanned<String>> {
        match node.scalar() {
            Some(Scalar::Bool(b)) => Some(Spanned {
                value: b.to_string(),
                span: node.span,
            }),
            Some(Scalar::Null) => None,
            _ => self.string(node, "`if`"),
        }
    }
}

/// Job and step ids: a letter or `_`, then letters, digits, `-` or `_`.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
