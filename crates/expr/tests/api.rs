//! Unit tests of the public API beyond what the data-driven cases cover.

use expr::{
    Allowed, Condition, Context, EvalError, Expr, Host, Map, ParseError, Part, Status, Template,
    Value, check, evaluate, map_get, parse, parse_condition, parse_template,
};
use serde_json::json;

fn contexts(j: serde_json::Value) -> Map {
    match Value::from_json(j) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn eval_with(src: &str, contexts: &Map, status: Status) -> Result<Value, EvalError> {
    let ctx = Context {
        contexts,
        status,
        host: None,
    };
    evaluate(&parse(src).expect("parses"), &ctx)
}

fn eval(src: &str) -> Value {
    eval_with(src, &Map::new(), Status::Success).expect("evaluates")
}

#[test]
fn truthiness() {
    assert!(!Value::Null.truthy());
    assert!(!Value::Bool(false).truthy());
    assert!(Value::Bool(true).truthy());
    assert!(!Value::Number(0.0).truthy());
    assert!(!Value::Number(-0.0).truthy());
    assert!(!Value::Number(f64::NAN).truthy());
    assert!(Value::Number(0.5).truthy());
    assert!(!Value::from("").truthy());
    assert!(Value::from("false").truthy());
    assert!(Value::Array(vec![]).truthy());
    assert!(Value::Object(Map::new()).truthy());
}

#[test]
fn string_conversion() {
    assert_eq!(Value::Null.to_expr_string(), "");
    assert_eq!(Value::Bool(true).to_expr_string(), "true");
    assert_eq!(Value::Number(1.5).to_expr_string(), "1.5");
    assert_eq!(Value::Number(1e21).to_expr_string(), "1E+21");
    assert_eq!(Value::Number(-0.0).to_expr_string(), "-0");
    assert_eq!(Value::Number(f64::NAN).to_expr_string(), "NaN");
    assert_eq!(Value::Number(f64::INFINITY).to_expr_string(), "Infinity");
    assert_eq!(Value::Array(vec![]).to_expr_string(), "Array");
    assert_eq!(Value::Object(Map::new()).to_expr_string(), "Object");
    assert_eq!(Value::Number(2.0).to_string(), "2");
}

#[test]
fn json_conversions() {
    let v = Value::from_json(json!({"a": [1, 2.5, "x", null, true], "b": {}}));
    assert_eq!(
        v.to_json(),
        json!({"a": [1, 2.5, "x", null, true], "b": {}})
    );
    assert_eq!(Value::Number(f64::NAN).to_json(), serde_json::Value::Null);
    assert_eq!(Value::Number(3.0).to_json().to_string(), "3");
    assert_eq!(
        v.to_json_pretty(),
        "{\n  \"a\": [\n    1,\n    2.5,\n    \"x\",\n    null,\n    true\n  ],\n  \"b\": {}\n}"
    );
    assert_eq!(Value::from("a\"b").to_json_pretty(), "\"a\\\"b\"");
    assert_eq!(Value::Number(1e21).to_json_pretty(), "1E+21");
}

#[test]
fn loose_equality_uses_identity_for_composites() {
    let a = Value::Array(vec![Value::Number(1.0)]);
    let b = a.clone();
    assert!(a.loose_eq(&a));
    assert!(!a.loose_eq(&b));
    assert!(Value::Number(1.0).loose_eq(&Value::from("1")));
    assert!(Value::from("ABC").loose_eq(&Value::from("abc")));
    assert!(Value::Null.loose_eq(&Value::Bool(false)));
    assert!(!Value::Number(f64::NAN).loose_eq(&Value::Number(f64::NAN)));
    assert!(!a.loose_eq(&Value::Number(1.0)));
}

#[test]
fn map_lookup_ignores_case() {
    let m = contexts(json!({"Key": 1, "ärger": 2}));
    assert_eq!(map_get(&m, "key"), Some(&Value::Number(1.0)));
    assert_eq!(map_get(&m, "ÄRGER"), Some(&Value::Number(2.0)));
    assert_eq!(map_get(&m, "missing"), None);
    let exact = contexts(json!({"a": 1, "A": 2}));
    assert_eq!(map_get(&exact, "A"), Some(&Value::Number(2.0)));
}

#[test]
fn evaluates_against_contexts() {
    let ctx =
        contexts(json!({"github": {"ref": "refs/heads/main", "event": {"commits": [{"id": 1}]}}}));
    assert_eq!(
        eval_with("github.ref", &ctx, Status::Success),
        Ok(Value::from("refs/heads/main"))
    );
    assert_eq!(
        eval_with("GitHub.event.commits[0].id", &ctx, Status::Success),
        Ok(Value::Number(1.0))
    );
    assert_eq!(
        eval_with("github.event == github.event", &ctx, Status::Success),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        eval_with("failure()", &ctx, Status::Failure),
        Ok(Value::Bool(true))
    );
    assert_eq!(eval("'a' && 'b'"), Value::from("b"));
}

#[test]
fn expression_metadata() {
    let e = parse("needs.build.outputs.x == 'a' && success() || GITHUB.ref").expect("parses");
    assert_eq!(
        e.source(),
        "needs.build.outputs.x == 'a' && success() || GITHUB.ref"
    );
    assert!(e.uses_status_function());
    assert_eq!(
        e.context_names(),
        vec!["needs".to_owned(), "github".to_owned()]
    );
    assert_eq!(
        e.references(),
        vec![
            vec![
                "needs".to_owned(),
                "build".to_owned(),
                "outputs".to_owned(),
                "x".to_owned()
            ],
            vec!["github".to_owned(), "ref".to_owned()]
        ]
    );
    let copy: Expr = e.clone();
    assert!(format!("{copy:?}").contains("Context"));
    assert!(!parse("github.ref").expect("parses").uses_status_function());
}

#[test]
fn parse_errors_are_located() {
    let err: ParseError = parse("github.ref == ").expect_err("incomplete");
    assert_eq!(err.offset, 11);
    assert_eq!(err.len, 2);
    assert_eq!(err.to_string(), err.message);
    assert!(
        err.message.contains("Unexpected end of expression: '=='"),
        "{}",
        err.message
    );
    let err = parse("").expect_err("empty");
    assert!(err.message.contains("An expression was expected"));
    let err = parse("   ").expect_err("blank");
    assert!(err.message.contains("An expression was expected"));
    let err = parse("ünicode ü").expect_err("non-ASCII names are not names");
    assert_eq!(err.offset, 0);
    assert!(err.message.contains("position 1"));
    let err = parse("'ü' x").expect_err("second operand");
    assert_eq!(err.offset, 5);
    assert!(err.message.contains("position 5"), "{}", err.message);
}

#[test]
fn templates_report_parts_and_offsets() {
    let t: Template = parse_template("a ${{ github.ref }} b ${{1}}").expect("parses");
    assert!(!t.is_literal());
    assert!(!t.is_single_expression());
    match t.parts() {
        [
            Part::Literal(a),
            Part::Expr(e1, o1),
            Part::Literal(b),
            Part::Expr(e2, o2),
        ] => {
            assert_eq!(a, "a ");
            assert_eq!(e1.source(), "github.ref");
            assert_eq!(*o1, 6);
            assert_eq!(b, " b ");
            assert_eq!(e2.source(), "1");
            assert_eq!(*o2, 25);
        }
        other => panic!("unexpected parts {other:?}"),
    }
    let ctx_map = contexts(json!({"github": {"ref": "main"}}));
    let ctx = Context {
        contexts: &ctx_map,
        status: Status::Success,
        host: None,
    };
    assert_eq!(t.evaluate_string(&ctx), Ok("a main b 1".to_owned()));
    assert_eq!(t.evaluate(&ctx), Ok(Value::from("a main b 1")));
    let single = parse_template("${{ 1 }}").expect("parses");
    assert!(single.is_single_expression());
    assert_eq!(single.evaluate(&ctx), Ok(Value::Number(1.0)));
    assert_eq!(single.evaluate_string(&ctx), Ok("1".to_owned()));
    assert_eq!(single.exprs().count(), 1);
    let err = parse_template("x ${{ a b }}").expect_err("bad expression");
    assert_eq!((err.offset, err.len), (8, 1));
}

#[test]
fn check_reports_positions_in_the_template() {
    let t = parse_template("echo ${{ secrets.TOKEN }}").expect("parses");
    let allowed = Allowed {
        contexts: &["github", "env"],
        status_functions: false,
        hash_files: false,
    };
    let errors: Vec<ParseError> = t.exprs().flat_map(|e| check(e, &allowed)).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].offset, errors[0].len), (9, 7));
    assert!(
        errors[0]
            .message
            .contains("Unrecognized named-value: 'secrets'")
    );
}

