//! Jobs that call a reusable workflow (`uses: ./.github/workflows/x.yml`): its jobs run as a
//! nested graph with the inputs and secrets the caller passes.

use std::sync::Arc;

use expr::{Map, Status, Value};
use workflow::Job;

use crate::error::JobError;
use crate::graph::Done;
use crate::job::obj;
use crate::report::{Conclusion, JobReport};
use crate::run::{Planned, Scope, base_contexts, read_source, run_workflow_boxed};

/// A job that calls a reusable workflow (`uses: ./.github/workflows/x.yml`): its jobs run as
/// a nested graph, with the inputs and secrets the caller passes, and its `workflow_call`
/// outputs become the calling job's outputs.
pub(crate) async fn call_workflow(
    uses: &str,
    id: &str,
    job: &Job,
    ectx: &expr::Context<'_>,
    scope: Scope,
) -> Result<(Done, Vec<JobReport>), JobError> {
    let bad = |m: String| JobError::invalid(format!("calling `{uses}`"), m);
    let (rel, src, remote_text) = match uses.strip_prefix("./") {
        Some(rel) => {
            let rel = rel.split('@').next().unwrap_or(rel).to_owned();
            let src = read_source(&scope.env.host.source, &rel)?;
            (rel, src, None)
        }
        None => {
            let (rel, src) = remote(uses, &scope).await?;
            let text: Arc<str> = src.as_str().into();
            (rel, src, Some(text))
        }
    };
    let rel = rel.as_str();
    let parsed = workflow::parse(&src);
    if let Some(d) = parsed.diagnostics.iter().find(|d| d.is_error()) {
        return Err(bad(format!(
            "{rel}:{}:{}: {}",
            d.span.start.line, d.span.start.col, d.message
        )));
    }
    let called = Arc::new(
        parsed
            .workflow
            .ok_or_else(|| bad(format!("{rel} is not a workflow")))?,
    );
    let Some(trigger) = called.on.events.get("workflow_call") else {
        return Err(bad(format!(
            "{rel} has no `on.workflow_call`, so it cannot be called"
        )));
    };
    // Inputs: the caller's `with`, typed by the called workflow, defaults filled in.
    let with = match &job.with {
        Some(w) => {
            match workflow::eval::evaluate(w, ectx).map_err(|e| JobError::expr("`with`", e))? {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        }
        None => Map::new(),
    };
    let mut inputs = Map::new();
    for (name, def) in &trigger.inputs {
        let v = match expr::map_get(&with, name) {
            Some(v) => v.clone(),
            None => match &def.default {
                Some(d) => workflow::eval::evaluate(d, ectx)
                    .map_err(|e| JobError::expr(format!("default of input `{name}`"), e))?,
                None if def.required => return Err(bad(format!("input `{name}` is required"))),
                None => match def.kind {
                    workflow::InputType::Boolean => Value::Bool(false),
                    workflow::InputType::Number => Value::Number(0.0),
                    _ => Value::String(String::new()),
                },
            },
        };
        let v = match (def.kind, v) {
            (workflow::InputType::Boolean, v @ Value::Bool(_)) => v,
            (workflow::InputType::Number, v @ Value::Number(_)) => v,
            (workflow::InputType::String, Value::String(s)) => Value::String(s),
            (workflow::InputType::String, v) => Value::String(v.to_expr_string()),
            (kind, v) => {
                return Err(bad(format!(
                    "input `{name}` must be a {}, got `{}`",
                    kind.name(),
                    v.to_expr_string()
                )));
            }
        };
        inputs.insert(name.clone(), v);
    }
    for k in with.keys() {
        if !trigger.inputs.keys().any(|n| n.eq_ignore_ascii_case(k)) {
            return Err(bad(format!("{rel} has no input `{k}`")));
        }
    }
    // Secrets: `inherit`, or the ones passed by name.
    let mut secrets = Map::new();
    match &job.secrets {
        Some(n) if n.as_str() == Some("inherit") => {
            secrets = scope.env.context.secrets.run().clone()
        }
        Some(n) => {
            // `secrets:` of a calling job may read the `secrets` context.
            let mut c = ectx.contexts.clone();
            c.insert(
                "secrets".into(),
                Value::Object(scope.env.context.secrets.run().clone()),
            );
            let sctx = expr::Context {
                contexts: &c,
                status: ectx.status,
                host: None,
            };
            match workflow::eval::evaluate(n, &sctx).map_err(|e| JobError::expr("`secrets`", e))? {
                Value::Object(m) => {
                    for (k, v) in m {
                        secrets.insert(k, Value::String(v.to_expr_string()));
                    }
                }
                _ => return Err(bad("`secrets` must be `inherit` or a mapping".into())),
            }
        }
        None => {}
    }
    for (name, required) in &trigger.secrets {
        // An empty value (a caller's secret that does not exist) counts as not provided.
        if *required && expr::map_get(&secrets, name).is_none_or(|v| v.to_expr_string().is_empty())
        {
            return Err(bad(format!("secret `{name}` is required by {rel}")));
        }
    }
    if let Some(t) = expr::map_get(scope.env.context.secrets.run(), "GITHUB_TOKEN") {
        secrets
            .entry("GITHUB_TOKEN".to_owned())
            .or_insert_with(|| t.clone());
    }
    let mut env = (*scope.env).clone();
    env.context.inputs = inputs.clone();
    env.context.secrets = scope.env.context.secrets.with_run(secrets);
    let caller = match &scope.caller {
        Some(c) => format!("{c} / {id}"),
        None => id.to_owned(),
    };
    let inner = Scope {
        env: Arc::new(env),
        caller: Some(caller),
        ..scope.clone()
    };
    let planned = Planned {
        file: rel.to_owned(),
        workflow: called.clone(),
        text: remote_text,
    };
    let called_wf = called.clone();
    let report = run_workflow_boxed(planned, inner.clone()).await;
    // `jobs.<id>.result` / `.outputs` of the called workflow, for its outputs.
    let mut jobs = Map::new();
    for (jid, _) in &called_wf.jobs {
        let mine: Vec<&JobReport> = report
            .jobs
            .iter()
            .filter(|j| j.id.rsplit('/').next() == Some(jid.as_str()))
            .collect();
        let conclusions: Vec<Conclusion> = mine.iter().map(|j| j.conclusion).collect();
        let result = crate::graph::called_job_result(&conclusions);
        let mut outputs = Map::new();
        for j in &mine {
            for (k, v) in &j.outputs {
                outputs.insert(k.clone(), Value::from_json(v.clone()));
            }
        }
        jobs.insert(
            jid.clone(),
            obj([
                ("result", Value::from(result.as_str())),
                ("outputs", Value::Object(outputs)),
            ]),
        );
    }
    let mut c = base_contexts(&inner.env, &Map::new());
    c.insert("jobs".into(), Value::Object(jobs));
    let octx = expr::Context {
        contexts: &c,
        status: Status::Success,
        host: None,
    };
    let mut outputs = Map::new();
    for (name, node) in &trigger.outputs {
        let v = workflow::eval::evaluate_string(node, &octx)
            .map_err(|e| JobError::expr(format!("output `{name}`"), e))?;
        outputs.insert(name.clone(), Value::String(v));
    }
    Ok((
        Done {
            result: report.conclusion,
            outputs,
        },
        report.jobs,
    ))
}

/// A reusable workflow of another repository (`owner/repo/path@ref`), fetched as actions
/// are: its path and text.
async fn remote(uses: &str, scope: &Scope) -> Result<(String, String), JobError> {
    let bad = |m: String| JobError::invalid(format!("calling `{uses}`"), m);
    let Some(source) = scope.env.host.action_source.clone() else {
        return Err(bad(
            "a reusable workflow of another repository needs fetching, which is off here; call one of this repository (`./.github/workflows/...`)"
                .into(),
        ));
    };
    let (path, git_ref) = uses
        .split_once('@')
        .ok_or_else(|| bad(format!("`{uses}` has no `@ref`")))?;
    let mut parts = path.splitn(3, '/');
    let (owner, repo, file) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    if file.is_empty() || file.split('/').any(|c| c == "..") {
        return Err(bad(format!(
            "`{uses}` is not OWNER/REPO/.github/workflows/FILE@REF"
        )));
    }
    let git_ref = git_ref.to_owned();
    let (root, _) = tokio::task::spawn_blocking(move || {
        crate::actions::fetch::fetch(&source, &owner, &repo, &git_ref)
    })
    .await
    .map_err(|e| bad(e.to_string()))?
    .map_err(|e| bad(e.to_string()))?;
    let text = std::fs::read_to_string(root.join(&file))
        .map_err(|e| bad(format!("{file} of `{uses}`: {e}")))?;
    // Named with its ref: two refs of one workflow in a run are two files.
    Ok((uses.to_owned(), text))
}
