//! Runs every data-driven case in `tests/cases/*.cases` and reports each failing case with
//! its file and line. The format is described in `tests/cases/README.md`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use expr::{
    Allowed, Context, EvalError, Host, Map, Status, Value, check, evaluate, parse, parse_condition,
    parse_template,
};

/// A host whose hash is the patterns joined, and which fails for the pattern `fail`.
struct TestHost;

impl Host for TestHost {
    fn hash_files(&self, patterns: &[String]) -> Result<String, EvalError> {
        if patterns.iter().any(|p| p == "fail") {
            return Err(EvalError::HashFiles {
                message: "the host failed".to_owned(),
            });
        }
        Ok(format!("hash({})", patterns.join("|")))
    }
}

struct State {
    contexts: Map,
    status: Status,
    host: bool,
}

enum Expected {
    Value(Value),
    NaN,
    NegZero,
}

fn parse_expected_value(text: &str) -> Result<Expected, String> {
    match text {
        "NaN" => Ok(Expected::NaN),
        "-0" => Ok(Expected::NegZero),
        "Infinity" => Ok(Expected::Value(Value::Number(f64::INFINITY))),
        "-Infinity" => Ok(Expected::Value(Value::Number(f64::NEG_INFINITY))),
        _ => serde_json::from_str::<serde_json::Value>(text)
            .map(|j| Expected::Value(Value::from_json(j)))
            .map_err(|e| format!("bad expected JSON {text:?}: {e}")),
    }
}

fn matches_expected(got: &Value, want: &Expected) -> bool {
    match want {
        Expected::NaN => matches!(got, Value::Number(n) if n.is_nan()),
        Expected::NegZero => matches!(got, Value::Number(n) if *n == 0.0 && n.is_sign_negative()),
        Expected::Value(v) => same(got, v),
    }
}

/// Structural equality that also tells `0` from `-0` and `1` from `"1"`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y && x.is_sign_negative() == y.is_sign_negative() || x.is_nan() && y.is_nan()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

fn json_string(text: &str) -> Result<String, String> {
    serde_json::from_str::<String>(text)
        .map_err(|e| format!("expected a JSON string, got {text:?}: {e}"))
}

/// `@OFFSET text`: an error at a byte offset whose message contains `text`.
fn parse_located(text: &str) -> Result<(usize, String), String> {
    let rest = text
        .strip_prefix('@')
        .ok_or_else(|| format!("expected '@OFFSET message', got {text:?}"))?;
    let (offset, message) = rest.split_once(' ').unwrap_or((rest, ""));
    let offset = offset
        .parse()
        .map_err(|_| format!("bad offset in {text:?}"))?;
    Ok((offset, message.to_owned()))
}

