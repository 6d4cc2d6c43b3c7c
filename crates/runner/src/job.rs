//! A leased job in this process: its source, where it runs ([`Site`]), its spec and run
//! environment from the lease, and running it with its artifacts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Conclusion, JobLabel, JobReport, JobSpec, Line, RunEnv, Sink, Source};
use expr::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::protocol::Lease;
use crate::{Client, RunnerConfig, RunnerError, Workflows, check, io, retry, set_mode, transfer};

/// The job's source: the commit as a tar, downloaded once per commit.
pub(crate) async fn source(
    client: &Client,
    config: &RunnerConfig,
    lease: &Lease,
) -> Result<PathBuf, RunnerError> {
    let dir = config.work_dir.join("sources");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // Every repository's source: the runner's alone (a job gets its own, linked into its
    // slot).
    set_mode(&dir, 0o700)?;
    let tar = dir.join(format!(
        "{}-{}.tar",
        engine::files::safe_name(&lease.spec.repo),
        engine::files::safe_name(&lease.spec.sha)
    ));
    if tar.exists() {
        return Ok(tar);
    }
    let never = CancellationToken::new();
    let bytes = retry(&never, || async {
        let resp = client
            .job_request(reqwest::Method::GET, lease, "/source")
            .send()
            .await?;
        Ok(check(resp, Some(lease.job)).await?.bytes().await?)
    })
    .await?;
    let tmp = dir.join(format!(".{}.{}", lease.job, std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &tar).map_err(io(&tar))?;
    Ok(tar)
}

/// Where a job runs on this machine and what it starts from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Site {
    /// The slot's directory: `job/` (workspace, temp, home, the event), `artifacts/`.
    pub slot: PathBuf,
    /// The environment every step starts from.
    pub base_env: Vec<(String, String)>,
    pub action_dirs: Vec<PathBuf>,
    /// Caches that outlive the job (`setup-python`'s pip cache, the tool cache).
    pub cache_dir: PathBuf,
    /// The actions the engine is given (not sent to a job's process: it has its own).
    #[serde(skip)]
    pub actions: engine::Actions,
    /// `runs-on` labels whose jobs run in a container of an image.
    #[serde(default)]
    pub images: Vec<(String, String)>,
    /// The runner's action cache, read only: the job's remote actions were fetched into it.
    #[serde(default)]
    pub action_source: Option<engine::ActionSource>,
    /// The runner takes any job (the label `*`, as a server's own runner): a job for another
    /// operating system fails here, saying so, instead of running on this one.
    #[serde(default)]
    pub this_machine_only: bool,
    /// The job's `DOCKER_HOST`: a confined job's broker (`None`: the process's own).
    #[serde(default)]
    pub docker_host: Option<String>,
}

/// Where a job's event is (`GITHUB_EVENT_PATH`), in its directory `job_dir`.
fn event_file(job_dir: &Path) -> PathBuf {
    job_dir.join("event.json")
}

/// Writes the job's event ([`event_file`]). The runner writes it before the job starts (in
/// a directory a confined job may not write), from the lease's `github` context: a job's
/// process is handed the lease without it ([`confined`](crate::confined)).
pub(crate) fn write_event(job_dir: &Path, lease: &Lease) -> Result<(), RunnerError> {
    let event_path = event_file(job_dir);
    let event = lease
        .spec
        .github
        .get("event")
        .unwrap_or(&serde_json::Value::Null);
    std::fs::create_dir_all(job_dir).map_err(io(job_dir))?;
    engine::files::write_reusing(&event_path, &serde_json::to_vec(event).unwrap_or_default())
        .map_err(io(&event_path))
}

/// The run's context of a leased job: its `github` context (with the job's token), `vars`,
/// `inputs` and the secrets the lease carries, with the job's own token as `GITHUB_TOKEN`
/// (a secret, masked as one). A confined job's runner makes it and hands it to the job's
/// process serialised; the process's masker is made from its values as it reads it.
pub(crate) fn context_of(lease: &Lease) -> engine::RunContext {
    let spec = &lease.spec;
    let mut secrets = engine::Secrets::new();
    for (k, v) in &lease.secrets.secrets {
        secrets.insert(k.clone(), &Value::from_json(v.clone()).to_expr_string());
    }
    if !lease.token.is_empty() {
        secrets.insert("GITHUB_TOKEN", &lease.token);
    }
    for (env, m) in &lease.secrets.environment_secrets {
        for (k, v) in m {
            secrets.insert_for(
                env,
                k.clone(),
                &Value::from_json(v.clone()).to_expr_string(),
            );
        }
    }
    let mut github = map_of(&spec.github);
    if !lease.token.is_empty() {
        github.insert("token".into(), Value::from(lease.token.as_str()));
    }
    engine::RunContext {
        github,
        secrets,
        vars: map_of(&spec.vars),
        inputs: map_of(&spec.inputs),
    }
}