#[test]
fn conditions() {
    let empty = Map::new();
    let run = |c: &Condition, status| {
        c.evaluate(&Context {
            contexts: &empty,
            status,
            host: None,
        })
    };
    let c = parse_condition("").expect("parses");
    assert_eq!(run(&c, Status::Success), Ok(true));
    assert_eq!(run(&c, Status::Failure), Ok(false));
    assert!(!c.uses_status_function());
    assert!(c.exprs().is_empty());
    let c = parse_condition("${{ always() }}").expect("parses");
    assert!(c.uses_status_function());
    assert_eq!(run(&c, Status::Cancelled), Ok(true));
    let c = parse_condition("${{ false }} || false").expect("parses");
    assert!(c.is_interpolation_mistake());
    assert_eq!(run(&c, Status::Success), Ok(true));
    assert_eq!(c.exprs().len(), 1);
    assert_eq!(
        c.effective_source(),
        "success() && (format('{0} || false', false))"
    );
    let err = parse_condition("${{ github.ref == }}").expect_err("bad");
    assert_eq!(err.offset, 15);
}

struct FixedHost;

impl Host for FixedHost {
    fn hash_files(&self, patterns: &[String]) -> Result<String, EvalError> {
        Ok(format!("{}:{}", patterns.len(), patterns.join(",")))
    }
}

