//! The values expressions compute with: JSON-shaped, with GitHub's coercions.

use indexmap::IndexMap;

use crate::casefold;
use crate::eval::{Val, value_loose_eq};
use crate::json;

/// An object: insertion-ordered; property lookup through [`Value::get`] is case-insensitive,
/// as in GitHub's expression language.
pub type Map = IndexMap<String, Value>;

/// A value of the expression language.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

impl Value {
    /// Case-insensitive property lookup on an object; `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(map) => map_get(map, key),
            _ => None,
        }
    }

    /// GitHub's truthiness: `null`, `false`, `0`, `NaN` and `""` are false; everything else,
    /// including every array and object (even empty), is true.
    pub fn truthy(&self) -> bool {
        Val::Ref(self).truthy()
    }

    /// GitHub's conversion to string, used by templates, `format`, `join` and string
    /// comparisons: null is `""`, booleans `true`/`false`, numbers as the runner formats them
    /// (.NET `G15`: `1.5`, `1E+21`, `1E-05`, `-0`, `NaN`, `Infinity`), arrays `Array` and
    /// objects `Object`.
    pub fn to_expr_string(&self) -> String {
        Val::Ref(self).to_expr_string()
    }

    /// Converts to JSON. Whole numbers within ±2^53 become JSON integers; NaN and infinities,
    /// which JSON cannot express, become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => {
                const EXACT: f64 = 9_007_199_254_740_992.0;
                if n.fract() == 0.0 && n.abs() <= EXACT && !(*n == 0.0 && n.is_sign_negative()) {
                    serde_json::Value::from(*n as i64)
                } else {
                    serde_json::Number::from_f64(*n)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
            }
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(o) => {
                serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// Exactly what `toJSON()` returns for this value: two-space indentation, `"key": value`,
    /// numbers formatted as in [`Value::to_expr_string`] (so `NaN` or `1E+21` can appear).
    pub fn to_json_pretty(&self) -> String {
        json::value_to_pretty(self)
    }

    /// The `==` operator: values of different kinds are converted to numbers (null is 0,
    /// booleans 1/0, strings parsed, NaN equals nothing); strings compare ignoring case;
    /// arrays and objects are equal only to themselves (the same instance, i.e. the same
    /// address), never to a copy.
    pub fn loose_eq(&self, other: &Value) -> bool {
        value_loose_eq(self, other)
    }

    /// A short description for messages: GitHub's name for the kind of value.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Bool(_) => "Boolean",
            Value::Number(_) => "Number",
            Value::String(_) => "String",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
        }
    }

    /// Converts from JSON, keeping object key order.
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => {
                Value::Array(a.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// A [`Map`] as a JSON object ([`Value::to_json`] of each value).
pub fn map_to_json(map: &Map) -> serde_json::Map<String, serde_json::Value> {
    map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

/// A JSON object as a [`Map`] ([`Value::from_json`] of each value).
pub fn map_from_json(object: serde_json::Map<String, serde_json::Value>) -> Map {
    object
        .into_iter()
        .map(|(k, v)| (k, Value::from_json(v)))
        .collect()
}

/// Case-insensitive lookup in a [`Map`]: an exact match first, then a match ignoring case
/// (.NET `OrdinalIgnoreCase`, as GitHub compares property names).
pub fn map_get<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| casefold::eq_ignore_case(k, key))
            .map(|(_, v)| v)
    })
}

impl std::fmt::Display for Value {
    /// The same text as [`Value::to_expr_string`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_expr_string())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}
impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Object(m)
    }
}
impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}
