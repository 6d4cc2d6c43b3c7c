//! The built-in functions.
//!
//! Each follows the runner's implementation closely, including which arguments are evaluated
//! at all: `contains` on an empty array never evaluates its second argument, `format` only
//! evaluates the arguments its format string uses, and so on. This matters because an
//! unevaluated `fromJSON('bad')` is not an error.

use crate::Value;
use crate::ast::{Func, Node};
use crate::casefold;
use crate::error::EvalError;
use crate::eval::{Context, Prim, Status, Val, eval, loose_eq, prim_to_string};
use crate::json;

/// The runner's limit on what one evaluation may allocate (`ExpressionConstants`): 1 MiB,
/// strings counted as UTF-16, two bytes a code unit.
const MAX_MEMORY: usize = 1 << 20;

thread_local! {
    /// Bytes the strings made by functions in the current evaluation take. Every entry
    /// point that evaluates (`evaluate`, `Template::evaluate[_string]`,
    /// `Condition::evaluate`) starts it afresh: an evaluation runs on one thread, start to
    /// end, and nothing else evaluates in between.
    static MEMORY: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Starts counting an evaluation's memory afresh.
pub(crate) fn reset_memory() {
    MEMORY.with(|m| m.set(0));
}

/// Counts a string a function made; an error past the limit.
fn account(s: &str) -> Result<(), EvalError> {
    let bytes = s.encode_utf16().count() * 2;
    MEMORY.with(|m| {
        let total = m.get().saturating_add(bytes);
        m.set(total);
        if total > MAX_MEMORY {
            Err(EvalError::Memory)
        } else {
            Ok(())
        }
    })
}

pub(crate) fn call<'a>(func: Func, args: &[Node], ctx: &Context<'a>) -> Result<Val<'a>, EvalError> {
    let arg = |i: usize| -> Result<Val<'a>, EvalError> {
        match args.get(i) {
            Some(node) => eval(node, ctx),
            None => Ok(Val::Owned(Value::Null)),
        }
    };
    let boolean = |b: bool| Ok(Val::Owned(Value::Bool(b)));
    let string = |s: String| {
        account(&s)?;
        Ok(Val::Owned(Value::String(s)))
    };
    match func {
        Func::Contains => {
            let left = arg(0)?;
            if let Some(p) = left.prim() {
                let haystack = prim_to_string(p);
                let right = arg(1)?;
                return boolean(right.prim().is_some_and(|r| {
                    casefold::contains_ignore_case(&haystack, &prim_to_string(r))
                }));
            }
            match left.into_elements() {
                Some(items) if !items.is_empty() => {
                    let right = arg(1)?;
                    boolean(items.iter().any(|item| loose_eq(&right, item)))
                }
                _ => boolean(false),
            }
        }
        Func::StartsWith | Func::EndsWith => {
            let left = arg(0)?;
            let Some(l) = left.prim() else {
                return boolean(false);
            };
            let l = prim_to_string(l);
            let right = arg(1)?;
            let Some(r) = right.prim() else {
                return boolean(false);
            };
            let r = prim_to_string(r);
            boolean(if func == Func::StartsWith {
                casefold::starts_with_ignore_case(&l, &r)
            } else {
                casefold::ends_with_ignore_case(&l, &r)
            })
        }
        Func::Format => format(args, ctx).and_then(string),
        Func::Join => {
            let items = arg(0)?;
            if let Some(p) = items.prim() {
                return string(prim_to_string(p));
            }
            let Some(items) = items.into_elements() else {
                return string(String::new());
            };
            let mut out = String::new();
            let mut iter = items.iter();
            if let Some(first) = iter.next() {
                out.push_str(&first.to_expr_string());
                // The separator is evaluated only when there is something to separate.
                if items.len() > 1 {
                    let separator = match args.get(1) {
                        Some(_) => arg(1)?
                            .prim()
                            .map_or_else(|| ",".to_owned(), prim_to_string),
                        None => ",".to_owned(),
                    };
                    for item in iter {
                        out.push_str(&separator);
                        out.push_str(&item.to_expr_string());
                    }
                }
            }
            string(out)
        }
        Func::ToJson => {
            let v = arg(0)?;
            string(json::to_pretty(&v))
        }
        Func::FromJson => {
            let text = arg(0)?.to_expr_string();
            json::parse(&text)
                .map(Val::Owned)
                .map_err(|message| EvalError::FromJson { message })
        }
        Func::HashFiles => {
            let mut patterns = Vec::with_capacity(args.len());
            for i in 0..args.len() {
                patterns.push(arg(i)?.to_expr_string());
            }
            if let Some(first) = patterns.first()
                && first.starts_with("--")
                && !casefold::eq_ignore_case(first, "--follow-symbolic-links")
            {
                return Err(EvalError::HashFiles {
                    message: format!(
                        "Invalid glob option {first}, available option: '--follow-symbolic-links'."
                    ),
                });
            }
            let host = ctx.host.ok_or_else(|| EvalError::NoHost {
                function: "hashFiles".to_owned(),
            })?;
            host.hash_files(&patterns).and_then(string)
        }
        Func::Success => boolean(ctx.status == Status::Success),
        Func::Failure => boolean(ctx.status == Status::Failure),
        Func::Cancelled => boolean(ctx.status == Status::Cancelled),
        Func::Always => boolean(true),
        // The first pair whose predicate is true gives its value, else the last argument;
        // only what is needed is evaluated.
        Func::Case => {
            let mut i = 0;
            while i + 1 < args.len() {
                match arg(i)?.prim() {
                    Some(crate::eval::Prim::Bool(true)) => return arg(i + 1),
                    Some(crate::eval::Prim::Bool(false)) => {}
                    _ => return Err(EvalError::CasePredicate),
                }
                i += 2;
            }
            arg(args.len() - 1)
        }
    }
}

