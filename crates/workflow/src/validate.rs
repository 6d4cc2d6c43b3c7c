//! Semantic checks on a parsed workflow: the job graph, expressions and the contexts they may
//! use where they stand, cron syntax, matrices, step ids and filter patterns.

use std::collections::{HashMap, HashSet};

use expr::Allowed;

use crate::diag::Diagnostic;
use crate::model::{Control, Job, Step, Workflow};
use crate::yaml::{Node, NodeKind, Pos, Span, Style, pos_of_offset};

/// Contexts available in each place, from GitHub's "Context availability" table.
mod ctx {
    pub(super) const RUN_NAME: &[&str] = &["github", "inputs", "vars"];
    pub(super) const WORKFLOW_ENV: &[&str] = &["github", "secrets", "inputs", "vars"];
    pub(super) const WORKFLOW_CONCURRENCY: &[&str] = &["github", "inputs", "vars"];
    pub(super) const JOB_IF: &[&str] = &["github", "needs", "vars", "inputs"];
    pub(super) const STRATEGY: &[&str] = &["github", "needs", "vars", "inputs"];
    pub(super) const JOB_MATRIXED: &[&str] =
        &["github", "needs", "strategy", "matrix", "vars", "inputs"];
    pub(super) const JOB_ENV: &[&str] = &[
        "github", "needs", "strategy", "matrix", "vars", "secrets", "inputs",
    ];
    pub(super) const JOB_DEFAULTS: &[&str] = &[
        "github", "needs", "strategy", "matrix", "env", "vars", "inputs",
    ];
    pub(super) const JOB_OUTPUTS: &[&str] = &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "steps", "inputs",
    ];
    pub(super) const STEP: &[&str] = JOB_OUTPUTS;
    pub(super) const WORKFLOW_CALL_OUTPUT: &[&str] = &["github", "jobs", "vars", "inputs"];
    /// `container` (its `credentials` and `env` are where GitHub allows `secrets` and `env`).
    pub(super) const CONTAINER: &[&str] = &[
        "github", "needs", "strategy", "matrix", "env", "vars", "secrets", "inputs",
    ];
    pub(super) const SERVICES: &[&str] = &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "inputs",
    ];
}

