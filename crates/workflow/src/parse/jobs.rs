//! `jobs:`: each job's keys, its `environment`, `outputs` and `strategy`.

use indexmap::IndexMap;

use super::{Parser, same_repository, valid_id};
use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::{Node, NodeKind, Span};

const JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "if",
    "runs-on",
    "environment",
    "concurrency",
    "outputs",
    "env",
    "defaults",
    "strategy",
    "continue-on-error",
    "timeout-minutes",
    "container",
    "services",
    "permissions",
    "steps",
    "uses",
    "with",
    "secrets",
    "snapshot",
    "cancel-timeout-minutes",
];

impl Parser {
    pub(super) fn jobs(&mut self, node: &Node) -> IndexMap<String, Job> {
        let mut jobs = IndexMap::new();
        let Some(entries) = self.expect_map(node, "`jobs`") else {
            return jobs;
        };
        if entries.is_empty() {
            self.error(
                "`jobs` is empty: a workflow needs at least one job",
                node.span,
            );
        }
        for (k, v) in entries {
            let id = k.as_str().unwrap_or_default().to_owned();
            if !valid_id(&id) {
                self.diags.push(
                    Diagnostic::error(format!("invalid job id `{id}`"), k.span).with_help(
                        "a job id must start with a letter or `_` and contain only letters, digits, `-` and `_`",
                    ),
                );
            }
            if let Some(job) = self.job(&id, k.span, v) {
                jobs.insert(id, job);
            }
        }
        jobs
    }

    fn job(&mut self, id: &str, span: Span, node: &Node) -> Option<Job> {
        let what = format!("job `{id}`");
        let entries = self.expect_map(node, &what)?;
        self.check_keys(entries, JOB_KEYS, &what);
        self.ignored_keys(
            entries,
            &["cancel-timeout-minutes"],
            &what,
            "a cancelled job's steps get 5 s after SIGTERM, then SIGKILL",
        );
        let mut job = Job {
            id: id.to_owned(),
            span,
            name: None,
            needs: Vec::new(),
            if_: None,
            runs_on: None,
            environment: None,
            concurrency: None,
            outputs: IndexMap::new(),
            env: None,
            defaults: Defaults::default(),
            strategy: None,
            continue_on_error: None,
            timeout_minutes: None,
            container: None,
            services: None,
            permissions: None,
            steps: Vec::new(),
            uses: None,
            with: None,
            secrets: None,
        };
        let mut has_steps = false;
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "name" => job.name = self.scalar_template(v, "`name`"),
                "needs" => job.needs = self.string_list(v, "`needs`").unwrap_or_default(),
                "if" => job.if_ = self.condition(v),
                "runs-on" => job.runs_on = Some(v.clone()),
                "environment" => {
                    job.environment = match &v.kind {
                        NodeKind::Scalar(..) => Some(Environment {
                            name: v.clone(),
                            url: None,
                        }),
                        NodeKind::Map(e) => {
                            self.check_keys(e, &["name", "url", "deployment"], "`environment`");
                            match v.get("name") {
                                Some(n) => Some(Environment {
                                    name: n.clone(),
                                    url: v.get("url").cloned(),
                                }),
                                None => {
                                    self.error("`environment` needs a `name`", v.span);
                                    None
                                }
                            }
                        }
                        NodeKind::Seq(_) => {
                            self.error("`environment` must be a string or a mapping", v.span);
                            None
                        }
                    }
                }
                "concurrency" => job.concurrency = self.concurrency(v),
                "outputs" => {
                    if let Some(outs) = self.expect_map(v, "`outputs`") {
                        for (name, o) in outs {
                            if let Some(t) = self.scalar_template(o, "an output") {
                                job.outputs
                                    .insert(name.as_str().unwrap_or_default().to_owned(), t);
                            }
                        }
                    }
                }
                "env" => job.env = self.scalar_map(v, "`env`"),
                "defaults" => job.defaults = self.defaults(v),
                "strategy" => job.strategy = self.strategy(v),
                "continue-on-error" => {
                    job.continue_on_error = self.scalar_template(v, "`continue-on-error`")
                }
                "timeout-minutes" => {
                    job.timeout_minutes = self.scalar_template(v, "`timeout-minutes`")
                }
                "container" => job.container = Some(v.clone()),
                "services" => job.services = self.expect_map(v, "`services`").map(|_| v.clone()),
                "permissions" => job.permissions = self.permissions(v),
                "steps" => {
                    has_steps = true;
                    match v.as_seq() {
                        Some(items) => {
                            if items.is_empty() {
                                self.error(format!("job `{id}` has no steps"), v.span);
                            }
                            job.steps = items.iter().flat_map(|s| self.job_steps(s)).collect();
                        }
                        None => self.error(
                            format!("`steps` must be a sequence, found {}", v.describe()),
                            v.span,
                        ),
                    }
                }
                "uses" => job.uses = self.string(v, "`uses`").map(same_repository),
                "with" => job.with = self.scalar_map(v, "`with`"),
                "secrets" => job.secrets = Some(v.clone()),
                _ => {}
            }
        }
        if job.uses.is_some() && has_steps {
            self.error(
                format!(
                    "job `{id}` calls a reusable workflow with `uses` and cannot also have `steps`"
                ),
                span,
            );
        }
        if job.uses.is_none() {
            if !has_steps {
                self.error(format!("job `{id}` has no `steps`"), span);
            }
            if job.runs_on.is_none() {
                self.diags.push(
                    Diagnostic::error(format!("job `{id}` has no `runs-on`"), span)
                        .with_help("add e.g. `runs-on: ubuntu-latest`"),
                );
            }
        }
        Some(job)
    }

    fn strategy(&mut self, node: &Node) -> Option<Strategy> {
        let entries = self.expect_map(node, "`strategy`")?;
        self.check_keys(
            entries,
            &["matrix", "fail-fast", "max-parallel"],
            "`strategy`",
        );
        let mut s = Strategy::default();
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "matrix" => match &v.kind {
                    NodeKind::Map(_) => s.matrix = Some(v.clone()),
                    NodeKind::Scalar(text, _) if text.contains("${{") => s.matrix = Some(v.clone()),
                    _ => self.error(
                        format!(
                            "`matrix` must be a mapping or an expression, found {}",
                            v.describe()
                        ),
                        v.span,
                    ),
                },
                "fail-fast" => s.fail_fast = self.scalar_template(v, "`fail-fast`"),
                "max-parallel" => s.max_parallel = self.scalar_template(v, "`max-parallel`"),
                _ => {}
            }
        }
        Some(s)
    }
}