fn kind_name(v: &Val<'_>) -> &'static str {
    match v.prim() {
        Some(Prim::Null) => "Null",
        Some(Prim::Bool(_)) => "Boolean",
        Some(Prim::Num(_)) => "Number",
        Some(Prim::Str(_)) => "String",
        None if v.is_array() => "Array",
        None => "Object",
    }
}

/// One piece of a parsed format string.
enum Segment {
    Text(String),
    Arg(usize, String),
}

/// `format()`: the whole format string is checked before any argument is evaluated, then the
/// referenced arguments are evaluated once each, in order of first use.
fn format(args: &[Node], ctx: &Context<'_>) -> Result<String, EvalError> {
    let Some(first) = args.first() else {
        return Ok(String::new());
    };
    let fmt = eval(first, ctx)?.to_expr_string();
    let segments = parse_format(&fmt, args.len() - 1)?;
    let mut cache: Vec<Option<(String, &'static str)>> = vec![None; args.len() - 1];
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Text(t) => out.push_str(&t),
            Segment::Arg(i, specifiers) => {
                let (text, kind) = match cache.get(i).cloned().flatten() {
                    Some(cached) => cached,
                    None => {
                        // `parse_format` checked that every index has an argument.
                        let Some(node) = args.get(i + 1) else {
                            return Err(EvalError::Format {
                                message: format!(
                                    "The following format string references more arguments than were supplied: {fmt}"
                                ),
                            });
                        };
                        let v = eval(node, ctx)?;
                        let entry = (v.to_expr_string(), kind_name(&v));
                        if let Some(slot) = cache.get_mut(i) {
                            *slot = Some(entry.clone());
                        }
                        entry
                    }
                };
                // GitHub accepts the .NET `{0:spec}` syntax but supports no specifier.
                if !specifiers.is_empty() {
                    return Err(EvalError::Format {
                        message: format!(
                            "The format specifiers '{specifiers}' are not valid for objects of type '{kind}'"
                        ),
                    });
                }
                out.push_str(&text);
            }
        }
    }
    Ok(out)
}

fn parse_format(fmt: &str, arg_count: usize) -> Result<Vec<Segment>, EvalError> {
    let invalid = || EvalError::Format {
        message: format!("The following format string is invalid: {fmt}"),
    };
    let b = fmt.as_bytes();
    let mut segments = Vec::new();
    let mut index = 0;
    while index < b.len() {
        let lbrace = fmt[index..].find('{').map(|i| i + index);
        let rbrace = fmt[index..].find('}').map(|i| i + index);
        match (lbrace, rbrace) {
            (Some(l), r) if r.is_none_or(|r| r > l) => {
                if b.get(l + 1) == Some(&b'{') {
                    segments.push(Segment::Text(fmt[index..=l].to_owned()));
                    index = l + 2;
                    continue;
                }
                let r = r.ok_or_else(invalid)?;
                if r <= l + 1 {
                    return Err(invalid());
                }
                let digits_end = (l + 1..b.len())
                    .find(|&i| !b[i].is_ascii_digit())
                    .unwrap_or(b.len());
                if digits_end == l + 1 {
                    return Err(invalid());
                }
                // The runner reads the index as a byte: 0 to 255.
                let arg: usize = fmt[l + 1..digits_end]
                    .parse::<u8>()
                    .map_err(|_| invalid())?
                    .into();
                let (specifiers, close) = read_specifiers(fmt, digits_end).ok_or_else(invalid)?;
                if arg + 1 > arg_count {
                    return Err(EvalError::Format {
                        message: format!(
                            "The following format string references more arguments than were supplied: {fmt}"
                        ),
                    });
                }
                if l > index {
                    segments.push(Segment::Text(fmt[index..l].to_owned()));
                }
                segments.push(Segment::Arg(arg, specifiers));
                index = close + 1;
            }
            (_, Some(r)) => {
                if b.get(r + 1) == Some(&b'}') {
                    segments.push(Segment::Text(fmt[index..=r].to_owned()));
                    index = r + 2;
                } else {
                    return Err(invalid());
                }
            }
            _ => {
                segments.push(Segment::Text(fmt[index..].to_owned()));
                break;
            }
        }
    }
    Ok(segments)
}

/// Reads `}` or `:specifiers}` (with `}}` escaping inside specifiers); returns the specifiers
/// and the position of the closing brace.
fn read_specifiers(fmt: &str, start: usize) -> Option<(String, usize)> {
    let b = fmt.as_bytes();
    match b.get(start) {
        Some(b'}') => return Some((String::new(), start)),
        Some(b':') => {}
        _ => return None,
    }
    let mut specifiers = String::new();
    let mut i = start + 1;
    while i < b.len() {
        let c = fmt[i..].chars().next()?;
        if c != '}' {
            specifiers.push(c);
            i += c.len_utf8();
        } else if b.get(i + 1) == Some(&b'}') {
            specifiers.push('}');
            i += 2;
        } else {
            return Some((specifiers, i));
        }
    }
    None
}
