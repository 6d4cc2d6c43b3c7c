//! A workflow's top-level keys, and the keys a workflow and a job both have (`defaults`,
//! `concurrency`, `permissions`).

use indexmap::IndexMap;

use super::Parser;
use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::{Node, NodeKind};

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    // What the workflow is for: shown by GitHub, nothing to run.
    "description",
    "run-name",
    "on",
    "env",
    "defaults",
    "concurrency",
    "permissions",
    "jobs",
];

impl Parser {
    pub(crate) fn workflow(&mut self, root: &Node) -> Option<Workflow> {
        let entries = self.expect_map(root, "a workflow")?;
        self.check_keys(entries, WORKFLOW_KEYS, "the workflow");
        let mut wf = Workflow {
            name: None,
            run_name: None,
            on: Triggers::default(),
            env: None,
            defaults: Defaults::default(),
            concurrency: None,
            permissions: None,
            jobs: IndexMap::new(),
            jobs_span: root.span,
        };
        let mut saw_on = false;
        let mut saw_jobs = false;
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "name" => wf.name = self.string(v, "`name`"),
                "run-name" => wf.run_name = self.scalar_template(v, "`run-name`"),
                "on" => {
                    saw_on = true;
                    wf.on = self.triggers(v);
                }
                "env" => wf.env = self.scalar_map(v, "`env`"),
                "defaults" => wf.defaults = self.defaults(v),
                "concurrency" => wf.concurrency = self.concurrency(v),
                "permissions" => wf.permissions = self.permissions(v),
                "jobs" => {
                    saw_jobs = true;
                    wf.jobs_span = k.span;
                    wf.jobs = self.jobs(v);
                }
                _ => {}
            }
        }
        if !saw_on {
            self.diags.push(
                Diagnostic::error("the workflow has no `on` key", root.span)
                    .with_help("add the events that trigger it, e.g. `on: [push, pull_request]`"),
            );
        }
        if !saw_jobs {
            self.diags.push(
                Diagnostic::error("the workflow has no `jobs` key", root.span)
                    .with_help("add at least one job"),
            );
        }
        Some(wf)
    }

    pub(super) fn permissions(&mut self, node: &Node) -> Option<Node> {
        match &node.kind {
            NodeKind::Scalar(s, _) => {
                if !["read-all", "write-all", ""].contains(&s.as_str()) {
                    self.diags.push(
                        Diagnostic::error(format!("invalid permissions `{s}`"), node.span)
                            .with_help("expected `read-all`, `write-all` or a mapping of scopes"),
                    );
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    let level = v.as_str().unwrap_or_default();
                    if !["read", "write", "none"].contains(&level) {
                        self.diags.push(
                            Diagnostic::error(
                                format!(
                                    "invalid permission level `{level}` for `{}`",
                                    k.as_str().unwrap_or_default()
                                ),
                                v.span,
                            )
                            .with_help("expected `read`, `write` or `none`"),
                        );
                    }
                }
            }
            NodeKind::Seq(_) => {
                self.error("`permissions` must be a string or a mapping", node.span)
            }
        }
        Some(node.clone())
    }

    pub(super) fn defaults(&mut self, node: &Node) -> Defaults {
        let mut d = Defaults::default();
        let Some(entries) = self.expect_map(node, "`defaults`") else {
            return d;
        };
        self.check_keys(entries, &["run"], "`defaults`");
        if let Some(run) = node.get("run")
            && let Some(run_entries) = self.expect_map(run, "`defaults.run`")
        {
            self.check_keys(
                run_entries,
                &["shell", "working-directory"],
                "`defaults.run`",
            );
            if let Some(s) = run.get("shell") {
                d.shell = self.scalar_template(s, "`shell`");
            }
            if let Some(w) = run.get("working-directory") {
                d.working_directory = self.scalar_template(w, "`working-directory`");
            }
        }
        d
    }

    pub(super) fn concurrency(&mut self, node: &Node) -> Option<Concurrency> {
        match &node.kind {
            NodeKind::Scalar(..) => Some(Concurrency {
                group: node.clone(),
                cancel_in_progress: None,
            }),
            NodeKind::Map(entries) => {
                self.check_keys(
                    entries,
                    &["group", "cancel-in-progress", "queue"],
                    "`concurrency`",
                );
                self.ignored_keys(
                    entries,
                    &["queue"],
                    "`concurrency`",
                    "a pending run or job replaces the one pending before it, as without it",
                );
                let Some(group) = node.get("group") else {
                    self.error("`concurrency` needs a `group`", node.span);
                    return None;
                };
                Some(Concurrency {
                    group: self.scalar_template(group, "`concurrency.group`")?,
                    cancel_in_progress: node
                        .get("cancel-in-progress")
                        .and_then(|c| self.scalar_template(c, "`cancel-in-progress`")),
                })
            }
            NodeKind::Seq(_) => {
                self.error("`concurrency` must be a string or a mapping", node.span);
                None
            }
        }
    }
}
