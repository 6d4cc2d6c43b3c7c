//! Evaluating template nodes: every string scalar may hold `${{ }}` expressions. A scalar that
//! is exactly one expression keeps the expression's type (so `${{ fromJSON(x) }}` can produce a
//! matrix); others become strings.

use expr::{Context, Value};

/// Why a template could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("invalid expression: {0}")]
    Parse(#[from] expr::ParseError),
    #[error(transparent)]
    Eval(#[from] expr::EvalError),
}

use crate::yaml::{Node, NodeKind, Scalar};

/// Evaluates a template node to a value.
pub fn evaluate(node: &Node, ctx: &Context<'_>) -> Result<Value, EvalError> {
    match &node.kind {
        NodeKind::Scalar(..) => match template_text(node) {
            Some(text) => Ok(template(text)?.evaluate(ctx)?),
            None => Ok(node.to_value()),
        },
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| evaluate(i, ctx))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        NodeKind::Map(entries) => {
            let mut map = expr::Map::new();
            for (k, v) in entries {
                let key = evaluate(k, ctx)?.to_expr_string();
                map.insert(key, evaluate(v, ctx)?);
            }
            Ok(Value::Object(map))
        }
    }
}

/// Evaluates a template node to a string (GitHub's string coercion of the result).
pub fn evaluate_string(node: &Node, ctx: &Context<'_>) -> Result<String, EvalError> {
    if let Some(text) = template_text(node) {
        return Ok(template(text)?.evaluate_string(ctx)?);
    }
    match &node.kind {
        NodeKind::Scalar(text, _) => match node.scalar() {
            Some(Scalar::Null) => Ok(String::new()),
            // A YAML number keeps GitHub's formatting (`3.10` is the number 3.1).
            Some(Scalar::Number(_)) => Ok(node.to_value().to_expr_string()),
            _ => Ok(text.clone()),
        },
        _ => Ok(evaluate(node, ctx)?.to_expr_string()),
    }
}

/// Whether evaluating `node` reads any context: whether one of its strings (keys included)
/// holds a `${{ }}` expression. A node without one evaluates to itself whatever the contexts,
/// so a caller need not make them.
pub fn has_expressions(node: &Node) -> bool {
    match &node.kind {
        NodeKind::Scalar(..) => template_text(node).is_some(),
        NodeKind::Seq(items) => items.iter().any(has_expressions),
        NodeKind::Map(entries) => entries
            .iter()
            .any(|(k, v)| has_expressions(k) || has_expressions(v)),
    }
}

/// The text of a string scalar that holds an expression: the one kind of node evaluated as a
/// template; every other node is its own value.
fn template_text(node: &Node) -> Option<&str> {
    match (&node.kind, node.scalar()) {
        (NodeKind::Scalar(text, _), Some(Scalar::String(_))) if text.contains("${{") => Some(text),
        _ => None,
    }
}

fn template(text: &str) -> Result<expr::Template, EvalError> {
    Ok(expr::parse_template(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(yaml: &str) -> Node {
        crate::yaml::load(yaml).expect("test YAML parses")
    }

    #[test]
    fn a_node_has_expressions_when_one_of_its_strings_holds_one_keys_included() {
        for (yaml, expected) in [
            ("ubuntu-latest", false),
            ("[self-hosted, linux]", false),
            ("{group: big, labels: [x]}", false),
            ("5", false),
            ("${{ matrix.os }}", true),
            ("[self-hosted, 'os-${{ matrix.os }}']", true),
            ("{labels: ['${{ inputs.label }}']}", true),
            ("{'${{ github.ref }}': x}", true),
        ] {
            assert_eq!(has_expressions(&node(yaml)), expected, "{yaml}");
        }
    }

    #[test]
    fn a_node_without_expressions_evaluates_to_itself_with_no_contexts() {
        let empty = expr::Map::new();
        let ctx = Context {
            contexts: &empty,
            status: expr::Status::Success,
            host: None,
        };
        let n = node("{group: big, labels: [x, 3.10, 'a b']}");
        assert!(!has_expressions(&n));
        assert_eq!(evaluate(&n, &ctx).expect("evaluates"), n.to_value());
    }
}