/// Everything to run the job: its spec, and the run's context with the host it runs on
/// here (the slot, the source, the caches).
fn prepare(
    site: &Site,
    client: &Client,
    workflows: &Workflows,
    lease: &Arc<Lease>,
    tar: PathBuf,
    context: engine::RunContext,
) -> Result<(JobSpec, RunEnv), RunnerError> {
    let spec = &lease.spec;
    let wf = workflows
        .known(&tar, &spec.file, spec.workflow_text.as_deref())?
        .workflow;
    let job_dir = site.slot.join("job");
    // Written by the runner as it readied the job.
    let event_path = event_file(&job_dir);
    let env = RunEnv {
        context,
        host: engine::Host {
            run_dir: site.slot.clone(),
            job_dir: Some(job_dir),
            source: Source::Archive(tar),
            base_env: site.base_env.clone(),
            action_dirs: site.action_dirs.clone(),
            cache_dir: site.cache_dir.clone(),
            // A job for another operating system fails on a runner that takes any job.
            this_machine_only: site.this_machine_only,
            images: site.images.clone(),
            action_source: site.action_source.clone(),
            docker_host: site.docker_host.clone(),
            // `actions/cache` entries are the server's, shared by every runner.
            cache_store: Some(Arc::new(transfer::RemoteCache {
                client: client.clone(),
                lease: lease.clone(),
            })),
            event_path,
            actions: site.actions.clone(),
        },
    };
    let job = JobSpec {
        workflow: wf,
        file: spec.file.clone(),
        text: spec.workflow_text.as_deref().map(Into::into),
        workflow_name: spec.workflow_name.clone(),
        job_id: spec.job_id.clone(),
        key: spec.key.clone(),
        display: spec.display.clone(),
        matrix: spec.matrix.as_ref().map(map_of),
        strategy: map_of(&spec.strategy),
        needs: map_of(&spec.needs),
    };
    Ok((job, env))
}

fn map_of(v: &serde_json::Value) -> Map {
    match Value::from_json(v.clone()) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A leased job to run here: the lease, the run's context ([`context_of`] the lease) and
/// the commit's source as a tar.
pub(crate) struct Leased {
    pub(crate) lease: Arc<Lease>,
    pub(crate) context: engine::RunContext,
    pub(crate) tar: PathBuf,
}

/// Runs a job here, in this process: its artifacts downloaded, its steps run, its new
/// artifacts uploaded. The report, and whether the upload went well. (The job's own
/// process runs this too, confined: [`confined`](crate::confined).)
pub(crate) async fn run_here(
    client: &Client,
    workflows: &Workflows,
    site: &Site,
    job: Leased,
    sink: &dyn Sink,
    cancel: &CancellationToken,
) -> (JobReport, Result<(), RunnerError>) {
    let Leased {
        lease,
        context,
        tar,
    } = job;
    let lease = &lease;
    let artifacts = site.slot.join("artifacts");
    let prepared = async {
        let had = transfer::download_artifacts(client, lease, &artifacts).await?;
        let (spec, env) = prepare(site, client, workflows, lease, tar, context)?;
        Ok::<_, RunnerError>((spec, env, had))
    }
    .await;
    let (report, had) = match prepared {
        Ok((spec, env, had)) => (engine::run_job(&spec, &env, sink, cancel).await, had),
        Err(e) => {
            sink.line(
                &label_of(lease),
                Line::Annotation {
                    level: engine::Level::Error,
                    message: format!("the runner could not start the job: {e}"),
                    file: None,
                    line: None,
                },
            );
            (failed_report(lease), Vec::new())
        }
    };
    let uploaded = transfer::upload_artifacts(client, lease, &artifacts, &had).await;
    (report, uploaded)
}

pub(crate) fn label_of(lease: &Lease) -> JobLabel {
    JobLabel {
        workflow: lease.spec.workflow_name.clone(),
        job_id: lease.spec.job_id.clone(),
        display: lease.spec.display.clone(),
    }
}

pub(crate) fn failed_report(lease: &Lease) -> JobReport {
    JobReport::without_steps(
        &lease.spec.job_id,
        &lease.spec.display,
        lease.spec.matrix.clone(),
        Conclusion::Failure,
    )
}
