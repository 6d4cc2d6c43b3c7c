//! GitHub Actions expressions (`${{ ... }}`): values, parser, evaluator, string templates and
//! `if:` conditions, behaving exactly as GitHub's runner does.
//!
//! The reference is the runner's implementation (`DTExpressions2`), not only its
//! documentation: type coercions, number formatting, `toJSON` layout, the lexer's rules and
//! error messages follow that code. `GRAMMAR.md` beside this crate writes the language down.
//!
//! This crate is pure: it does no IO and knows nothing of processes, files, workflows or
//! tokio. Functions that need the outside world (`hashFiles`) are supplied by the caller
//! through the [`Host`] trait; which contexts and functions are allowed where is the caller's
//! knowledge, passed to [`check`] as [`Allowed`].
//!
//! ```
//! use expr::{Context, Map, Status, Value, evaluate, parse};
//!
//! let mut contexts = Map::new();
//! contexts.insert("github".into(), Value::from_json(serde_json::json!({"ref": "refs/heads/main"})));
//! let ctx = Context { contexts: &contexts, status: Status::Success, host: None };
//! let expr = parse("github.ref == 'REFS/HEADS/MAIN'").unwrap();
//! assert_eq!(evaluate(&expr, &ctx).unwrap(), Value::Bool(true));
//! ```

mod ast;
mod casefold;
mod check;
mod condition;
mod error;
mod eval;
mod functions;
mod json;
mod lexer;
mod number;
mod parser;
mod template;
mod value;

pub use check::{Allowed, check};
pub use condition::{Condition, parse_condition};
pub use error::{EvalError, ParseError};
pub use eval::{Context, Host, Status, evaluate};
pub use parser::{Expr, parse};
pub use template::{Part, Template, parse_template};
pub use value::{Map, Value, map_from_json, map_get, map_to_json};
