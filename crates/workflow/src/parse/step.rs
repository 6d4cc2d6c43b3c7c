//! A step's keys (of a job, or of a composite action).

use super::{Parser, valid_id};
use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::Node;

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
];

impl Parser {
    pub(crate) fn step(&mut self, node: &Node) -> Option<Step> {
        let entries = self.expect_map(node, "a step")?;
        self.check_keys(entries, STEP_KEYS, "a step");
        let mut step = Step {
            span: node.span,
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
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "id" => {
                    step.id = self.string(v, "`id`");
                    if let Some(id) = &step.id
                        && !valid_id(&id.value)
                    {
                        self.diags.push(
                            Diagnostic::error(format!("invalid step id `{}`", id.value), id.span).with_help(
                                "a step id must start with a letter or `_` and contain only letters, digits, `-` and `_`",
                            ),
                        );
                    }
                }
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
}