fn run_case(state: &State, kind: &str, input: &str, expected: &str) -> Result<(), String> {
    let host = TestHost;
    let ctx = Context {
        contexts: &state.contexts,
        status: state.status,
        host: if state.host { Some(&host) } else { None },
    };
    let parse_expr = |src: &str| {
        parse(src).map_err(|e| format!("unexpected parse error: {e} (offset {})", e.offset))
    };
    match kind {
        "eval" => {
            let want = parse_expected_value(expected)?;
            let got = evaluate(&parse_expr(input)?, &ctx)
                .map_err(|e| format!("unexpected error: {e}"))?;
            if matches_expected(&got, &want) {
                Ok(())
            } else {
                Err(format!("got {}", describe(&got)))
            }
        }
        "str" => {
            let want = json_string(expected)?;
            let got = evaluate(&parse_expr(input)?, &ctx)
                .map_err(|e| format!("unexpected error: {e}"))?;
            let got = got.to_expr_string();
            if got == want {
                Ok(())
            } else {
                Err(format!("got {got:?}"))
            }
        }
        "json" => {
            let want = json_string(expected)?;
            let src = format!("toJSON({input})");
            let got =
                evaluate(&parse_expr(&src)?, &ctx).map_err(|e| format!("unexpected error: {e}"))?;
            match got {
                Value::String(s) if s == want => Ok(()),
                other => Err(format!("got {:?}", other.to_expr_string())),
            }
        }
        "error" => match evaluate(&parse_expr(input)?, &ctx) {
            Ok(v) => Err(format!("expected an error, got {}", describe(&v))),
            Err(e) if e.to_string().contains(expected) => Ok(()),
            Err(e) => Err(format!("wrong error: {e}")),
        },
        "parse-error" => {
            let (offset, message) = parse_located(expected)?;
            match parse(input) {
                Ok(_) => Err("expected a parse error, parsed fine".to_owned()),
                Err(e) if e.offset == offset && e.message.contains(&message) => Ok(()),
                Err(e) => Err(format!("wrong parse error at {}: {}", e.offset, e.message)),
            }
        }
        "parses" => parse_expr(input).map(|_| ()),
        "tmpl" => {
            let want = parse_expected_value(expected)?;
            let t = parse_template(input).map_err(|e| format!("unexpected template error: {e}"))?;
            let got = t
                .evaluate(&ctx)
                .map_err(|e| format!("unexpected error: {e}"))?;
            if matches_expected(&got, &want) {
                Ok(())
            } else {
                Err(format!("got {}", describe(&got)))
            }
        }
        "tmpl-literal" => {
            let t = parse_template(input).map_err(|e| format!("unexpected template error: {e}"))?;
            let want = expected == "true";
            if t.is_literal() == want {
                Ok(())
            } else {
                Err(format!("is_literal() was {}", !want))
            }
        }
        "tmpl-error" => {
            let (offset, message) = parse_located(expected)?;
            match parse_template(input) {
                Ok(_) => Err("expected a template error, parsed fine".to_owned()),
                Err(e) if e.offset == offset && e.message.contains(&message) => Ok(()),
                Err(e) => Err(format!(
                    "wrong template error at {}: {}",
                    e.offset, e.message
                )),
            }
        }
        "cond" => {
            let (value, mistake) = match expected.split_once(' ') {
                Some((v, "mistake")) => (v, true),
                _ => (expected, false),
            };
            let want = value == "true";
            let c =
                parse_condition(input).map_err(|e| format!("unexpected condition error: {e}"))?;
            if c.is_interpolation_mistake() != mistake {
                return Err(format!("is_interpolation_mistake() was {}", !mistake));
            }
            let got = c
                .evaluate(&ctx)
                .map_err(|e| format!("unexpected error: {e}"))?;
            if got == want {
                Ok(())
            } else {
                Err(format!("got {got}"))
            }
        }
        "cond-source" => {
            let want = json_string(expected)?;
            let c =
                parse_condition(input).map_err(|e| format!("unexpected condition error: {e}"))?;
            let got = c.effective_source();
            if got == want {
                Ok(())
            } else {
                Err(format!("got {got:?}"))
            }
        }
        "cond-error" => {
            let (offset, message) = parse_located(expected)?;
            match parse_condition(input) {
                Ok(_) => Err("expected a condition error, parsed fine".to_owned()),
                Err(e) if e.offset == offset && e.message.contains(&message) => Ok(()),
                Err(e) => Err(format!(
                    "wrong condition error at {}: {}",
                    e.offset, e.message
                )),
            }
        }
        "check" => {
            let (settings, src) = input
                .split_once(" | ")
                .ok_or("check needs 'SETTINGS | EXPR'")?;
            let mut contexts: Vec<&str> = Vec::new();
            let (mut status_functions, mut hash_files) = (false, false);
            for word in settings.split_whitespace() {
                match word {
                    "status" => status_functions = true,
                    "hash" => hash_files = true,
                    w => contexts.extend(
                        w.strip_prefix("contexts=")
                            .ok_or(format!("bad check setting {w}"))?
                            .split(','),
                    ),
                }
            }
            let allowed = Allowed {
                contexts: &contexts,
                status_functions,
                hash_files,
            };
            let errors = if let Some(template) = src.strip_prefix("template:") {
                let t = parse_template(template)
                    .map_err(|e| format!("unexpected template error: {e}"))?;
                t.exprs().flat_map(|e| check(e, &allowed)).collect()
            } else {
                check(&parse_expr(src)?, &allowed)
            };
            let wants: Vec<(usize, String)> = if expected == "ok" {
                Vec::new()
            } else {
                expected
                    .split(" ; ")
                    .map(parse_located)
                    .collect::<Result<_, _>>()?
            };
            let ok = errors.len() == wants.len()
                && errors
                    .iter()
                    .zip(&wants)
                    .all(|(e, (o, m))| e.offset == *o && e.message.contains(m.as_str()));
            if ok {
                Ok(())
            } else {
                let got: Vec<String> = errors
                    .iter()
                    .map(|e| format!("@{} {}", e.offset, e.message))
                    .collect();
                Err(format!("got {got:?}"))
            }
        }
        "refs" => {
            let want: Vec<Vec<String>> =
                serde_json::from_str(expected).map_err(|e| format!("bad expected: {e}"))?;
            let got = parse_expr(input)?.references();
            if got == want {
                Ok(())
            } else {
                Err(format!("got {got:?}"))
            }
        }
        "contexts" => {
            let want: Vec<String> =
                serde_json::from_str(expected).map_err(|e| format!("bad expected: {e}"))?;
            let got = parse_expr(input)?.context_names();
            if got == want {
                Ok(())
            } else {
                Err(format!("got {got:?}"))
            }
        }
        "uses-status" => {
            let got = parse_expr(input)?.uses_status_function();
            if got == (expected == "true") {
                Ok(())
            } else {
                Err(format!("got {got}"))
            }
        }
        other => Err(format!("unknown case kind {other:?}")),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_nan() => "NaN".to_owned(),
        Value::Number(n) if n.is_infinite() => format!("{n}"),
        Value::Number(n) if *n == 0.0 && n.is_sign_negative() => "-0".to_owned(),
        _ => v.to_json().to_string(),
    }
}

