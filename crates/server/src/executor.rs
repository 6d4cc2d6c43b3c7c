//! The orchestrator: takes queued runs from the store (woken at once when one is queued, no
//! polling delay) and walks each run's job graph with the engine, whose job instances go to
//! the runners through [`crate::dispatch`]; records how each run ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::{Planned, RunEnv, Source};
use expr::{Map, Value};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::blocking::{Blocked, blocking, store_now};
use crate::config::Config;
use crate::logs::{Event, StoreSink};
use crate::trigger;

/// Why a run could not be run; stored as the run's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error("repository `{0}` is not configured")]
    NoRepo(String),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("{workflow} is not in commit {sha}")]
    NoWorkflow { workflow: String, sha: String },
    #[error("the workflow is invalid")]
    Invalid,
    #[error("the run's event cannot be read")]
    Event,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("a task of the runner stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `github.actor` of a run whose event names no one (a push to a local repository).
pub(crate) const NO_ACTOR: &str = "pipewright";

pub(crate) struct Executor {
    pub(crate) store: Arc<store::Store>,
    pub(crate) config: Arc<Config>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sealer: Arc<crate::secrets::Sealer>,
    /// Jobs queued / completed: shared with the runner API.
    pub(crate) queued: Arc<Notify>,
    pub(crate) done: Arc<crate::dispatch::Waiters>,
    /// This server's id: the runs it orchestrates are marked with it.
    pub(crate) me: String,
    /// How long a run stays this server's without a renewal.
    pub(crate) lease_ms: i64,
    /// Told when an alert was queued (the sender sends it at once).
    pub(crate) alerts: Arc<Notify>,
}

impl Executor {
    /// Orchestrates runs until shutdown: every queued run is taken at once (its jobs then
    /// wait for runners in the store), those this server made and took as it made them
    /// (`handed`, kept in the store all the same) as they come, and the runs a stopped
    /// server was orchestrating are taken up again. On shutdown the orchestrations simply
    /// stop: their state is stored.
    pub(crate) async fn run(self: Arc<Self>, mut handed: mpsc::UnboundedReceiver<store::Run>) {
        let mut running = tokio::task::JoinSet::new();
        let orchestrate = |running: &mut tokio::task::JoinSet<()>, run: store::Run| {
            let me = self.clone();
            running.spawn(async move { me.execute(run).await });
        };
        // The runs this server had before a restart, and those of stopped servers.
        for run in self.take_over(true).await {
            tracing::info!(run = run.id.get(), "taking up a run interrupted by a stop");
            orchestrate(&mut running, run);
        }
        let period = std::time::Duration::from_millis(
            u64::try_from(self.lease_ms / 3).unwrap_or(10_000).max(100),
        );
        let mut renew = tokio::time::interval(period);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'look: loop {
            // Register interest before looking, so a run queued meanwhile is not missed.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shutdown.is_cancelled() {
                break;
            }
            while running.try_join_next().is_some() {}
            let (store, me, lease) = (self.store.clone(), self.me.clone(), self.lease_ms);
            match store_now(&self.store, move || store.take_queued(&me, lease)).await {
                Ok(Some(run)) => {
                    orchestrate(&mut running, run);
                    continue;
                }
                Err(Blocked::Call(e)) => tracing::error!("taking a queued run: {e}"),
                _ => {}
            }
            // Until there may be a queued run to look for; a run handed over meanwhile
            // starts at once, without a look (the interest stays registered).
            loop {
                tokio::select! {
                    () = &mut notified => break,
                    Some(run) = handed.recv() => orchestrate(&mut running, run),
                    Some(_) = running.join_next(), if !running.is_empty() => break,
                    _ = renew.tick() => {
                        // Keep this server's runs, and take up those of servers that stopped.
                        let (store, me, lease) = (self.store.clone(), self.me.clone(), self.lease_ms);
                        if let Err(Blocked::Call(e)) = blocking(move || store.renew_orchestration(&me, lease)).await {
                            tracing::error!("renewing the runs' orchestration: {e}");
                        }
                        for run in self.take_over(false).await {
                            tracing::warn!(run = run.id.get(), "taking up a run whose server stopped");
                            orchestrate(&mut running, run);
                        }
                        break;
                    }
                    () = self.shutdown.cancelled() => break 'look,
                }
            }
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
    }

    /// Running runs this server takes up (see [`store::Store::take_over_runs`]).
    async fn take_over(&self, mine: bool) -> Vec<store::Run> {
        let (store, me, lease) = (self.store.clone(), self.me.clone(), self.lease_ms);
        match blocking(move || store.take_over_runs(&me, lease, mine)).await {
            Ok(runs) => runs,
            Err(Blocked::Call(e)) => {
                tracing::error!("taking up running runs: {e}");
                Vec::new()
            }
            Err(Blocked::Task(_)) => Vec::new(),
        }
    }

    async fn execute(&self, run: store::Run) {
        let id = run.id;
        tracing::info!("orchestrating run {id} ({})", run.repo);
        let forge = self.config.repo(&run.repo).and_then(|r| r.forge.clone());
        if let Some(f) = &forge {
            crate::status::post(f, &self.config.public_url, &run, "pending", "running").await;
        }
        let result = self.execute_inner(&run).await;
        let (conclusion, reason, jobs) = match result {
            Ok((c, jobs)) => (c, None, jobs),
            Err(reason) => (
                store::Conclusion::Failure,
                Some(reason.to_string()),
                Vec::new(),
            ),
        };
        // Stored first, then announced: a follower told `done` finds the run completed. The
        // jobs that never started get their rows, and the alerts of its end are queued, in
        // the same transaction.
        let (store, config, ended) = (self.store.clone(), self.config.clone(), run.clone());
        let finished = store_now(&self.store, move || {
            let alerts = crate::notify::RunAlerts::prepare(&config, &store, &ended);
            store.finish_run_alerting(id, conclusion, reason.as_deref(), &jobs, |run, before| {
                alerts.map(|a| a.make(run, before)).unwrap_or_default()
            })
        })
        .await;
        match finished {
            Ok(()) => {
                tracing::debug!(run = id.get(), %conclusion, "run's end stored");
                self.alerts.notify_one();
            }
            Err(Blocked::Call(e)) => tracing::error!("recording the end of run {id}: {e}"),
            Err(Blocked::Task(_)) => {}
        }
        if let Some(f) = &forge {
            let description = format!("pipewright: {conclusion}");
            let state = crate::status::state_of(conclusion);
            crate::status::post(f, &self.config.public_url, &run, state, &description).await;
        }
        let _ = self.events.send(Event::RunDone {
            run: id,
            conclusion,
        });
    }

    fn run_dir(&self, id: store::RunId) -> PathBuf {
        self.config.data_dir.join("work").join(format!("run-{id}"))
    }

    /// Runs the workflow of `run`; the conclusion and every job of the run as it ended (those
    /// that never started have no row yet), or why it could not run.
    async fn execute_inner(
        &self,
        run: &store::Run,
    ) -> Result<(store::Conclusion, Vec<store::NotRun>), ExecError> {
        let repo = self
            .config
            .repo(&run.repo)
            .ok_or_else(|| ExecError::NoRepo(run.repo.clone()))?;
        // Unreadable, the event says nothing: whether the run is trusted in particular (a
        // run is a fork's unless it says otherwise), so it is not run.
        let event: trigger::Event =
            serde_json::from_str(&run.event_json).map_err(|_| ExecError::Event)?;
        // Kept with the run by its trigger; else one file of the commit (`git show`).
        let text = match &run.workflow_text {
            Some(t) => t.clone(),
            None => engine::read_source_file(
                &Source::Commit {
                    repo: repo.path.clone(),
                    sha: run.sha.clone(),
                },
                &run.workflow,
            )
            .map_err(|_| ExecError::NoWorkflow {
                workflow: run.workflow.clone(),
                sha: run.sha.clone(),
            })?,
        };
        let parsed = workflow::parse(&text);
        let invalid = parsed.has_errors();
        let wf = parsed
            .workflow
            .filter(|_| !invalid)
            .ok_or(ExecError::Invalid)?;
        let planned = Planned {
            file: run.workflow.clone(),
            workflow: Arc::new(wf),
            text: None,
        };
        // The orchestration needs no files: jobs run (and write their files) on runners.
        let run_dir = self.run_dir(run.id);
        let event_path = run_dir.join("event.json");
        let mut github = Map::new();
        let (ref_name, ref_type) = match run.git_ref.strip_prefix("refs/tags/") {
            Some(t) => (t.to_owned(), "tag"),
            None => (
                run.git_ref
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&run.git_ref)
                    .to_owned(),
                "branch",
            ),
        };
        let owner = run.repo.split('/').next().unwrap_or_default().to_owned();
        for (k, v) in [
            ("event_name", run.event.clone()),
            ("ref", run.git_ref.clone()),
            ("ref_name", ref_name),
            ("ref_type", ref_type.to_owned()),
            ("sha", run.sha.clone()),
            ("repository", run.repo.clone()),
            ("repository_owner", owner),
            ("actor", NO_ACTOR.into()),
            ("triggering_actor", NO_ACTOR.into()),
            ("head_ref", event.head_ref.clone().unwrap_or_default()),
            ("base_ref", event.base_ref.clone().unwrap_or_default()),
            ("run_id", run.id.to_string()),
            ("run_number", run.id.to_string()),
            ("run_attempt", run.attempt.to_string()),
            ("retention_days", "90".into()),
            ("server_url", self.config.public_url.clone()),
            ("api_url", format!("{}/api/v1", self.config.public_url)),
            ("graphql_url", String::new()),
            ("token", String::new()),
            ("workflow", planned.name()),
            (
                "workflow_ref",
                format!("{}/{}@{}", run.repo, run.workflow, run.git_ref),
            ),
        ] {
            github.insert(k.to_owned(), Value::String(v));
        }
        let mut payload = Value::from_json(event.payload.clone());
        let inputs: Map = event
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_json(v.clone())))
            .collect();
        if !inputs.is_empty() {
            if let Value::Object(m) = &mut payload {
                m.insert("inputs".into(), Value::Object(inputs.clone()));
            } else {
                let mut m = Map::new();
                m.insert("inputs".into(), Value::Object(inputs.clone()));
                payload = Value::Object(m);
            }
        }
        github.insert("event".into(), payload);
        // Secrets: global, then the repository's; environment ones apart. None for forks.
        let mut secrets = engine::Secrets::new();
        if !event.fork {
            let store = self.store.clone();
            let repo_name = run.repo.clone();
            let rows = store_now(&self.store, move || {
                Ok::<_, ExecError>(store.secrets_for(&repo_name)?)
            })
            .await
            .map_err(Blocked::flatten)?;
            for secret in rows {
                let value = self.sealer.open(
                    &secret.repo,
                    &secret.environment,
                    &secret.name,
                    &secret.sealed,
                )?;
                let store::SealedSecret {
                    environment, name, ..
                } = secret;
                if environment.is_empty() {
                    secrets.insert(name, &value);
                } else {
                    secrets.insert_for(&environment, name, &value);
                }
            }
        }
        if !secrets.run().contains_key("GITHUB_TOKEN") {
            secrets.insert("GITHUB_TOKEN", "");
        }
        let env = RunEnv {
            context: engine::RunContext {
                github,
                secrets,
                vars: Map::new(),
                inputs,
            },
            host: engine::Host {
                run_dir,
                job_dir: None,
                source: Source::Commit {
                    repo: repo.path.clone(),
                    sha: run.sha.clone(),
                },
                base_env: runner::job_env(),
                action_dirs: vec![self.config.data_dir.join("actions")],
                this_machine_only: false,
                images: Vec::new(),
                // Reusable workflows of other repositories, fetched here (the server is the
                // trusted side) into the runner's cache; their jobs get the text with the lease.
                docker_host: None,
                action_source: Some(engine::ActionSource::from_env(
                    self.config.data_dir.join("work").join("actions-cache"),
                )),
                cache_dir: self
                    .config
                    .data_dir
                    .join("cache")
                    .join(engine::files::safe_name(&run.repo)),
                // Jobs run on runners, which keep their caches in the server's store.
                cache_store: None,
                event_path,
                // The server walks the graph; its runners run the steps, with their actions.
                actions: engine::Actions::default(),
            },
        };
        let sink = Arc::new(StoreSink {
            run: run.id,
            tx: self.events.clone(),
        });
        let cancel = CancellationToken::new();
        // Cancellation requests arrive through the store (any server process may take them).
        let watcher = {
            let (store, cancel, id) = (self.store.clone(), cancel.clone(), run.id);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let s = store.clone();
                    if let Ok(r) = blocking(move || s.run(id)).await
                        && r.cancel_requested
                    {
                        cancel.cancel();
                        return;
                    }
                }
            })
        };
        // Every job instance goes to the runners through the store; how many run at once is
        // up to them.
        // `concurrency` groups hold across all the runs of a repository, whichever server
        // orchestrates them: they live in the store.
        let groups = crate::groups::StoreGroups {
            store: self.store.clone(),
            scope: run.repo.clone(),
            run: run.id,
            server: self.me.clone(),
            shutdown: self.shutdown.clone(),
        };
        let options = engine::Options {
            parallel: 1 << 20,
            only_job: None,
            groups: Some(Arc::new(groups)),
        };
        let dispatcher = crate::dispatch::Dispatcher {
            store: self.store.clone(),
            sealer: self.sealer.clone(),
            queued: self.queued.clone(),
            done: self.done.clone(),
            run: run.id,
            repo: run.repo.clone(),
            sha: run.sha.clone(),
            keep_from: run.rerun_of.filter(|_| run.rerun_failed),
            rollback: event.rollback.clone(),
            trusted: !event.fork,
            config: self.config.clone(),
            git_ref: run.git_ref.clone(),
            alerts: self.alerts.clone(),
        };
        let report = engine::run_with(
            vec![(planned, Arc::new(env))],
            sink,
            cancel.clone(),
            options,
            Arc::new(dispatcher),
        )
        .await;
        watcher.abort();
        // Jobs that never started (skipped, cancelled before starting) get rows too, as the
        // run ends.
        let jobs: Vec<store::NotRun> = report
            .workflows
            .iter()
            .flat_map(|w| &w.jobs)
            .map(|j| {
                (
                    j.name.clone(),
                    j.id.clone(),
                    crate::conclusion::to_store(j.conclusion),
                )
            })
            .collect();
        if cancel.is_cancelled() {
            return Ok((store::Conclusion::Cancelled, jobs));
        }
        Ok((crate::conclusion::to_store(report.conclusion), jobs))
    }
}