#[test]
fn hash_files_uses_the_host() {
    let empty = Map::new();
    let expr = parse("hashFiles('a/**', 'b')").expect("parses");
    let with_host = Context {
        contexts: &empty,
        status: Status::Success,
        host: Some(&FixedHost),
    };
    assert_eq!(evaluate(&expr, &with_host), Ok(Value::from("2:a/**,b")));
    let without = Context {
        contexts: &empty,
        status: Status::Success,
        host: None,
    };
    let err = evaluate(&expr, &without).expect_err("no host");
    assert_eq!(
        err,
        EvalError::NoHost {
            function: "hashFiles".to_owned()
        }
    );
    assert!(err.to_string().contains("hashFiles"));
}

#[test]
fn eval_errors_name_the_function() {
    let e = eval_with("fromJSON('{')", &Map::new(), Status::Success).expect_err("bad JSON");
    assert!(matches!(e, EvalError::FromJson { .. }));
    assert!(e.to_string().starts_with("fromJSON: "), "{e}");
    let e = eval_with("format('{0}')", &Map::new(), Status::Success).expect_err("too few");
    assert!(matches!(e, EvalError::Format { .. }));
    assert!(e.to_string().starts_with("format: "), "{e}");
}

/// The 1 MiB limit is one evaluation's: however many evaluations a process makes, each
/// starts afresh, through every entry point; one that passes it alone is refused.
#[test]
fn the_memory_limit_is_per_evaluation() {
    // 100,000 characters: 200,000 bytes as the runner counts them.
    let big = "x".repeat(100_000);
    let c = contexts(json!({ "github": { "big": big } }));
    let ctx = Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let e = parse("format('{0}{0}', github.big)").unwrap();
    let t = parse_template("${{ format('{0}{0}', github.big) }}").unwrap();
    let s = parse_template("a ${{ format('{0}{0}', github.big) }}").unwrap();
    let cond = parse_condition("format('{0}{0}', github.big) != ''").unwrap();
    for _ in 0..20 {
        assert!(evaluate(&e, &ctx).is_ok());
        assert!(t.evaluate(&ctx).is_ok());
        assert!(s.evaluate_string(&ctx).is_ok());
        assert!(cond.evaluate(&ctx).unwrap());
    }
    // Ten copies at once: 2,000,000 bytes.
    let over = parse("format('{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}', github.big)").unwrap();
    assert!(matches!(evaluate(&over, &ctx), Err(EvalError::Memory)));
}
