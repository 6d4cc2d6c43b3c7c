//! A step's keys (of a job, or of a composite action), and GitHub's parallel steps:
//! `background`, `wait`, `wait-all`, `cancel` and `parallel` (a job's steps only).

use super::{Parser, valid_id};
use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::{Node, Scalar};

const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "run",
    "shell",
    "working-directory",
    "uses",
    "with",
    "env",
    "continue-on-error",
    "timeout-minutes",
    "background",
    "wait",
    "wait-all",
    "cancel",
    "parallel",
];

/// The keys of a step that runs nothing (`wait`, `wait-all`, `cancel`), beside its own.
const CONTROL_KEYS: &[&str] = &["id", "name", "if"];

/// Where a step stands, for the keys of parallel steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A job's steps: every key.
    Job,
    /// Inside a job's `parallel` group: a `run` or `uses` step, in the background.
    Parallel,
    /// A composite action's steps: no parallel steps.
    Action,
}

/// The parallel-step keys that make a step something other than `run`/`uses`.
const PARALLEL_KEYS: &[&str] = &["background", "wait", "wait-all", "cancel", "parallel"];

impl Parser {
    /// A job's step: one, or a `parallel` group's steps (each in the background) and the
    /// wait that ends the group.
    pub(crate) fn job_steps(&mut self, node: &Node) -> Vec<Step> {
        let Some(entries) = node.as_map() else {
            return self.step(node, Place::Job).into_iter().collect();
        };
        let Some((_, group)) = entries.iter().find(|(k, _)| k.as_str() == Some("parallel")) else {
            return self.step(node, Place::Job).into_iter().collect();
        };
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if key != "parallel" && key != "name" {
                self.diags.push(
                    Diagnostic::error(format!("`{key}` cannot be used with `parallel`"), k.span)
                        .with_help("a `parallel` group has only `name` and its steps; put the key on the steps"),
                );
            }
        }
        let Some(items) = group.as_seq() else {
            self.error(
                format!(
                    "`parallel` must be a sequence of steps, found {}",
                    group.describe()
                ),
                group.span,
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.error("`parallel` needs at least one step", group.span);
            return Vec::new();
        }
        let mut steps: Vec<Step> = items
            .iter()
            .filter_map(|s| self.step(s, Place::Parallel))
            .collect();
        let name = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("name"))
            .and_then(|(_, v)| self.scalar_template(v, "`name`"));
        let mut end = Step::empty(node.span);
        end.name = name;
        end.control = Some(Control::Group(steps.len()));
        steps.push(end);
        steps
    }

    pub(crate) fn step(&mut self, node: &Node, place: Place) -> Option<Step> {
        let entries = self.expect_map(node, "a step")?;
        self.check_keys(entries, STEP_KEYS, "a step");
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !PARALLEL_KEYS.contains(&key) {
                continue;
            }
            let refused = match place {
                Place::Job => None,
                Place::Parallel => {
                    Some("inside a `parallel` group, whose steps all run in the background")
                }
                Place::Action => Some("in a composite action: parallel steps are a job's"),
            };
            if let Some(why) = refused {
                self.diags.push(
                    Diagnostic::error(format!("`{key}` cannot be used {why}"), k.span)
                        .with_label("not here"),
                );
            }
        }
        if let Some(control) = self.control(entries) {
            let mut step = Step::empty(node.span);
            step.control = Some(control);
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "id" => step.id = self.step_id(v),
                    "name" => step.name = self.scalar_template(v, "`name`"),
                    "if" => step.if_ = self.condition(v),
                    _ => {}
                }
            }
            return Some(step);
        }
        let mut step = Step::empty(node.span);
        step.background = place == Place::Parallel;
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "id" => step.id = self.step_id(v),
                "background" if place == Place::Job => match v.scalar() {
                    Some(Scalar::Bool(b)) => step.background = b,
                    _ => self.error(
                        format!(
                            "`background` must be `true` or `false`, found {}",
                            v.describe()
                        ),
                        v.span,
                    ),
                },
                "name" => step.name = self.scalar_template(v, "`name`"),
                "if" => step.if_ = self.condition(v),
                "run" => step.run = self.scalar_template(v, "`run`"),
                "shell" => step.shell = self.scalar_template(v, "`shell`"),
                "working-directory" => {
                    step.working_directory = self.scalar_template(v, "`working-directory`")
                }
                "uses" => step.uses = self.string(v, "`uses`"),
                "with" => step.with = self.scalar_map(v, "`with`"),
                "env" => step.env = self.scalar_map(v, "`env`"),
                "continue-on-error" => {
                    step.continue_on_error = self.scalar_template(v, "`continue-on-error`")
                }
                "timeout-minutes" => {
                    step.timeout_minutes = self.scalar_template(v, "`timeout-minutes`")
                }
                _ => {}
            }
        }
        match (&step.run, &step.uses) {
            (Some(_), Some(_)) => self.error("a step cannot have both `run` and `uses`", node.span),
            (None, None) => self.diags.push(
                Diagnostic::error("a step needs either `run` or `uses`", node.span)
                    .with_help("add `run: <command>` or `uses: <action>`"),
            ),
            _ => {}
        }
        if step.uses.is_some() && (step.shell.is_some() || step.working_directory.is_some()) {
            self.error(
                "`shell` and `working-directory` only apply to `run` steps",
                node.span,
            );
        }
        Some(step)
    }

    fn step_id(&mut self, v: &Node) -> Option<Spanned<String>> {
        let id = self.string(v, "`id`")?;
        if !valid_id(&id.value) {
            self.diags.push(
                Diagnostic::error(format!("invalid step id `{}`", id.value), id.span).with_help(
                    "a step id must start with a letter or `_` and contain only letters, digits, `-` and `_`",
                ),
            );
        }
        Some(id)
    }

    /// What a `wait`, `wait-all` or `cancel` step does; `None` for any other step. Its other
    /// keys may only be `id`, `name` and `if`.
    fn control(&mut self, entries: &[(Node, Node)]) -> Option<Control> {
        let (key, value) = entries.iter().find_map(|(k, v)| {
            let key = k.as_str()?;
            ["wait", "wait-all", "cancel"]
                .contains(&key)
                .then_some((k, v))
        })?;
        let name = key.as_str().unwrap_or_default();
        for (k, _) in entries {
            let other = k.as_str().unwrap_or_default();
            if other != name && !CONTROL_KEYS.contains(&other) && STEP_KEYS.contains(&other) {
                self.diags.push(
                    Diagnostic::error(format!("`{other}` cannot be used with `{name}`"), k.span)
                        .with_help(format!(
                            "a `{name}` step runs nothing: it may have only `id`, `name` and `if`"
                        )),
                );
            }
        }
        let control = match name {
            "wait" => Control::Wait(self.string_list(value, "`wait`")?),
            "wait-all" => {
                // `wait-all:` (null) or `wait-all: true`, as GitHub writes it.
                match value.scalar() {
                    Some(Scalar::Null | Scalar::Bool(true)) => Control::WaitAll,
                    _ => {
                        self.error(
                            format!(
                                "`wait-all` takes no value (or `true`), found {}",
                                value.describe()
                            ),
                            value.span,
                        );
                        return None;
                    }
                }
            }
            _ => Control::Cancel(self.string(value, "`cancel`")?),
        };
        Some(control)
    }
}

impl Step {
    /// A step with no keys, at `span`.
    pub(crate) fn empty(span: crate::yaml::Span) -> Step {
        Step {
            span,
            id: None,
            name: None,
            if_: None,
            run: None,
            shell: None,
            working_directory: None,
            uses: None,
            with: None,
            env: None,
            continue_on_error: None,
            timeout_minutes: None,
            background: false,
            control: None,
        }
    }
}