#[test]
fn data_driven_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("tests/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cases"))
        .collect();
    files.sort();
    let mut failures = String::new();
    let (mut total, mut failed) = (0, 0);
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = fs::read_to_string(path).expect("readable case file");
        let mut state = State {
            contexts: Map::new(),
            status: Status::Success,
            host: false,
        };
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let outcome = match kind {
                "ctx" => match serde_json::from_str::<serde_json::Value>(rest) {
                    Ok(serde_json::Value::Object(o)) => {
                        state.contexts = o
                            .into_iter()
                            .map(|(k, v)| (k, Value::from_json(v)))
                            .collect();
                        continue;
                    }
                    _ => Err(format!("ctx needs a JSON object: {rest}")),
                },
                "status" => match rest {
                    "success" => {
                        state.status = Status::Success;
                        continue;
                    }
                    "failure" => {
                        state.status = Status::Failure;
                        continue;
                    }
                    "cancelled" => {
                        state.status = Status::Cancelled;
                        continue;
                    }
                    _ => Err(format!("bad status {rest}")),
                },
                "host" => {
                    state.host = rest == "on";
                    continue;
                }
                _ => {
                    total += 1;
                    match rest.rsplit_once(" => ") {
                        Some((input, expected)) => run_case(&state, kind, input, expected),
                        None => Err("a case needs 'INPUT => EXPECTED'".to_owned()),
                    }
                }
            };
            if let Err(message) = outcome {
                failed += 1;
                let shown: String = line.chars().take(200).collect();
                let message: String = message.chars().take(400).collect();
                let _ = writeln!(failures, "{name}:{line_no}: {shown}\n    {message}");
            }
        }
    }
    println!("{} passed, {failed} failed", total - failed);
    assert!(failed == 0, "{failed} of {total} cases failed:\n{failures}");
    assert!(total > 0, "no cases found in {}", dir.display());
}
