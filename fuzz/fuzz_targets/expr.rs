//! Any text as an expression, a template and a condition: parsing and evaluating against a
//! small context must not panic or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let mut contexts = expr::Map::new();
    contexts.insert(
        "github".into(),
        expr::Value::from_json(serde_json::json!({"ref": "refs/heads/main", "event": {"a": [1, {"b": null}]}})),
    );
    let ctx = expr::Context { contexts: &contexts, status: expr::Status::Success, host: None };
    if let Ok(e) = expr::parse(src) {
        let _ = expr::evaluate(&e, &ctx);
    }
    if let Ok(t) = expr::parse_template(src) {
        let _ = t.evaluate(&ctx);
    }
    if let Ok(c) = expr::parse_condition(src) {
        let _ = c.evaluate(&ctx);
    }
});
