//! Reading the values of deploy.yml's nodes: each reader reports what is wrong where it is.

use workflow::duration::parse_duration;
use workflow::yaml::{self, Node, NodeKind};
use workflow::{Diagnostic, Span};

use super::Checker;

impl Checker {
    pub(super) fn error(&mut self, message: impl Into<String>, span: Span, expected: &str) {
        self.diags
            .push(Diagnostic::error(message, span).with_label(format!("expected {expected}")));
    }

    /// The entries of a mapping, reporting unknown keys.
    pub(super) fn map<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        keys: &[&str],
    ) -> Option<&'n [(Node, Node)]> {
        let Some(entries) = node.as_map() else {
            self.error(
                format!("{what} must be a mapping, found {}", node.describe()),
                node.span,
                "a mapping",
            );
            return None;
        };
        for (k, _) in entries {
            let name = k.as_str().unwrap_or_default();
            if !keys.contains(&name) {
                self.diags.push(
                    Diagnostic::error(format!("unknown key `{name}` in {what}"), k.span)
                        .with_label(format!("expected one of: {}", keys.join(", "))),
                );
            }
        }
        Some(entries)
    }

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(s, _) if !node.is_null() => Some(s.clone()),
            _ => {
                self.error(
                    format!("{what} must be a string, found {}", node.describe()),
                    node.span,
                    "a string",
                );
                None
            }
        }
    }

    pub(super) fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        if let Some(s) = node.as_str()
            && !node.is_null()
        {
            return vec![s.to_owned()];
        }
        let Some(items) = node.as_seq() else {
            self.error(
                format!(
                    "{what} must be a list of strings, found {}",
                    node.describe()
                ),
                node.span,
                "a list of strings",
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| self.string(i, &format!("an item of {what}")))
            .collect()
    }

    pub(super) fn integer(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u64> {
        let n = match node.scalar() {
            Some(yaml::Scalar::Number(n)) if n.fract() == 0.0 => n,
            _ => {
                self.error(
                    format!("{what} must be a whole number, found {}", node.describe()),
                    node.span,
                    &format!("a whole number from {min} to {max}"),
                );
                return None;
            }
        };
        if n < min as f64 || n > max as f64 {
            self.error(
                format!("{what} is {n}, out of range"),
                node.span,
                &format!("a whole number from {min} to {max}"),
            );
            return None;
        }
        Some(n as u64)
    }

    pub(super) fn duration(&mut self, node: &Node, what: &str) -> Option<u64> {
        let d = node.as_str().and_then(parse_duration);
        if d.is_none() {
            self.error(
                format!(
                    "{what} `{}` is not a duration",
                    node.as_str().unwrap_or_default()
                ),
                node.span,
                "a duration such as 500ms, 5s, 2m",
            );
        }
        d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// A path below the deploy path or `shared/`: relative and without `..`.
    pub(super) fn relative_paths(&mut self, node: &Node, what: &str) -> Vec<String> {
        let items = self.strings(node, what);
        let bad = items.iter().any(|p| {
            p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".")
        });
        if bad {
            self.error(
                format!("{what} must be relative paths inside the directory"),
                node.span,
                "paths such as `.env` or `data/uploads`, without `..`",
            );
            return Vec::new();
        }
        items
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_owned())
            .collect()
    }
}
