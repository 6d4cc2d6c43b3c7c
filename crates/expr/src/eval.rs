//! Evaluation of a parsed expression against contexts.

use std::cmp::Ordering;

use crate::ast::{CmpOp, Node, NodeKind};
use crate::casefold;
use crate::error::EvalError;
use crate::functions;
use crate::number::{format_number, parse_number};
use crate::parser::Expr;
use crate::{Map, Value, map_get};

/// The job's status so far, which `success()`, `failure()` and `cancelled()` report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Cancelled,
}

/// Functions that need the world outside this crate, supplied by the caller.
pub trait Host: Sync {
    /// Hashes the files matching `patterns` (already converted to strings, in order; a first
    /// argument `--follow-symbolic-links` is passed through for the host to interpret).
    fn hash_files(&self, patterns: &[String]) -> Result<String, EvalError>;
}

/// Everything an expression can read.
pub struct Context<'a> {
    /// The contexts by name (`github`, `env`, `matrix`, ...); keys are lowercase.
    pub contexts: &'a Map,
    pub status: Status,
    pub host: Option<&'a dyn Host>,
}

/// Evaluates `expr`. Missing properties and contexts evaluate to null, as on GitHub.
pub fn evaluate(expr: &Expr, ctx: &Context) -> Result<Value, EvalError> {
    crate::functions::reset_memory();
    Ok(eval(&expr.root, ctx)?.into_value())
}

/// A value during evaluation.
///
/// GitHub compares arrays and objects by identity, so we must know whether two composite
/// values are the same instance: values read from the contexts are borrowed and compared by
/// address, while values built during evaluation (`fromJSON`, filters) are owned and so are
/// never identical to anything else. `Filtered` is the result of a `*` filter: indexing it
/// applies the index to each element instead of picking an element.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Ref(&'a Value),
    Owned(Value),
    Filtered(Vec<Val<'a>>),
}

/// A primitive view of a value, for coercions.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Prim<'v> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'v str),
}

/// The shape of any value, with an identity for composites read from the contexts.
#[derive(Debug, Clone, Copy)]
enum Shape<'v> {
    Prim(Prim<'v>),
    Array(Option<*const Value>),
    Object(Option<*const Value>),
}

fn shape_of_value(v: &Value, identity: Option<*const Value>) -> Shape<'_> {
    match v {
        Value::Null => Shape::Prim(Prim::Null),
        Value::Bool(b) => Shape::Prim(Prim::Bool(*b)),
        Value::Number(n) => Shape::Prim(Prim::Num(*n)),
        Value::String(s) => Shape::Prim(Prim::Str(s)),
        Value::Array(_) => Shape::Array(identity),
        Value::Object(_) => Shape::Object(identity),
    }
}

impl<'a> Val<'a> {
    fn shape(&self) -> Shape<'_> {
        match self {
            Val::Ref(v) => shape_of_value(v, Some(*v as *const Value)),
            Val::Owned(v) => shape_of_value(v, None),
            Val::Filtered(_) => Shape::Array(None),
        }
    }

    pub(crate) fn prim(&self) -> Option<Prim<'_>> {
        match self.shape() {
            Shape::Prim(p) => Some(p),
            _ => None,
        }
    }

    pub(crate) fn is_array(&self) -> bool {
        matches!(self.shape(), Shape::Array(_))
    }

    pub(crate) fn truthy(&self) -> bool {
        match self.prim() {
            Some(p) => prim_truthy(p),
            None => true,
        }
    }

    pub(crate) fn to_expr_string(&self) -> String {
        match self.shape() {
            Shape::Prim(p) => prim_to_string(p),
            Shape::Array(_) => "Array".to_owned(),
            Shape::Object(_) => "Object".to_owned(),
        }
    }

    /// Array elements, borrowed from the contexts where possible.
    pub(crate) fn into_elements(self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Ref(Value::Array(items)) => Some(items.iter().map(Val::Ref).collect()),
            Val::Owned(Value::Array(items)) => Some(items.into_iter().map(Val::Owned).collect()),
            Val::Filtered(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::Ref(v) => v.clone(),
            Val::Owned(v) => v,
            Val::Filtered(items) => Value::Array(items.into_iter().map(Val::into_value).collect()),
        }
    }
}

