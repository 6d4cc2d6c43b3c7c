//! The crate is fuzzed: no input may make it panic, overflow the stack or hang. These tests
//! throw many generated inputs at every entry point.

use expr::{
    Context, EvalError, Host, Map, Status, Value, evaluate, parse, parse_condition, parse_template,
};

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PIECES: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "*",
    "!",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "'",
    "''",
    "'a'",
    "'}}'",
    "null",
    "true",
    "false",
    "NaN",
    "Infinity",
    "-Infinity",
    "1",
    "-2.5",
    "0x1f",
    "0o7",
    "1e3",
    ".5",
    "github",
    "env",
    "a",
    "b-c",
    "_x",
    "contains(",
    "startsWith(",
    "endsWith(",
    "format(",
    "join(",
    "toJSON(",
    "fromJSON(",
    "hashFiles(",
    "success(",
    "always(",
    "failure(",
    "cancelled(",
    "'{0}'",
    "'{'",
    "'[1,{\"a\":2}]'",
    "'{\"a\":[1]}'",
    " ",
    "\t",
    "ü",
    "日",
    "${{",
    "}}",
    "=",
    "&",
    "|",
    "#",
    "\"",
    "\0",
    "\u{2028}",
];

struct AnyHost;

impl Host for AnyHost {
    fn hash_files(&self, patterns: &[String]) -> Result<String, EvalError> {
        Ok(patterns.concat())
    }
}

fn contexts() -> Map {
    let json = serde_json::json!({
        "github": {"ref": "main", "event": {"list": [1, "2", {"a": [true, null]}], "obj": {"A": {"b": "c"}}}},
        "env": {"X": "1", "J": "{\"k\": [1, 2]}"},
        "a": [[1, 2], {"x": 3}]
    });
    match Value::from_json(json) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn exercise(src: &str, ctx: &Context) {
    if let Ok(expr) = parse(src) {
        let _ = evaluate(&expr, ctx);
        let _ = expr.references();
        let _ = expr.context_names();
    }
    if let Ok(t) = parse_template(src) {
        let _ = t.evaluate(ctx);
    }
    if let Ok(c) = parse_condition(src) {
        let _ = c.evaluate(ctx);
        let _ = c.effective_source();
    }
}

#[test]
fn random_token_soup_never_panics() {
    let map = contexts();
    let ctx = Context {
        contexts: &map,
        status: Status::Failure,
        host: Some(&AnyHost),
    };
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..30_000 {
        let len = 1 + (rng.next() % 24) as usize;
        let src: String = (0..len).map(|_| rng.pick(PIECES)).collect();
        exercise(&src, &ctx);
        exercise(&format!("${{{{ {src} }}}}"), &ctx);
    }
}

#[test]
fn valid_looking_expressions_never_panic() {
    let map = contexts();
    let ctx = Context {
        contexts: &map,
        status: Status::Success,
        host: None,
    };
    let operands = [
        "github.event.list[2].a[0]",
        "github.event.obj.*.b",
        "a.*[1]",
        "fromJSON(env.J).k",
        "env.X",
        "'x'",
        "1.5",
        "null",
        "a[*].x",
        "toJSON(a)",
        "format('{0}{1}', a, env)",
        "join(a.*.*, ';')",
        "github['EVENT'].obj.a",
        "contains(a.*, a[0])",
        "fromJSON('[1,')",
        "a[NaN]",
        "a[-1]",
        "a[99999999999]",
    ];
    let operators = ["==", "!=", "<", "<=", ">", ">=", "&&", "||"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5_000 {
        let mut src = rng.pick(&operands).to_owned();
        for _ in 0..(rng.next() % 6) {
            let not = if rng.next().is_multiple_of(3) {
                "!"
            } else {
                ""
            };
            src = format!(
                "({src}) {} {not}{}",
                rng.pick(&operators),
                rng.pick(&operands)
            );
        }
        exercise(&src, &ctx);
        exercise(&format!("contains({src}, {})", rng.pick(&operands)), &ctx);
    }
}

#[test]
fn random_bytes_never_panic() {
    let map = Map::new();
    let ctx = Context {
        contexts: &map,
        status: Status::Success,
        host: None,
    };
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..20_000 {
        let len = (rng.next() % 40) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() % 128) as u8).collect();
        let src = String::from_utf8_lossy(&bytes).into_owned();
        exercise(&src, &ctx);
        let literal = format!("fromJSON('{}')", src.replace('\'', "''"));
        exercise(&literal, &ctx);
    }
}

#[test]
fn pathological_nesting_is_rejected_quickly() {
    let map = Map::new();
    let ctx = Context {
        contexts: &map,
        status: Status::Success,
        host: None,
    };
    for open in [
        "(",
        "[",
        "!",
        "a[",
        "f(",
        "contains(",
        "${{",
        "'",
        "fromJSON('[",
        "fromJSON('{\"a\":",
    ] {
        let src = open.repeat(20_000);
        exercise(&src, &ctx);
        let closed = format!("{open}1)");
        exercise(&closed, &ctx);
    }
    let deep_json = format!("fromJSON('{}')", "[".repeat(19_000));
    assert!(parse(&deep_json).is_ok());
    exercise(&deep_json, &ctx);
}
