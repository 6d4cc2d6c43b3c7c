//! GitHub's own test data for the expression language: the data files of
//! actions/languageservices (`expressions/testdata/*.json`, MIT licence, copyright GitHub,
//! Inc.), kept beside this repository in `../shared/conformance/expressions/` (see its
//! README). Each case is parsed (only the case's contexts are known names, as in GitHub's
//! harness), checked, evaluated, and compared with the expected value or error.
//!
//! The data is not part of this repository: without the directory the test says so and
//! checks nothing else. `PIPEWRIGHT_CONFORMANCE` names another directory.
//!
//! Known disagreements, checked against the runner instead: the files expect
//! `format('{0}', -0)` and `toJSON(-0)` to give `0` where GitHub's runner (.NET 8), which
//! pipewright follows, gives `-0` (the data's README); and the harness evaluates an empty
//! expression to null where a workflow's `${{ }}` is an error.

use std::path::PathBuf;

use expr::{Allowed, Context, Map, Status, Value, check, evaluate, parse};

fn data_dir() -> PathBuf {
    std::env::var_os("PIPEWRIGHT_CONFORMANCE").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/conformance/expressions")
        },
        PathBuf::from,
    )
}

/// The cases where the runner, which pipewright follows, and the data disagree on `-0`:
/// the data expects `0`, the runner gives `-0`, and so does pipewright.
fn disputed(expr: &str) -> bool {
    let e = expr.replace(' ', "").to_ascii_lowercase();
    ["-0)", "-0.0)"]
        .iter()
        .any(|z| e == format!("format('{{0}}',{z}") || e == format!("tojson({z}"))
}

/// What pipewright gives for a disputed case (the runner's `-0`), else why not.
fn runner_s_negative_zero(expr: &str) -> Result<(), String> {
    let e = parse(expr).map_err(|e| e.message)?;
    let contexts = Map::new();
    let got = evaluate(
        &e,
        &Context {
            contexts: &contexts,
            status: Status::Success,
            host: None,
        },
    )
    .map_err(|e| e.to_string())?;
    match got.to_expr_string().as_str() {
        "-0" => Ok(()),
        other => Err(format!("gave {other}, the runner gives -0")),
    }
}

/// The harness evaluates an empty expression to null; in a workflow GitHub's template reader
/// rejects `${{ }}` ("An expression was expected"), and so does pipewright.
fn empty(expr: &str) -> bool {
    expr.trim().is_empty()
}

/// Compares as the harness does: numbers by value (so `-0 == 0`), objects by their keys.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Runs one case: `Err` says how it differs.
fn run(case: &serde_json::Value) -> Result<(), String> {
    let src = case["expr"].as_str().ok_or("no expr")?;
    let mut contexts = Map::new();
    if let Some(c) = case["contexts"].as_object() {
        for (k, v) in c {
            contexts.insert(k.to_ascii_lowercase(), Value::from_json(v.clone()));
        }
    }
    let names: Vec<&str> = contexts.keys().map(String::as_str).collect();
    let parsed = parse(src).and_then(|e| {
        let allowed = Allowed {
            contexts: &names,
            status_functions: true,
            hash_files: false,
        };
        match check(&e, &allowed).into_iter().next() {
            Some(err) => Err(err),
            None => Ok(e),
        }
    });
    let outcome: Result<Value, (&str, String)> = match parsed {
        Err(e) => Err(("parsing", e.message)),
        Ok(e) => evaluate(
            &e,
            &Context {
                contexts: &contexts,
                status: Status::Success,
                host: None,
            },
        )
        .map_err(|e| ("evaluation", e.to_string())),
    };
    match (&case["result"], &case["err"], outcome) {
        (want, serde_json::Value::Null, Ok(got)) if !want.is_null() => {
            let expected = Value::from_json(want["value"].clone());
            if same(&got, &expected) {
                Ok(())
            } else {
                Err(format!(
                    "gave {}, expected {}",
                    got.to_json(),
                    want["value"]
                ))
            }
        }
        (_, err, Err((kind, message))) if !err.is_null() => {
            // Lexing errors are parse errors here.
            let want_kind = match err["kind"].as_str() {
                Some("lexing") => "parsing",
                Some(k) => k,
                None => "",
            };
            if kind != want_kind {
                return Err(format!(
                    "a {kind} error ({message}), expected a {want_kind} error"
                ));
            }
            Ok(())
        }
        (_, err, Ok(got)) => Err(format!("gave {}, expected the error {err}", got.to_json())),
        (want, _, Err((kind, message))) => Err(format!(
            "{kind} error: {message}; expected {}",
            want["value"]
        )),
    }
}

#[test]
fn github_s_expression_test_data() {
    let dir = data_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "NOTICE: GitHub's expression test data is not at {} (the repository's ../shared); nothing checked",
            dir.display()
        );
        return;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let (mut passed, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        let data: serde_json::Value = serde_json::from_str(&text).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (group, cases) in data.as_object().unwrap() {
            for (i, case) in cases.as_array().unwrap().iter().enumerate() {
                let src = case["expr"].as_str().unwrap_or_default();
                if disputed(src) || empty(src) {
                    skipped += 1;
                    let held = if empty(src) {
                        match parse(src) {
                            Err(e) if e.message.contains("An expression was expected") => Ok(()),
                            other => {
                                Err(format!("{other:?}, expected `An expression was expected`"))
                            }
                        }
                    } else {
                        runner_s_negative_zero(src)
                    };
                    if let Err(why) = held {
                        failures.push(format!("{name} {group}[{i}] `{src}`: {why}"));
                    }
                    continue;
                }
                match run(case) {
                    Ok(()) => passed += 1,
                    Err(why) => failures.push(format!("{name} {group}[{i}] `{src}`: {why}")),
                }
            }
        }
    }
    eprintln!(
        "GitHub's expression test data: {passed} passed, {} failed, {skipped} checked against the runner instead (-0, the empty expression)",
        failures.len()
    );
    assert!(passed > 900, "only {passed} cases ran");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