pub(crate) fn prim_truthy(p: Prim<'_>) -> bool {
    match p {
        Prim::Null => false,
        Prim::Bool(b) => b,
        Prim::Num(n) => !(n == 0.0 || n.is_nan()),
        Prim::Str(s) => !s.is_empty(),
    }
}

pub(crate) fn prim_to_string(p: Prim<'_>) -> String {
    match p {
        Prim::Null => String::new(),
        Prim::Bool(b) => b.to_string(),
        Prim::Num(n) => format_number(n),
        Prim::Str(s) => s.to_owned(),
    }
}

fn prim_to_number(p: Prim<'_>) -> f64 {
    match p {
        Prim::Null => 0.0,
        Prim::Bool(b) => f64::from(u8::from(b)),
        Prim::Num(n) => n,
        Prim::Str(s) => parse_number(s),
    }
}

fn to_number(v: &Val<'_>) -> f64 {
    v.prim().map_or(f64::NAN, prim_to_number)
}

fn kind_rank(s: &Shape<'_>) -> u8 {
    match s {
        Shape::Prim(Prim::Null) => 0,
        Shape::Prim(Prim::Bool(_)) => 1,
        Shape::Prim(Prim::Num(_)) => 2,
        Shape::Prim(Prim::Str(_)) => 3,
        Shape::Array(_) => 4,
        Shape::Object(_) => 5,
    }
}

/// The runner's `CoerceTypes`: number/string pairs become numbers, and null or booleans
/// become numbers before comparing with anything of another kind. Arrays and objects are
/// never converted.
fn coerce<'v>(mut l: Shape<'v>, mut r: Shape<'v>) -> (Shape<'v>, Shape<'v>) {
    loop {
        if kind_rank(&l) == kind_rank(&r) {
            return (l, r);
        }
        match (l, r) {
            (Shape::Prim(Prim::Num(_)), Shape::Prim(Prim::Str(s))) => {
                return (l, Shape::Prim(Prim::Num(parse_number(s))));
            }
            (Shape::Prim(Prim::Str(s)), Shape::Prim(Prim::Num(_))) => {
                return (Shape::Prim(Prim::Num(parse_number(s))), r);
            }
            (Shape::Prim(p @ (Prim::Bool(_) | Prim::Null)), _) => {
                l = Shape::Prim(Prim::Num(prim_to_number(p)))
            }
            (_, Shape::Prim(p @ (Prim::Bool(_) | Prim::Null))) => {
                r = Shape::Prim(Prim::Num(prim_to_number(p)))
            }
            _ => return (l, r),
        }
    }
}

fn shapes_equal(l: Shape<'_>, r: Shape<'_>) -> bool {
    match coerce(l, r) {
        (Shape::Prim(Prim::Null), Shape::Prim(Prim::Null)) => true,
        (Shape::Prim(Prim::Num(a)), Shape::Prim(Prim::Num(b))) => a == b,
        (Shape::Prim(Prim::Str(a)), Shape::Prim(Prim::Str(b))) => casefold::eq_ignore_case(a, b),
        (Shape::Prim(Prim::Bool(a)), Shape::Prim(Prim::Bool(b))) => a == b,
        (Shape::Array(Some(a)), Shape::Array(Some(b)))
        | (Shape::Object(Some(a)), Shape::Object(Some(b))) => std::ptr::eq(a, b),
        _ => false,
    }
}