pub(crate) struct Validator<'a> {
    pub(crate) src: &'a str,
    pub(crate) diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    /// The span of `len` bytes at `offset` inside the text of `node`, found in the source.
    fn sub_span(&self, node: &Node, text: &str, offset: usize, len: usize) -> Span {
        let inner = text.get(offset..offset + len).unwrap_or_default();
        let start = node.span.start.offset;
        let end = node.span.end.offset.min(self.src.len()).max(start);
        if let NodeKind::Scalar(_, Style::Plain) = node.kind
            && self.src.get(start + offset..start + offset + len) == Some(inner)
        {
            return self.span_at(start + offset, len);
        }
        // Quoted and block scalars differ from their source text; find the fragment instead.
        if !inner.is_empty()
            && let Some(region) = self.src.get(start..end)
            && let Some(i) = region.find(inner)
        {
            return self.span_at(start + i, len);
        }
        node.span
    }

    fn span_at(&self, offset: usize, len: usize) -> Span {
        Span {
            start: pos_of_offset(self.src, offset),
            end: pos_of_offset(self.src, offset + len),
        }
    }

    /// Checks every `${{ }}` in the scalars of `node`.
    fn templates(&mut self, node: &Node, contexts: &[&str], step_level: bool) {
        match &node.kind {
            NodeKind::Scalar(text, _) => {
                if !text.contains("${{") {
                    return;
                }
                let allowed = Allowed {
                    contexts,
                    status_functions: false,
                    hash_files: step_level,
                };
                match expr::parse_template(text) {
                    Err(e) => {
                        let span = self.sub_span(node, text, e.offset, e.len.max(1));
                        self.diags.push(
                            Diagnostic::error(format!("invalid expression: {}", e.message), span)
                                .with_label("here"),
                        );
                    }
                    Ok(t) => {
                        for part in t.parts() {
                            if let expr::Part::Expr(e, _) = part {
                                for err in expr::check(e, &allowed) {
                                    let span =
                                        self.sub_span(node, text, err.offset, err.len.max(1));
                                    self.diags.push(
                                        Diagnostic::error(
                                            format!("invalid expression: {}", err.message),
                                            span,
                                        )
                                        .with_help(
                                            format!("available here: {}", contexts.join(", ")),
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            NodeKind::Seq(items) => {
                for i in items {
                    self.templates(i, contexts, step_level);
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    self.templates(k, contexts, step_level);
                    self.templates(v, contexts, step_level);
                }
            }
        }
    }

    fn opt_templates(&mut self, node: Option<&Node>, contexts: &[&str], step_level: bool) {
        if let Some(n) = node {
            self.templates(n, contexts, step_level);
        }
    }

    fn condition(
        &mut self,
        cond: &crate::model::Spanned<String>,
        contexts: &[&str],
        step_level: bool,
    ) {
        let node = Node {
            kind: NodeKind::Scalar(cond.value.clone(), Style::Quoted),
            span: cond.span,
        };
        match expr::parse_condition(&cond.value) {
            Err(e) => {
                let span = self.sub_span(&node, &cond.value, e.offset, e.len.max(1));
                self.diags.push(
                    Diagnostic::error(format!("invalid expression in `if`: {}", e.message), span)
                        .with_label("here"),
                );
            }
            Ok(c) => {
                if c.is_interpolation_mistake() {
                    self.diags.push(
                        Diagnostic::warning(
                            "this `if` mixes `${{ }}` with text outside it, so it is a string and always true",
                            cond.span,
                        )
                        .with_help("wrap the whole condition in one `${{ }}`, or drop the `${{ }}`"),
                    );
                }
                let allowed = Allowed {
                    contexts,
                    status_functions: true,
                    hash_files: step_level,
                };
                for (e, _) in condition_exprs(&cond.value) {
                    for err in expr::check(&e, &allowed) {
                        let span = self.sub_span(&node, &cond.value, err.offset, err.len.max(1));
                        self.diags.push(
                            Diagnostic::error(
                                format!("invalid expression in `if`: {}", err.message),
                                span,
                            )
                            .with_help(format!("available here: {}", contexts.join(", "))),
                        );
                    }
                }
            }
        }
    }

    pub(crate) fn workflow(&mut self, wf: &Workflow) {
        self.opt_templates(wf.run_name.as_ref(), ctx::RUN_NAME, false);
        self.opt_templates(wf.env.as_ref(), ctx::WORKFLOW_ENV, false);
        if let Some(c) = &wf.concurrency {
            self.templates(&c.group, ctx::WORKFLOW_CONCURRENCY, false);
            self.opt_templates(
                c.cancel_in_progress.as_ref(),
                ctx::WORKFLOW_CONCURRENCY,
                false,
            );
        }
        self.triggers(wf);
        self.job_graph(wf);
        for job in wf.jobs.values() {
            self.job(job);
        }
    }

    fn triggers(&mut self, wf: &Workflow) {
        use plan::filter::{Pattern, PatternKind};
        for (event, t) in &wf.on.events {
            for cron in &t.crons {
                if let Err(e) = crate::cron::parse(&cron.value) {
                    self.diags.push(
                        Diagnostic::error(
                            format!("invalid cron expression `{}`: {e}", cron.value),
                            cron.span,
                        )
                        .with_help(
                            "expected five fields: minute hour day-of-month month day-of-week",
                        ),
                    );
                }
            }
            let lists = [
                (&t.branches, PatternKind::Ref),
                (&t.branches_ignore, PatternKind::Ref),
                (&t.tags, PatternKind::Ref),
                (&t.tags_ignore, PatternKind::Ref),
                (&t.paths, PatternKind::Path),
                (&t.paths_ignore, PatternKind::Path),
            ];
            for (list, kind) in lists {
                for p in list.iter().flatten() {
                    if let Err(e) = Pattern::new(&p.value, kind) {
                        self.diags.push(Diagnostic::error(
                            format!(
                                "invalid filter pattern `{}` in `{event}`: {}",
                                p.value, e.message
                            ),
                            p.span,
                        ));
                    }
                }
            }
            for output in t.outputs.values() {
                self.templates(output, ctx::WORKFLOW_CALL_OUTPUT, false);
            }
        }
    }

    fn job_graph(&mut self, wf: &Workflow) {
        for job in wf.jobs.values() {
            let mut seen = HashSet::new();
            for need in &job.needs {
                if !seen.insert(need.value.as_str()) {
                    self.diags.push(Diagnostic::warning(
                        format!("`{}` is listed twice in `needs`", need.value),
                        need.span,
                    ));
                }
                if !wf.jobs.contains_key(&need.value) {
                    let ids: Vec<&str> = wf.jobs.keys().map(String::as_str).collect();
                    let mut d = Diagnostic::error(
                        format!(
                            "job `{}` needs `{}`, which is not a job of this workflow",
                            job.id, need.value
                        ),
                        need.span,
                    )
                    .with_label("unknown job");
                    d = match crate::parse::suggest(&need.value, &ids) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help(format!("jobs in this workflow: {}", ids.join(", "))),
                    };
                    self.diags.push(d);
                } else if need.value == job.id {
                    self.diags.push(Diagnostic::error(
                        format!("job `{}` needs itself", job.id),
                        need.span,
                    ));
                }
            }
        }
        // Cycles: depth-first search with colours; report each cycle once, at the edge closing it.
        let mut colour: HashMap<&str, u8> = HashMap::new();
        let mut path: Vec<&str> = Vec::new();
        for id in wf.jobs.keys() {
            self.visit(wf, id, &mut colour, &mut path);
        }
    }

    fn visit<'w>(
        &mut self,
        wf: &'w Workflow,
        id: &'w str,
        colour: &mut HashMap<&'w str, u8>,
        path: &mut Vec<&'w str>,
    ) {
        match colour.get(id) {
            Some(2) => return,
            Some(1) => return,
            _ => {}
        }
        colour.insert(id, 1);
        path.push(id);
        if let Some(job) = wf.jobs.get(id) {
            for need in &job.needs {
                let n = need.value.as_str();
                if n == id || !wf.jobs.contains_key(n) {
                    continue;
                }
                if colour.get(n) == Some(&1) {
                    let start = path.iter().position(|p| *p == n).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(n);
                    self.diags.push(
                        Diagnostic::error(
                            format!("`needs` forms a cycle: {}", cycle.join(" -> ")),
                            need.span,
                        )
                        .with_label("closes the cycle"),
                    );
                } else if let Some((k, _)) = wf.jobs.get_key_value(n) {
                    self.visit(wf, k, colour, path);
                }
            }
        }
        path.pop();
        colour.insert(id, 2);
    }

    fn job(&mut self, job: &Job) {
        if let Some(c) = &job.if_ {
            self.condition(c, ctx::JOB_IF, false);
        }
        self.opt_templates(job.name.as_ref(), ctx::JOB_MATRIXED, false);
        self.opt_templates(job.runs_on.as_ref(), ctx::JOB_MATRIXED, false);
        if let Some(env) = &job.environment {
            self.templates(&env.name, ctx::JOB_MATRIXED, false);
            self.opt_templates(env.url.as_ref(), ctx::STEP, false);
        }
        if let Some(c) = &job.concurrency {
            self.templates(&c.group, ctx::JOB_MATRIXED, false);
            self.opt_templates(c.cancel_in_progress.as_ref(), ctx::JOB_MATRIXED, false);
        }
        for o in job.outputs.values() {
            self.templates(o, ctx::JOB_OUTPUTS, false);
        }
        self.opt_templates(job.env.as_ref(), ctx::JOB_ENV, false);
        self.opt_templates(job.defaults.shell.as_ref(), ctx::JOB_DEFAULTS, false);
        self.opt_templates(
            job.defaults.working_directory.as_ref(),
            ctx::JOB_DEFAULTS,
            false,
        );
        self.opt_templates(job.continue_on_error.as_ref(), ctx::JOB_MATRIXED, false);
        self.opt_templates(job.timeout_minutes.as_ref(), ctx::JOB_MATRIXED, false);
        self.opt_templates(job.container.as_ref(), ctx::CONTAINER, false);
        self.opt_templates(job.services.as_ref(), ctx::SERVICES, false);
        self.opt_templates(job.with.as_ref(), ctx::JOB_MATRIXED, false);
        self.opt_templates(job.secrets.as_ref(), ctx::JOB_ENV, false);
        if let Some(s) = &job.strategy {
            self.opt_templates(s.matrix.as_ref(), ctx::STRATEGY, false);
            self.opt_templates(s.fail_fast.as_ref(), ctx::STRATEGY, false);
            self.opt_templates(s.max_parallel.as_ref(), ctx::STRATEGY, false);
            if let Some(m) = &s.matrix {
                self.matrix(m);
            }
        }
        let mut ids: HashMap<&str, Pos> = HashMap::new();
        // The background steps before the one at hand, by id: what `wait` and `cancel` name.
        let mut background: Vec<&str> = Vec::new();
        for step in &job.steps {
            let named = match &step.control {
                Some(Control::Wait(names)) => names.iter().collect(),
                Some(Control::Cancel(name)) => vec![name],
                _ => Vec::new(),
            };
            for name in named {
                if !background.contains(&name.value.as_str()) {
                    let key = if matches!(step.control, Some(Control::Cancel(_))) {
                        "cancel"
                    } else {
                        "wait"
                    };
                    let help = if background.is_empty() {
                        "no step before it has `background: true` and an `id`".to_owned()
                    } else {
                        format!("the background steps before it: {}", background.join(", "))
                    };
                    self.diags.push(
                        Diagnostic::error(
                            format!(
                                "`{key}` names `{}`, which is not a background step before it in job `{}`",
                                name.value, job.id
                            ),
                            name.span,
                        )
                        .with_label("no such background step")
                        .with_help(help),
                    );
                }
            }
            if step.background
                && let Some(id) = &step.id
            {
                background.push(id.value.as_str());
            }
            if let Some(id) = &step.id {
                let key = id.value.as_str();
                if let Some(first) = ids.get(key) {
                    self.diags.push(
                        Diagnostic::error(
                            format!(
                                "step id `{key}` is used twice in job `{}` (first on line {})",
                                job.id, first.line
                            ),
                            id.span,
                        )
                        .with_label("duplicate id"),
                    );
                } else {
                    ids.insert(key, id.span.start);
                }
            }
            self.step(step);
        }
    }

    fn step(&mut self, step: &Step) {
        if let Some(c) = &step.if_ {
            self.condition(c, ctx::STEP, true);
        }
        for n in [
            &step.name,
            &step.run,
            &step.shell,
            &step.working_directory,
            &step.with,
            &step.env,
            &step.continue_on_error,
            &step.timeout_minutes,
        ] {
            self.opt_templates(n.as_ref(), ctx::STEP, true);
        }
        if let Some(uses) = &step.uses {
            let u = uses.value.as_str();
            let ok = u.starts_with("./")
                || u.starts_with("$/")
                || u.starts_with("docker://")
                || u.split_once('@').is_some_and(|(name, r)| {
                    !r.is_empty()
                        && name.split('/').count() >= 2
                        && name.split('/').all(|p| !p.is_empty())
                });
            if !ok {
                self.diags.push(
                    Diagnostic::error(format!("invalid action reference `{u}`"), uses.span)
                        .with_help("expected `owner/repo@ref`, `owner/repo/path@ref`, `./local/path`, `$/path` or `docker://image`"),
                );
            }
        }
    }

    /// A literal matrix is expanded here so that its errors show before anything runs.
    fn matrix(&mut self, node: &Node) {
        let Some(entries) = node.as_map() else {
            return; // an expression, checked when the job runs
        };
        let mut m = plan::matrix::Matrix {
            dimensions: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
        };
        let mut dynamic = false;
        let before = self.diags.len();
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            if v.as_str().is_some_and(|s| s.contains("${{")) {
                dynamic = true;
                continue;
            }
            match key {
                "include" | "exclude" => {
                    let Some(items) = v.as_seq() else {
                        self.diags.push(Diagnostic::error(
                            format!(
                                "matrix `{key}` must be a sequence of mappings, found {}",
                                v.describe()
                            ),
                            v.span,
                        ));
                        continue;
                    };
                    for item in items {
                        match item.to_value() {
                            expr::Value::Object(map) => {
                                if key == "include" {
                                    m.include.push(map);
                                } else {
                                    m.exclude.push(map);
                                }
                            }
                            _ if item.as_str().is_some_and(|s| s.contains("${{")) => dynamic = true,
                            _ => self.diags.push(Diagnostic::error(
                                format!(
                                    "each matrix `{key}` entry must be a mapping, found {}",
                                    item.describe()
                                ),
                                item.span,
                            )),
                        }
                    }
                }
                _ => match v.as_seq() {
                    Some([]) => self.diags.push(Diagnostic::error(
                        format!("matrix dimension `{key}` is empty, so the job would never run"),
                        v.span,
                    )),
                    Some(items) => m
                        .dimensions
                        .push((key.to_owned(), items.iter().map(Node::to_value).collect())),
                    None => self.diags.push(
                        Diagnostic::error(
                            format!(
                                "matrix dimension `{key}` must be a sequence of values, found {}",
                                v.describe()
                            ),
                            v.span,
                        )
                        .with_help(format!("write `{key}: [a, b]`")),
                    ),
                },
            }
        }
        // Shape errors were reported above; expanding would only repeat them.
        if dynamic || self.diags.len() > before {
            return;
        }
        if let Err(e) = plan::matrix::expand(&m) {
            self.diags
                .push(Diagnostic::error(format!("invalid matrix: {e}"), node.span));
        }
    }
}

/// The expressions of an `if:` value with their offsets: the `${{ }}` parts if it has any,
/// else the whole value as one bare expression.
fn condition_exprs(value: &str) -> Vec<(expr::Expr, usize)> {
    if value.contains("${{") {
        expr::parse_template(value)
            .map(|t| {
                t.parts()
                    .iter()
                    .filter_map(|p| match p {
                        expr::Part::Expr(e, base) => Some((e.clone(), *base)),
                        expr::Part::Literal(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else if value.trim().is_empty() {
        Vec::new()
    } else {
        expr::parse(value).map(|e| vec![(e, 0)]).unwrap_or_default()
    }
}
