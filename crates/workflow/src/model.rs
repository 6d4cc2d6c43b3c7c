//! The typed workflow model. Values that may hold `${{ }}` expressions stay YAML [`Node`]s
//! (GitHub's "template tokens"): they are evaluated when the job runs, with the contexts of
//! that moment.

use indexmap::IndexMap;

use crate::yaml::{Node, Span};

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A parsed workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: Option<Spanned<String>>,
    pub run_name: Option<Node>,
    pub on: Triggers,
    pub env: Option<Node>,
    pub defaults: Defaults,
    pub concurrency: Option<Concurrency>,
    pub permissions: Option<Node>,
    pub jobs: IndexMap<String, Job>,
    /// The `jobs:` key, for diagnostics about the job set as a whole.
    pub jobs_span: Span,
}

/// `on:` in any of its three forms, normalised to event name -> configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Triggers {
    pub events: IndexMap<String, EventTrigger>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventTrigger {
    pub span: Span,
    pub branches: Option<Vec<Spanned<String>>>,
    pub branches_ignore: Option<Vec<Spanned<String>>>,
    pub tags: Option<Vec<Spanned<String>>>,
    pub tags_ignore: Option<Vec<Spanned<String>>>,
    pub paths: Option<Vec<Spanned<String>>>,
    pub paths_ignore: Option<Vec<Spanned<String>>>,
    pub types: Option<Vec<Spanned<String>>>,
    /// `schedule`: the cron expressions.
    pub crons: Vec<Spanned<String>>,
    /// `workflow_dispatch` / `workflow_call` inputs.
    pub inputs: IndexMap<String, Input>,
    /// `workflow_call` outputs: name -> value expression.
    pub outputs: IndexMap<String, Node>,
    /// `workflow_call` secrets: name -> required.
    pub secrets: IndexMap<String, bool>,
    /// `workflow_run`: the workflows it follows.
    pub workflows: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    String,
    Boolean,
    Number,
    Choice,
    Environment,
}

impl InputType {
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Boolean => "boolean",
            InputType::Number => "number",
            InputType::Choice => "choice",
            InputType::Environment => "environment",
        }
    }
}

/// A `workflow_dispatch` or `workflow_call` input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub span: Span,
    pub description: Option<String>,
    pub required: bool,
    pub kind: InputType,
    pub default: Option<Node>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Defaults {
    pub shell: Option<Node>,
    pub working_directory: Option<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Concurrency {
    pub group: Node,
    pub cancel_in_progress: Option<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: Node,
    pub url: Option<Node>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Strategy {
    /// The matrix: a mapping, or one `${{ }}` expression producing one.
    pub matrix: Option<Node>,
    pub fail_fast: Option<Node>,
    pub max_parallel: Option<Node>,
}

/// A job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub span: Span,
    pub name: Option<Node>,
    pub needs: Vec<Spanned<String>>,
    pub if_: Option<Spanned<String>>,
    pub runs_on: Option<Node>,
    pub environment: Option<Environment>,
    pub concurrency: Option<Concurrency>,
    pub outputs: IndexMap<String, Node>,
    pub env: Option<Node>,
    pub defaults: Defaults,
    pub strategy: Option<Strategy>,
    pub continue_on_error: Option<Node>,
    pub timeout_minutes: Option<Node>,
    pub container: Option<Node>,
    pub services: Option<Node>,
    pub permissions: Option<Node>,
    pub steps: Vec<Step>,
    /// A reusable workflow call (`uses:` on the job).
    pub uses: Option<Spanned<String>>,
    pub with: Option<Node>,
    pub secrets: Option<Node>,
}

/// A step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub span: Span,
    pub id: Option<Spanned<String>>,
    pub name: Option<Node>,
    pub if_: Option<Spanned<String>>,
    pub run: Option<Node>,
    pub shell: Option<Node>,
    pub working_directory: Option<Node>,
    pub uses: Option<Spanned<String>>,
    pub with: Option<Node>,
    pub env: Option<Node>,
    pub continue_on_error: Option<Node>,
    pub timeout_minutes: Option<Node>,
    /// `background: true`: the step starts and the job goes on without waiting for it
    /// (GitHub's parallel steps). A step of a `parallel` group is one too.
    pub background: bool,
    /// A step that runs nothing: it waits for background steps, or stops one.
    pub control: Option<Control>,
}

/// What a step that runs nothing does (GitHub's `wait`, `wait-all`, `cancel`, and the wait
/// that ends a `parallel` group).
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// `wait: ID` or `wait: [ID, …]`: until those background steps end.
    Wait(Vec<Spanned<String>>),
    /// `wait-all`: until every background step started before it ends.
    WaitAll,
    /// `cancel: ID`: stops that background step and waits for its end.
    Cancel(Spanned<String>),
    /// The end of a `parallel` group: waits for the group's steps, the `n` steps before it.
    Group(usize),
}