/// `Some(ordering)` when the coerced values are comparable (numbers without NaN, strings,
/// booleans); `None` otherwise, which makes every ordering operator false.
fn shapes_order(l: Shape<'_>, r: Shape<'_>) -> Option<Ordering> {
    match coerce(l, r) {
        (Shape::Prim(Prim::Num(a)), Shape::Prim(Prim::Num(b))) => a.partial_cmp(&b),
        (Shape::Prim(Prim::Str(a)), Shape::Prim(Prim::Str(b))) => {
            Some(casefold::cmp_ignore_case(a, b))
        }
        (Shape::Prim(Prim::Bool(a)), Shape::Prim(Prim::Bool(b))) => Some(a.cmp(&b)),
        _ => None,
    }
}

pub(crate) fn loose_eq(l: &Val<'_>, r: &Val<'_>) -> bool {
    shapes_equal(l.shape(), r.shape())
}

pub(crate) fn value_loose_eq(l: &Value, r: &Value) -> bool {
    shapes_equal(
        shape_of_value(l, Some(l as *const Value)),
        shape_of_value(r, Some(r as *const Value)),
    )
}

fn compare(op: CmpOp, l: &Val<'_>, r: &Val<'_>) -> bool {
    let (ls, rs) = (l.shape(), r.shape());
    match op {
        CmpOp::Eq => shapes_equal(ls, rs),
        CmpOp::Ne => !shapes_equal(ls, rs),
        CmpOp::Lt => shapes_order(ls, rs) == Some(Ordering::Less),
        CmpOp::Gt => shapes_order(ls, rs) == Some(Ordering::Greater),
        CmpOp::Le => shapes_equal(ls, rs) || shapes_order(ls, rs) == Some(Ordering::Less),
        CmpOp::Ge => shapes_equal(ls, rs) || shapes_order(ls, rs) == Some(Ordering::Greater),
    }
}

pub(crate) fn eval<'a>(node: &Node, ctx: &Context<'a>) -> Result<Val<'a>, EvalError> {
    Ok(match &node.kind {
        NodeKind::Literal(v) => Val::Owned(v.clone()),
        NodeKind::Property(name) => Val::Owned(Value::String(name.clone())),
        // Outside an index a wildcard is just the string "*", as in the runner.
        NodeKind::Wildcard => Val::Owned(Value::String("*".to_owned())),
        NodeKind::Context(name) => match map_get(ctx.contexts, name) {
            Some(v) => Val::Ref(v),
            None => Val::Owned(Value::Null),
        },
        NodeKind::Index(target, key) => {
            let target = eval(target, ctx)?;
            if matches!(key.kind, NodeKind::Wildcard) {
                index(target, &IndexKey::Wildcard)
            } else {
                let key = eval(key, ctx)?;
                index(target, &IndexKey::new(&key))
            }
        }
        NodeKind::Not(a) => Val::Owned(Value::Bool(!eval(a, ctx)?.truthy())),
        NodeKind::And(items) => {
            let mut last = Val::Owned(Value::Null);
            for item in items {
                last = eval(item, ctx)?;
                if !last.truthy() {
                    break;
                }
            }
            last
        }
        NodeKind::Or(items) => {
            let mut last = Val::Owned(Value::Null);
            for item in items {
                last = eval(item, ctx)?;
                if last.truthy() {
                    break;
                }
            }
            last
        }
        NodeKind::Compare(op, l, r) => {
            let l = eval(l, ctx)?;
            let r = eval(r, ctx)?;
            Val::Owned(Value::Bool(compare(*op, &l, &r)))
        }
        NodeKind::Call(func, args) => functions::call(*func, args, ctx)?,
    })
}

/// How a value indexes: the runner converts the index both ways and each collection uses the
/// form it needs.
pub(crate) enum IndexKey {
    Wildcard,
    Value {
        string: Option<String>,
        integer: Option<usize>,
    },
}

