//! `workflow_dispatch` inputs: the values given (strings, as a form or the CLI sends them)
//! checked against the workflow's typed inputs, with defaults filled in.

use expr::{Map, Value};

use crate::model::{InputType, Workflow};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input `{0}` is required")]
    Required(String),
    #[error("input `{name}` is a {kind}, got `{value}`")]
    Type {
        name: String,
        kind: &'static str,
        value: String,
    },
    #[error("input `{name}` must be one of {options}, got `{value}`")]
    Choice {
        name: String,
        options: String,
        value: String,
    },
    #[error("workflow_dispatch has no input `{name}`{known}")]
    Unknown { name: String, known: String },
}

/// The `inputs` context of a dispatch of `wf` with the `given` values.
pub fn dispatch_inputs(wf: &Workflow, given: &Map) -> Result<Map, InputError> {
    let mut out = Map::new();
    let defs = wf
        .on
        .events
        .get("workflow_dispatch")
        .map(|t| t.inputs.clone())
        .unwrap_or_default();
    for (name, def) in &defs {
        let raw = match expr::map_get(given, name) {
            Some(v) => Some(v.to_expr_string()),
            None => def.default.as_ref().map(|d| d.to_value().to_expr_string()),
        };
        let Some(raw) = raw else {
            if def.required {
                return Err(InputError::Required(name.clone()));
            }
            let empty = if def.kind == InputType::Boolean {
                Value::Bool(false)
            } else {
                Value::String(String::new())
            };
            out.insert(name.clone(), empty);
            continue;
        };
        let type_error = || InputError::Type {
            name: name.clone(),
            kind: def.kind.name(),
            value: raw.clone(),
        };
        let v = match def.kind {
            InputType::Boolean => match raw.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(type_error()),
            },
            InputType::Number => {
                Value::Number(raw.trim().parse::<f64>().map_err(|_| type_error())?)
            }
            InputType::Choice => {
                if !def.options.contains(&raw) {
                    return Err(InputError::Choice {
                        name: name.clone(),
                        options: def.options.join(", "),
                        value: raw,
                    });
                }
                Value::String(raw)
            }
            _ => Value::String(raw),
        };
        out.insert(name.clone(), v);
    }
    for k in given.keys() {
        if !defs.keys().any(|d| d.eq_ignore_ascii_case(k)) {
            return Err(InputError::Unknown {
                name: k.clone(),
                known: if defs.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (inputs: {})",
                        defs.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            });
        }
    }
    Ok(out)
}
