//! From the YAML tree to the typed model, reporting every shape error (unknown keys, wrong
//! types, missing keys) rather than stopping at the first.

use indexmap::IndexMap;

use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::{Node, NodeKind, Scalar, Span};

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "run-name",
    "on",
    "env",
    "defaults",
    "concurrency",
    "permissions",
    "jobs",
];
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
];
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
const EVENT_FILTER_KEYS: &[&str] = &[
    "branches",
    "branches-ignore",
    "tags",
    "tags-ignore",
    "paths",
    "paths-ignore",
    "types",
];
/// Events GitHub knows; others are reported, since a typo would silently never fire.
pub const EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
];

pub(crate) struct Parser {
    pub(crate) diags: Vec<Diagnostic>,
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest known name, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

impl Parser {
    fn error(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(msg, span));
    }

    fn expect_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            NodeKind::Map(m) => Some(m),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        format!("{what} must be a mapping, found {}", node.describe()),
                        node.span,
                    )
                    .with_label("expected a mapping"),
                );
                None
            }
        }
    }

    /// Reports keys that are not in `allowed`, with a suggestion.
    fn check_keys(&mut self, entries: &[(Node, Node)], allowed: &[&str], what: &str) {
        for (k, _) in entries {
            let key = k.as_str().unwrap_or_default();
            if !allowed.contains(&key) {
                let mut d = Diagnostic::error(format!("unknown key `{key}` in {what}"), k.span)
                    .with_label("unknown key");
                d = match suggest(key, allowed) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("expected one of: {}", allowed.join(", "))),
                };
                self.diags.push(d);
            }
        }
    }

    /// A plain string (no expression evaluation).
    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match node.scalar() {
            Some(Scalar::String(s)) => Some(Spanned {
                value: s.to_owned(),
                span: node.span,
            }),
            // Numbers and booleans are fine where a string is expected; GitHub stringifies them.
            Some(Scalar::Number(_) | Scalar::Bool(_)) => Some(Spanned {
                value: node.as_str().unwrap_or_default().to_owned(),
                span: node.span,
            }),
            _ => {
                self.error(
                    format!("{what} must be a string, found {}", node.describe()),
                    node.span,
                );
                None
            }
        }
    }

    /// A string or a sequence of strings.
    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<Spanned<String>>> {
        match &node.kind {
            NodeKind::Seq(items) => {
                Some(items.iter().filter_map(|i| self.string(i, what)).collect())
            }
            NodeKind::Scalar(..) if !node.is_null() => self.string(node, what).map(|s| vec![s]),
            _ => {
                self.error(
                    format!(
                        "{what} must be a string or a sequence of strings, found {}",
                        node.describe()
                    ),
                    node.span,
                );
                None
            }
        }
    }

    /// A value that may be a template; only its shape is checked here.
    fn scalar_template(&mut self, node: &Node, what: &str) -> Option<Node> {
        match node.kind {
            NodeKind::Scalar(..) => Some(node.clone()),
            _ => {
                self.error(
                    format!("{what} must be a scalar, found {}", node.describe()),
                    node.span,
                );
                None
            }
        }
    }

    /// A mapping of names to scalar templates (`env`, `with`, `outputs`).
    fn scalar_map(&mut self, node: &Node, what: &str) -> Option<Node> {
        if let NodeKind::Scalar(..) = node.kind
            && node
                .as_str()
                .is_some_and(|s| s.trim_start().starts_with("${{"))
        {
            return Some(node.clone());
        }
        let entries = self.expect_map(node, what)?;
        for (k, v) in entries {
            if !matches!(v.kind, NodeKind::Scalar(..)) {
                self.error(
                    format!(
                        "{what}: the value of `{}` must be a string, number or boolean, found {}",
                        k.as_str().unwrap_or_default(),
                        v.describe()
                    ),
                    v.span,
                );
            }
        }
        Some(node.clone())
    }

    fn condition(&mut self, node: &Node) -> Option<Spanned<String>> {
        match node.scalar() {
            Some(Scalar::Bool(b)) => Some(Spanned {
                value: b.to_string(),
                span: node.span,
            }),
            Some(Scalar::Null) => None,
            _ => self.string(node, "`if`"),
        }
    }

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

    fn permissions(&mut self, node: &Node) -> Option<Node> {
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

    fn defaults(&mut self, node: &Node) -> Defaults {
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

    fn concurrency(&mut self, node: &Node) -> Option<Concurrency> {
        match &node.kind {
            NodeKind::Scalar(..) => Some(Concurrency {
                group: node.clone(),
                cancel_in_progress: None,
            }),
            NodeKind::Map(entries) => {
                self.check_keys(entries, &["group", "cancel-in-progress"], "`concurrency`");
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

    fn triggers(&mut self, node: &Node) -> Triggers {
        let mut t = Triggers::default();
        let add = |this: &mut Self, t: &mut Triggers, name: &Spanned<String>| {
            if !EVENTS.contains(&name.value.as_str()) {
                let mut d = Diagnostic::error(format!("unknown event `{}`", name.value), name.span);
                if let Some(s) = suggest(&name.value, EVENTS) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                this.diags.push(d);
            }
            if t.events.contains_key(&name.value) {
                this.error(format!("event `{}` is listed twice", name.value), name.span);
            }
            t.events.insert(
                name.value.clone(),
                EventTrigger {
                    span: name.span,
                    ..EventTrigger::default()
                },
            );
        };
        match &node.kind {
            NodeKind::Scalar(..) => {
                if let Some(name) = self.string(node, "an event") {
                    add(self, &mut t, &name);
                }
            }
            NodeKind::Seq(items) => {
                for item in items {
                    if let Some(name) = self.string(item, "an event") {
                        add(self, &mut t, &name);
                    }
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    let Some(name) = self.string(k, "an event") else {
                        continue;
                    };
                    add(self, &mut t, &name);
                    let cfg = self.event_config(&name.value, v);
                    if let Some(slot) = t.events.get_mut(&name.value) {
                        *slot = EventTrigger {
                            span: name.span,
                            ..cfg
                        };
                    }
                }
            }
        }
        t
    }

    fn event_config(&mut self, event: &str, node: &Node) -> EventTrigger {
        let mut cfg = EventTrigger::default();
        if event == "schedule" {
            let Some(items) = node.as_seq() else {
                self.error(
                    "`schedule` must be a sequence of `- cron: ...` entries",
                    node.span,
                );
                return cfg;
            };
            for item in items {
                let Some(entries) = self.expect_map(item, "a `schedule` entry") else {
                    continue;
                };
                self.check_keys(entries, &["cron"], "a `schedule` entry");
                match item.get("cron") {
                    Some(c) => {
                        if let Some(s) = self.string(c, "`cron`") {
                            cfg.crons.push(s);
                        }
                    }
                    None => self.error("a `schedule` entry needs a `cron` key", item.span),
                }
            }
            return cfg;
        }
        let Some(entries) = self.expect_map(node, &format!("the `{event}` trigger")) else {
            return cfg;
        };
        let allowed: Vec<&str> = match event {
            "push" => vec![
                "branches",
                "branches-ignore",
                "tags",
                "tags-ignore",
                "paths",
                "paths-ignore",
            ],
            "pull_request" | "pull_request_target" => EVENT_FILTER_KEYS.to_vec(),
            "workflow_dispatch" => vec!["inputs"],
            "workflow_call" => vec!["inputs", "outputs", "secrets"],
            "workflow_run" => vec!["workflows", "types", "branches", "branches-ignore"],
            _ => vec!["types"],
        };
        self.check_keys(entries, &allowed, &format!("the `{event}` trigger"));
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let what = format!("`{event}.{key}`");
            match key {
                "branches" => cfg.branches = self.string_list(v, &what),
                "branches-ignore" => cfg.branches_ignore = self.string_list(v, &what),
                "tags" => cfg.tags = self.string_list(v, &what),
                "tags-ignore" => cfg.tags_ignore = self.string_list(v, &what),
                "paths" => cfg.paths = self.string_list(v, &what),
                "paths-ignore" => cfg.paths_ignore = self.string_list(v, &what),
                "types" => cfg.types = self.string_list(v, &what),
                "workflows" => cfg.workflows = self.string_list(v, &what),
                "inputs" => cfg.inputs = self.inputs(event, v),
                "outputs" => {
                    if let Some(outs) = self.expect_map(v, &what) {
                        for (name, o) in outs {
                            if let Some(oe) = self.expect_map(o, "an output") {
                                self.check_keys(
                                    oe,
                                    &["description", "value"],
                                    "a `workflow_call` output",
                                );
                                match o.get("value") {
                                    Some(val) => {
                                        cfg.outputs.insert(
                                            name.as_str().unwrap_or_default().to_owned(),
                                            val.clone(),
                                        );
                                    }
                                    None => self
                                        .error("a `workflow_call` output needs a `value`", o.span),
                                }
                            }
                        }
                    }
                }
                "secrets" => {
                    if let Some(secrets) = self.expect_map(v, &what) {
                        for (name, s) in secrets {
                            let required = s
                                .get("required")
                                .and_then(|r| match r.scalar() {
                                    Some(Scalar::Bool(b)) => Some(b),
                                    _ => None,
                                })
                                .unwrap_or(false);
                            cfg.secrets
                                .insert(name.as_str().unwrap_or_default().to_owned(), required);
                        }
                    }
                }
                _ => {}
            }
        }
        if cfg.branches.is_some() && cfg.branches_ignore.is_some() {
            self.error(
                format!("`{event}` cannot use both `branches` and `branches-ignore`"),
                node.span,
            );
        }
        if cfg.tags.is_some() && cfg.tags_ignore.is_some() {
            self.error(
                format!("`{event}` cannot use both `tags` and `tags-ignore`"),
                node.span,
            );
        }
        if cfg.paths.is_some() && cfg.paths_ignore.is_some() {
            self.error(
                format!("`{event}` cannot use both `paths` and `paths-ignore`"),
                node.span,
            );
        }
        cfg
    }

    fn inputs(&mut self, event: &str, node: &Node) -> IndexMap<String, Input> {
        let mut out = IndexMap::new();
        let Some(entries) = self.expect_map(node, "`inputs`") else {
            return out;
        };
        for (k, v) in entries {
            let name = k.as_str().unwrap_or_default().to_owned();
            let Some(fields) = self.expect_map(v, &format!("input `{name}`")) else {
                continue;
            };
            self.check_keys(
                fields,
                &[
                    "description",
                    "required",
                    "default",
                    "type",
                    "options",
                    "deprecationMessage",
                ],
                &format!("input `{name}`"),
            );
            let mut input = Input {
                span: k.span,
                description: v
                    .get("description")
                    .and_then(|d| d.as_str())
                    .map(str::to_owned),
                required: false,
                kind: InputType::String,
                default: v.get("default").cloned(),
                options: Vec::new(),
            };
            if let Some(r) = v.get("required") {
                match r.scalar() {
                    Some(Scalar::Bool(b)) => input.required = b,
                    _ => self.error("`required` must be a boolean", r.span),
                }
            }
            if let Some(t) = v.get("type") {
                let types: &[&str] = if event == "workflow_call" {
                    &["string", "boolean", "number"]
                } else {
                    &["string", "boolean", "number", "choice", "environment"]
                };
                match t.as_str() {
                    Some("string") => input.kind = InputType::String,
                    Some("boolean") => input.kind = InputType::Boolean,
                    Some("number") => input.kind = InputType::Number,
                    Some("choice") if event != "workflow_call" => input.kind = InputType::Choice,
                    Some("environment") if event != "workflow_call" => {
                        input.kind = InputType::Environment
                    }
                    other => self.diags.push(
                        Diagnostic::error(
                            format!("invalid input type `{}`", other.unwrap_or_default()),
                            t.span,
                        )
                        .with_help(format!("expected one of: {}", types.join(", "))),
                    ),
                }
            } else if event == "workflow_call" {
                self.error(
                    format!("input `{name}` of `workflow_call` needs a `type`"),
                    k.span,
                );
            }
            if let Some(opts) = v.get("options")
                && let Some(list) = self.string_list(opts, "`options`")
            {
                input.options = list.into_iter().map(|s| s.value).collect();
            }
            if input.kind == InputType::Choice && input.options.is_empty() {
                self.error(format!("choice input `{name}` needs `options`"), k.span);
            }
            if input.kind == InputType::Choice
                && let Some(d) = &input.default
                && let Some(ds) = d.as_str()
                && !input.options.iter().any(|o| o == ds)
            {
                self.error(
                    format!("default `{ds}` of input `{name}` is not one of its options"),
                    d.span,
                );
            }
            if let Some(d) = &input.default {
                let ok = match (input.kind, d.scalar()) {
                    (InputType::Boolean, Some(Scalar::Bool(_)))
                    | (InputType::Number, Some(Scalar::Number(_))) => true,
                    (InputType::Boolean | InputType::Number, Some(Scalar::String(s))) => {
                        s.contains("${{")
                    }
                    (InputType::Boolean | InputType::Number, _) => false,
                    _ => true,
                };
                if !ok {
                    self.error(
                        format!(
                            "default of input `{name}` must be a {}, found {}",
                            input.kind.name(),
                            d.describe()
                        ),
                        d.span,
                    );
                }
            }
            out.insert(name, input);
        }
        out
    }

    fn jobs(&mut self, node: &Node) -> IndexMap<String, Job> {
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
                            job.steps = items.iter().filter_map(|s| self.step(s)).collect();
                        }
                        None => self.error(
                            format!("`steps` must be a sequence, found {}", v.describe()),
                            v.span,
                        ),
                    }
                }
                "uses" => job.uses = self.string(v, "`uses`"),
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

/// Job and step ids: a letter or `_`, then letters, digits, `-` or `_`.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
