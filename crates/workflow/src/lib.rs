//! GitHub Actions workflow files: YAML parsed with source positions, the typed model
//! ([`model::Workflow`]), and every diagnostic `pipewright validate` reports.
//!
//! Pure: this crate does no IO (the caller reads files) and knows nothing of processes or
//! tokio. Values that may hold `${{ }}` expressions stay YAML nodes, evaluated by the engine.
//!
//! Its YAML loader, diagnostics and [`duration`] grammar also serve pipewright's other
//! configuration files (`.pipewright/deploy.yml`, the server's durations).

pub mod action;
pub mod container;
pub mod cron;
mod diag;
pub mod duration;
pub mod eval;
pub mod inputs;
pub mod model;
pub mod one_job;
mod parse;
pub mod payload;
mod render;
mod triggers;
mod validate;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use model::*;
pub use parse::EVENTS;
pub use render::render;
pub use yaml::{Node, NodeKind, Pos, Span};

/// The result of parsing one workflow file: the model as far as it could be built, and every
/// diagnostic found.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub workflow: Option<Workflow>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The workflow, if it has no errors (warnings allowed).
    pub fn valid(self) -> Option<Workflow> {
        if self.has_errors() {
            None
        } else {
            self.workflow
        }
    }
}

/// Parses and validates a workflow file's text.
pub fn parse(src: &str) -> Parsed {
    parse_with(src, true)
}

/// Parses a workflow file's text into the model without validating it (its job graph,
/// expressions, matrices): for a workflow validated before, as a runner's job's is by the
/// server that queued its run (validating expands every matrix, which a runner need not
/// pay for each job).
pub fn parse_model(src: &str) -> Parsed {
    parse_with(src, false)
}

fn parse_with(src: &str, validate: bool) -> Parsed {
    let root = match yaml::load(src) {
        Ok(root) => root,
        Err(d) => {
            return Parsed {
                workflow: None,
                diagnostics: vec![d],
            };
        }
    };
    let mut p = parse::Parser { diags: Vec::new() };
    let workflow = p.workflow(&root);
    let mut diagnostics = p.diags;
    if let Some(wf) = workflow.as_ref().filter(|_| validate) {
        let mut v = validate::Validator {
            src,
            diags: Vec::new(),
        };
        v.workflow(wf);
        diagnostics.extend(v.diags);
    }
    diagnostics.sort_by_key(|d| (d.span.start.offset, d.severity));
    Parsed {
        workflow,
        diagnostics,
    }
}
