//! `on:`: the events that trigger a workflow, their filters, and the inputs, outputs and
//! secrets of `workflow_dispatch` and `workflow_call`.

use indexmap::IndexMap;

use super::{Parser, suggest};
use crate::diag::Diagnostic;
use crate::model::*;
use crate::yaml::{Node, NodeKind, Scalar};

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
    "image_version",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "project",
    "project_card",
    "project_column",
    "public",
    "pull_request",
    "pull_request_comment",
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

impl Parser {
    pub(super) fn triggers(&mut self, node: &Node) -> Triggers {
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
                self.check_keys(entries, &["cron", "timezone"], "a `schedule` entry");
                self.ignored_keys(
                    entries,
                    &["timezone"],
                    "a `schedule` entry",
                    "pipewright reads every `cron` in UTC",
                );
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
            "merge_group" => vec!["types", "branches", "branches-ignore"],
            _ => vec!["types"],
        };
        let what = format!("the `{event}` trigger");
        if matches!(
            event,
            "push"
                | "pull_request"
                | "pull_request_target"
                | "workflow_dispatch"
                | "workflow_call"
                | "workflow_run"
                | "merge_group"
        ) {
            self.check_keys(entries, &allowed, &what);
        } else {
            // The other events have no filters of their own, and GitHub ignores what is
            // written under them (`create: {branches: [main]}`): a warning.
            self.check_keys_leniently(entries, &allowed, &what);
        }
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
}