impl IndexKey {
    fn new(key: &Val<'_>) -> IndexKey {
        let string = key.prim().map(prim_to_string);
        let n = to_number(key);
        // Negative and NaN indexes find nothing; fractions are floored; beyond i32 nothing.
        let integer = if n.is_nan() || n < 0.0 {
            None
        } else {
            let floored = n.floor();
            if floored > f64::from(i32::MAX) {
                None
            } else {
                Some(floored as usize)
            }
        };
        IndexKey::Value { string, integer }
    }
}

fn object_get<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    map_get(map, key)
}

fn owned_object_take(mut map: Map, key: &str) -> Option<Value> {
    let index = map
        .get_index_of(key)
        .or_else(|| map.keys().position(|k| casefold::eq_ignore_case(k, key)))?;
    map.swap_remove_index(index).map(|(_, v)| v)
}

fn index<'a>(target: Val<'a>, key: &IndexKey) -> Val<'a> {
    match target {
        Val::Filtered(items) => {
            let mut out = Vec::new();
            for item in items {
                match (item, key) {
                    (
                        item @ (Val::Ref(Value::Object(_) | Value::Array(_))
                        | Val::Owned(Value::Object(_) | Value::Array(_))),
                        IndexKey::Wildcard,
                    ) => {
                        out.extend(children(item));
                    }
                    (item, IndexKey::Value { string, integer }) => match item {
                        Val::Ref(Value::Object(m)) => {
                            if let Some(v) = string.as_deref().and_then(|s| object_get(m, s)) {
                                out.push(Val::Ref(v));
                            }
                        }
                        Val::Owned(Value::Object(m)) => {
                            if let Some(v) = string.as_deref().and_then(|s| owned_object_take(m, s))
                            {
                                out.push(Val::Owned(v));
                            }
                        }
                        Val::Ref(Value::Array(a)) => {
                            if let Some(v) = integer.and_then(|i| a.get(i)) {
                                out.push(Val::Ref(v));
                            }
                        }
                        Val::Owned(Value::Array(mut a)) => {
                            if let Some(i) = integer.filter(|i| *i < a.len()) {
                                out.push(Val::Owned(a.swap_remove(i)));
                            }
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            Val::Filtered(out)
        }
        target if matches!(key, IndexKey::Wildcard) => match target.shape() {
            Shape::Array(_) | Shape::Object(_) => Val::Filtered(children(target)),
            Shape::Prim(_) => Val::Filtered(Vec::new()),
        },
        Val::Ref(Value::Object(m)) => match key {
            IndexKey::Value {
                string: Some(s), ..
            } => object_get(m, s).map_or(Val::Owned(Value::Null), Val::Ref),
            _ => Val::Owned(Value::Null),
        },
        Val::Owned(Value::Object(m)) => match key {
            IndexKey::Value {
                string: Some(s), ..
            } => Val::Owned(owned_object_take(m, s).unwrap_or(Value::Null)),
            _ => Val::Owned(Value::Null),
        },
        Val::Ref(Value::Array(a)) => match key {
            IndexKey::Value {
                integer: Some(i), ..
            } => a.get(*i).map_or(Val::Owned(Value::Null), Val::Ref),
            _ => Val::Owned(Value::Null),
        },
        Val::Owned(Value::Array(mut a)) => match key {
            IndexKey::Value {
                integer: Some(i), ..
            } if *i < a.len() => Val::Owned(a.swap_remove(*i)),
            _ => Val::Owned(Value::Null),
        },
        _ => Val::Owned(Value::Null),
    }
}

/// The elements of an array or the values of an object, in order.
fn children(v: Val<'_>) -> Vec<Val<'_>> {
    match v {
        Val::Ref(Value::Object(m)) => m.values().map(Val::Ref).collect(),
        Val::Owned(Value::Object(m)) => m.into_values().map(Val::Owned).collect(),
        Val::Ref(Value::Array(a)) => a.iter().map(Val::Ref).collect(),
        Val::Owned(Value::Array(a)) => a.into_iter().map(Val::Owned).collect(),
        Val::Filtered(items) => items,
        _ => Vec::new(),
    }
}
