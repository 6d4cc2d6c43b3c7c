//! Jobs in a confined process of their own: the runner (which holds its credential and the
//! job's lease) starts `pipewright job-exec` for each job; that process confines itself
//! (another user, Landlock, no new privileges: [`engine::confine`]) before it reads a byte of
//! the job, then runs the job with the engine, speaking to the server with the job's own
//! token only (its artifacts and caches). It hands the runner its log lines and its report as
//! JSON lines on its standard output; the runner sends them on, with the heartbeats and the
//! report that need its credential.
//!
//! ```text
//! runner ──stdin: JobExec (lease without its lease token, secrets, where)──▶ job-exec
//! runner ◀─stdout: {"line": ...} ... {"done": {report, upload error}}─────── job-exec
//! runner ──SIGTERM: cancel the job──▶ job-exec      (SIGHUP when the runner dies: the
//!                                                    kernel's parent-death signal)
//! ```
//!
//! The process is a child subreaper: whatever its steps leave running, detached or not, is
//! killed when the job ends or when the runner dies. Its pid is recorded in the slot
//! (`.child`), so a runner restarted after a crash ends a job process that outlived it
//! before the job is given to anyone again ([`reap_slots`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use engine::confine::{Confinement, JobUser};
use engine::{JobReport, Line, Sink};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

mod ahead;
mod exec;
mod slot;

use ahead::Ahead;
pub use exec::job_exec;
pub use slot::reap_slots;
use slot::{CHILD_RECORD, start_time};
pub(crate) use slot::{owned_dir, ready_slot};

use crate::protocol::Lease;
use crate::{Client, RemoteSink, RunnerError, Site, io};

/// How this runner confines the jobs it runs.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The pipewright binary, whose `job-exec` command runs a job confined.
    pub exe: PathBuf,
    /// What a job's process is started from: [`engine::process::RUNNING_IMAGE`] when `exe`
    /// is this process's own program (as `pipewright serve` and `pipewright runner` give
    /// it), so that a binary replaced while the runner runs (an upgrade, a rebuild) gives
    /// its jobs the program that speaks this runner's protocol until it is restarted; else
    /// `exe`.
    program: PathBuf,
    /// Jobs run as this user (the runner must run as root).
    pub user: Option<JobUser>,
    /// Confine jobs with Landlock (where the kernel has it).
    pub landlock: bool,
    /// Paths no job may read besides the runner's work directory: the server's data
    /// directory and configuration, the repositories.
    pub hidden: Vec<PathBuf>,
    /// Paths every job of trusted origin may write besides its own directory (configured
    /// by the admin).
    pub writable: Vec<PathBuf>,
    /// The slots' cgroups, where this runner can make them (set when the runner starts).
    pub(crate) cgroups: Option<crate::cgroup::Slots>,
    /// Each slot's next job process, started ahead of its job.
    warm: Warm,
    /// Each slot readied for its next job as its last one ended.
    readied: Readied,
}

/// Slots readied for their next job ([`ready_slot`]) as soon as their last job and
/// everything it made are gone (its processes, its containers), on a thread of the
/// runtime's blocking pool while the job's report goes out: emptying what the job left and
/// making the directories again (some hundred microseconds of file system work, more on
/// ext4 after many deletions) is then on no job's path. A slot is readied at most once per
/// job: the next job takes the mark, and readies the slot itself if there is none or the
/// readying failed.
type Readied = Ahead<bool>;

/// Job processes started ahead of their jobs, one per slot that ran a job: the exec and
/// start of the binary (a few milliseconds, most of what confinement costs a short job)
/// happen while the slot is idle, not while a job waits. Such a process is in its slot's
/// cgroup and does nothing but wait for its job on its standard input; it ends when the
/// runner does (end of input), and is killed with the runner's handle on it.
///
/// A slot's next process is started on a thread of its own while the last job's report goes
/// out: spawning it (a vfork of the runner) and putting it into the slot's cgroup (the
/// kernel may wait for a grace period of RCU there, 7–25 ms on this machine) are then on no
/// job's path. A job that comes before it is ready waits for it. Both are done at the lowest
/// CPU priority until a job waits for them ([`ahead`]).
type Warm = Ahead<Option<tokio::process::Child>>;

/// The end of a job's process, which the job's report does not wait for: once the process
/// said it is done (its steps' processes were all killed and reaped by then, and its broker
/// serves nobody from then on), the report goes out while the process exits and the slot's
/// cgroup is emptied. Done (cancelled) when both are; what reuses the slot (its next job
/// process, its readying) waits for it. Done too when the task ending it is dropped (the
/// runner stopping: the process is killed with its handle).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ended(CancellationToken);

impl Ended {
    /// An end that is already over.
    pub(crate) fn over() -> Ended {
        let ended = Ended::default();
        ended.0.cancel();
        ended
    }
}

impl Isolation {
    /// An isolation with `job_user` looked up, and Landlock if asked for and the kernel
    /// enforces it. `hidden` should name what jobs must not read besides the runner's work
    /// directory (which the runner adds).
    pub fn new(
        exe: PathBuf,
        job_user: Option<&str>,
        landlock: bool,
        hidden: Vec<PathBuf>,
        writable: Vec<PathBuf>,
    ) -> Result<Isolation, engine::confine::ConfineError> {
        let user = job_user.map(JobUser::lookup).transpose()?;
        let me = nix::unistd::Uid::current();
        if let Some(u) = &user
            && !me.is_root()
            && me.as_raw() != u.uid
        {
            return Err(engine::confine::ConfineError::NotRoot {
                user: u.name.clone(),
                uid: me.as_raw(),
            });
        }
        let program = if engine::process::is_running_image(&exe) {
            PathBuf::from(engine::process::RUNNING_IMAGE)
        } else {
            exe.clone()
        };
        Ok(Isolation {
            exe,
            program,
            user,
            landlock: landlock && engine::confine::landlock_supported(),
            hidden,
            writable,
            cgroups: None,
            warm: Warm::default(),
            readied: Readied::default(),
        })
    }

    /// What a runner says of its jobs' confinement when it starts, and whether that is a
    /// warning.
    pub fn describe(&self) -> (String, bool) {
        let root = nix::unistd::Uid::current().is_root();
        let who = match &self.user {
            Some(u) => format!("as user `{}`", u.name),
            None if root => "as root".to_owned(),
            None => "as this runner's user".to_owned(),
        };
        let landlock = if self.landlock {
            "confined by Landlock"
        } else {
            "without Landlock"
        };
        let untrusted = match (self.user.is_some(), self.landlock) {
            (true, true) => "",
            (false, _) => {
                "; jobs of untrusted origin (pull requests from forks) are refused: set a job user"
            }
            (true, false) => {
                "; jobs of untrusted origin (pull requests from forks) are refused: this kernel has no Landlock"
            }
        };
        let cgroups = if self.cgroups.is_some() {
            ", each slot in a cgroup of its own"
        } else {
            ""
        };
        (
            format!("jobs run {who}, {landlock}{cgroups}{untrusted}"),
            !self.takes_untrusted(),
        )
    }

    /// Whether a job of untrusted origin (a fork's pull request) may run here: only when it
    /// runs as a user of its own (not the runner's, whose home, sockets and files Landlock
    /// alone would leave it) and under Landlock (which keeps it from other jobs of that
    /// user, their memory and their files).
    pub fn takes_untrusted(&self) -> bool {
        self.user.is_some() && self.landlock
    }

    /// Starts slot `slot`'s next job process, to wait for its job (on a thread of the
    /// runtime's blocking pool: see [`Warm`]), once its last one `ended` (the slot's cgroup
    /// is emptied then: the new process would go with it).
    pub(crate) fn prewarm(&self, slot: usize, ended: Ended) {
        let (exe, program) = (self.exe.clone(), self.program.clone());
        let (cgroups, ahead) = (self.cgroups.clone(), self.ahead());
        self.warm.start(slot, ended, move || {
            start_child(&exe, &program, cgroups.as_ref(), slot, ahead.as_deref())
                .map_err(|e| tracing::warn!("a job process for slot {slot}: {e}"))
                .ok()
        });
    }

    /// What a job's process is told as it starts, to make the rules every job of this
    /// runner gets while it waits for its job: the hidden paths (`None`: no Landlock).
    fn ahead(&self) -> Option<String> {
        self.landlock
            .then(|| serde_json::to_string(&self.hidden).ok())
            .flatten()
    }

    /// Readies slot `slot` (directory `dir`) for its next job once everything its last job
    /// made is gone: its containers (the caller removed them) and its processes (`ended`;
    /// see [`Readied`]).
    pub(crate) fn ready_ahead(&self, slot: usize, dir: &Path, ended: Ended) {
        let (dir, user, keep) = (dir.to_owned(), self.user.clone(), self.cgroups.is_some());
        self.readied.start(slot, ended, move || {
            let ready = ready_slot(&dir, user.as_ref(), keep).and_then(|()| {
                // Its first step's files too, the job user's (its temp dir was emptied).
                let temp = dir.join("job").join("temp");
                for made in engine::make_first_step_files(&temp).map_err(io(&temp))? {
                    if let Some(u) = &user {
                        u.own(&made).map_err(io(&made))?;
                    }
                }
                Ok(())
            });
            ready
                .map_err(|e| tracing::warn!("readying slot {slot} for its next job: {e}"))
                .is_ok()
        });
    }

    /// Readies slot `slot` (directory `dir`) for a job, unless it was readied as its last
    /// job ended.
    pub(crate) async fn ready(&self, slot: usize, dir: &Path) -> Result<(), RunnerError> {
        if self.readied.take(slot).await == Some(true) {
            return Ok(());
        }
        ready_slot(dir, self.user.as_ref(), self.cgroups.is_some())
    }
}

/// What the runner hands a job's process on its standard input.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JobExec {
    server: String,
    /// The lease, its lease token blanked (the job's process never holds it) and its
    /// secrets left out: they are in `context`.
    lease: Lease,
    /// The run's context, made by the runner from the lease (its secrets are masked by the
    /// process's masker as it reads them).
    context: engine::RunContext,
    site: Site,
    source: PathBuf,
    /// The text of the job's workflow file in the source.
    workflow: String,
    confinement: Confinement,
    /// The runner's pid: the process checks it is still its parent once confined.
    parent: i32,
}

/// What of a lease the job's process is handed: the lease without its lease token (the
/// runner's to keep), without its secrets and without its `github` context, and the run's
/// context made from it, which carries the secrets and the `github` context once (with the
/// event, which the runner has also written to the job's event file).
fn handed_over(lease: &Lease) -> (Lease, engine::RunContext) {
    let context = crate::context_of(lease);
    let mut job_lease = lease.clone();
    job_lease.lease = String::new();
    job_lease.secrets = crate::protocol::Secrets::default();
    job_lease.spec.github = serde_json::Value::Null;
    (job_lease, context)
}

/// How long a job's process may take to exit once it said it is done (or closed its
/// output) before it is killed: the slot it holds is no other job's until it has.
const EXIT_AFTER_DONE: Duration = Duration::from_secs(10);

/// What a job's process tells the runner, one JSON object per line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Message {
    Line(String),
    Done {
        report: Box<JobReport>,
        /// Why uploading the job's artifacts failed, if it did.
        upload_error: Option<String>,
    },
}

/// The longest message a job's process may send (a log line is cut at 64 KiB; JSON may
/// escape each byte of it into six).
const MAX_MESSAGE: usize = 512 * 1024;

/// What a job's process is started with: where, what, from which source and workflow text.
pub(crate) struct Launch<'a> {
    /// The slot's number (its cgroup).
    pub(crate) slot: usize,
    pub(crate) site: &'a Site,
    pub(crate) lease: &'a Lease,
    pub(crate) source: &'a Path,
    pub(crate) workflow: &'a str,
    /// Told the job process's pid once it is known (the Docker broker serves only it and
    /// its descendants).
    pub(crate) job_pid: Option<Arc<std::sync::atomic::AtomicI32>>,
}

/// Runs `job`'s lease in a confined process; its lines go to `sink`. The report, whether
/// its artifacts were uploaded, and the end of its process ([`Ended`]), which may still be
/// under way.
pub(crate) async fn run(
    isolation: &Isolation,
    client: &Client,
    job: Launch<'_>,
    sink: &RemoteSink,
    cancel: &CancellationToken,
) -> (JobReport, Result<(), RunnerError>, Ended) {
    let lease = job.lease;
    let label = crate::label_of(lease);
    let (ran, ended) = match run_child(isolation, client, &job, sink, cancel).await {
        Ok((done, ended)) => (Ok(done), ended),
        Err(e) => (Err(e), Ended::over()),
    };
    // The slot's next job process starts once this one ended, while its report goes out.
    isolation.prewarm(job.slot, ended.clone());
    match ran {
        Ok((report, uploaded)) => (report, uploaded, ended),
        Err(e) => {
            sink.line(
                &label,
                Line::Annotation {
                    level: engine::Level::Error,
                    message: format!("the runner could not run the job: {e}"),
                    file: None,
                    line: None,
                },
            );
            (crate::failed_report(lease), Ok(()), ended)
        }
    }
}

async fn run_child(
    isolation: &Isolation,
    client: &Client,
    job: &Launch<'_>,
    sink: &RemoteSink,
    cancel: &CancellationToken,
) -> Result<((JobReport, Result<(), RunnerError>), Ended), RunnerError> {
    let (site, lease) = (job.site, job.lease);
    let mut confinement = Confinement {
        user: isolation.user.clone(),
        landlock: isolation.landlock,
        hidden: isolation.hidden.clone(),
        // Its slot (the source, the event), the runner's copies of actions, and the
        // pipewright binary itself (`pipewright/deploy` sends it to the hosts as their
        // agent; it may lie beneath a hidden directory's parent, such as a shared /tmp).
        readable: std::iter::once(site.slot.clone())
            .chain(site.action_dirs.iter().cloned())
            .chain(site.action_source.iter().map(|s| s.cache.clone()))
            .chain(std::fs::canonicalize(&isolation.exe).ok())
            .collect(),
        writable: vec![site.slot.join("job"), site.slot.join("artifacts")],
    };
    // What the admin shares is for trusted runs only: a fork's job writes nothing a
    // branch's job reads.
    if lease.spec.trusted {
        confinement
            .writable
            .extend(isolation.writable.iter().cloned());
    }
    if !site.cache_dir.starts_with(site.slot.join("job")) {
        confinement.writable.push(site.cache_dir.clone());
    }
    let (job_lease, context) = handed_over(lease);
    let exec = JobExec {
        server: client.base.clone(),
        lease: job_lease,
        context,
        site: site.clone(),
        source: job.source.to_owned(),
        workflow: job.workflow.to_owned(),
        confinement,
        parent: i32::try_from(std::process::id()).unwrap_or(0),
    };
    let input = serde_json::to_vec(&exec).map_err(|e| RunnerError::Job(e.to_string()))?;
    // The slot's waiting process, if it is still alive.
    let waiting = isolation.warm.take(job.slot).await.flatten();
    let mut child = match waiting.and_then(|mut c| matches!(c.try_wait(), Ok(None)).then_some(c)) {
        Some(child) => child,
        None => start_child(
            &isolation.exe,
            &isolation.program,
            isolation.cgroups.as_ref(),
            job.slot,
            isolation.ahead().as_deref(),
        )?,
    };
    let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
    else {
        return Err(RunnerError::Job("the job's process has no pid".into()));
    };
    if let Some(cell) = &job.job_pid {
        cell.store(pid, std::sync::atomic::Ordering::SeqCst);
    }
    // Started by a lowered thread, it runs its job at the normal priority.
    ahead::raise_process(pid);
    // Told before the write: once written, the process may read, confine itself and say so
    // before this task runs again.
    tracing::debug!(job = lease.job, "handing to its process");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).await.map_err(io(&isolation.exe))?;
    }
    // Recorded while the process reads its job and confines itself, not before: the record
    // lets a runner started after a crash end the process, which ends by itself with this
    // one anyway (its parent-death signal, asked for as it confines itself). On a thread of
    // its own: the process just woken by the write above is run on this CPU (a pipe's
    // reader is woken where its writer runs), and would wait for this file to be made;
    // lowered, so that it never takes a CPU from that process.
    let record = site.slot.join(CHILD_RECORD);
    let (write, lowering) = ahead::lowered({
        let record = record.clone();
        move || match start_time(pid) {
            Some(t) => std::fs::write(&record, format!("{pid} {t}")).map_err(io(&record)),
            None => Ok(()),
        }
    });
    let recorded = tokio::task::spawn_blocking(write);
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| RunnerError::Job("the job process has no output".into()))?;
    // A line of the job's process is a message of at most MAX_MESSAGE bytes (its steps could
    // write to its output too: a longer line ends the job, it does not fill the memory).
    let mut lines = tokio_util::codec::FramedRead::new(
        stdout,
        tokio_util::codec::LinesCodec::new_with_max_length(MAX_MESSAGE),
    );
    let mut done = None;
    let mut asked_to_stop = false;
    let mut broken = None;
    loop {
        tokio::select! {
            line = futures_util::StreamExt::next(&mut lines) => match line {
                Some(Ok(l)) => match serde_json::from_str::<Message>(&l) {
                    Ok(Message::Line(text)) => sink.send(text),
                    // Its last word: its steps' processes are gone (it killed and reaped
                    // them before saying it), and it exits.
                    Ok(Message::Done { report, upload_error }) => {
                        done = Some((*report, upload_error));
                        break;
                    }
                    Err(e) => tracing::warn!(job = lease.job, "the job process said something else: {e}"),
                },
                Some(Err(e)) => {
                    broken = Some(e.to_string());
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    break;
                }
                None => break,
            },
            () = cancel.cancelled(), if !asked_to_stop => {
                asked_to_stop = true;
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }
    // Made before the process's end removes it. Not made, the job's report still stands:
    // the process ends with this runner anyway (its parent-death signal).
    lowering.raise();
    let made = recorded.await.map_err(|e| e.to_string());
    if let Err(e) = made.and_then(|m| m.map_err(|e| e.to_string())) {
        tracing::warn!(job = lease.job, "recording the job's process: {e}");
    }
    // Its broker serves nobody once it said it is done or is gone (its pid could be
    // another's).
    if let Some(cell) = &job.job_pid {
        cell.store(0, std::sync::atomic::Ordering::SeqCst);
    }
    // Whatever of the job is left (its process may have been killed by a step) goes once
    // the process ended.
    let ended = Ended::default();
    let end = end_of(
        child,
        EXIT_AFTER_DONE,
        isolation.cgroups.clone().map(|c| (c, job.slot)),
        record,
        ended.clone(),
    );
    match (done, broken) {
        (Some((report, upload_error)), None) => {
            // The report goes out while the process exits.
            tokio::spawn(end);
            let uploaded = upload_error.map_or(Ok(()), |e| Err(RunnerError::Job(e)));
            Ok(((report, uploaded), ended))
        }
        (_, Some(e)) => {
            let _ = end.await;
            Err(RunnerError::Job(format!(
                "the job's process broke the protocol: {e}"
            )))
        }
        (None, None) => {
            let status = end.await.map_err(io(&isolation.exe))?;
            Err(RunnerError::Job(format!(
                "the job's process ended without a report ({status})"
            )))
        }
    }
}

/// The end of a job's process that said it is done (or stopped talking): it exits, killed
/// if it has not within `limit`; then what is left in its slot's cgroup is killed and its
/// record removed, and `ended` is over (also if this is dropped half-way: the process is
/// killed with its handle).
fn end_of(
    mut child: tokio::process::Child,
    limit: Duration,
    cgroup: Option<(crate::cgroup::Slots, usize)>,
    record: PathBuf,
    ended: Ended,
) -> impl Future<Output = std::io::Result<std::process::ExitStatus>> + Send + 'static {
    // Taken now: dropped unpolled, the end is over too.
    let over = ended.0.drop_guard();
    async move {
        let _over = over;
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    pid = child.id(),
                    "a job's process did not exit after its report: killed"
                );
                let _ = child.start_kill();
                child.wait().await
            }
        };
        if let Some((cgroups, slot)) = cgroup {
            let _ = tokio::task::spawn_blocking(move || cgroups.empty(slot)).await;
        }
        let _ = std::fs::remove_file(&record);
        status
    }
}

/// Starts a job's process for slot `slot` from `program` (the binary `exe`, or this
/// process's own image: see [`Isolation`]), in the slot's cgroup before it reads its job (it
/// waits for its input): everything it starts stays there. `ahead`: the hidden paths of
/// every job, for the rules it makes while it waits ([`AHEAD_VAR`]).
fn start_child(
    exe: &Path,
    program: &Path,
    cgroups: Option<&crate::cgroup::Slots>,
    slot: usize,
    ahead: Option<&str>,
) -> Result<tokio::process::Child, RunnerError> {
    let child = tokio::process::Command::new(program)
        .arg0(exe)
        .arg("job-exec")
        .env_clear()
        // Its own log's filter, nothing else of this process's environment.
        .envs(std::env::var("PIPEWRIGHT_LOG").map(|v| ("PIPEWRIGHT_LOG", v)))
        .envs(ahead.map(|a| (AHEAD_VAR, a)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(io(exe))?;
    if let Some(cgroups) = cgroups
        && let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        && let Err(e) = cgroups.enter(slot, pid)
    {
        tracing::warn!("slot {slot}'s cgroup: {e}");
    }
    Ok(child)
}

/// The variable a job's process finds the hidden paths of its runner's jobs in (JSON), to
/// make the Landlock rules that depend on them alone while it waits for its job
/// ([`engine::confine::Ahead`]). The job's steps never see it: their environment is made
/// from the job's, not this process's.
const AHEAD_VAR: &str = "PIPEWRIGHT_CONFINE_AHEAD";

/// Reads JSON lines a job process wrote (for tests of this module).
#[cfg(test)]
fn messages(out: &[u8]) -> Vec<Message> {
    std::io::BufRead::lines(out)
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_process_gets_each_secret_once_in_the_context_and_never_the_lease_token() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "job": 7, "lease": "lease-t0ken-of-the-runner", "lease_ms": 30000, "attempt": 1,
            "log_seq": 0, "token": "j0b-t0ken",
            "spec": {
                "run_id": 3, "repo": "team/app", "sha": "ab", "file": ".github/workflows/ci.yml",
                "workflow_name": "ci", "job_id": "deploy", "key": "deploy", "display": "deploy",
                "matrix": null, "strategy": {}, "needs": {}, "github": {"ref": "refs/heads/main"},
                "vars": {"REGION": "eu"}, "inputs": {}, "labels": ["x"], "trusted": true,
                "environment": "production"
            },
            "secrets": {
                "secrets": {"API_KEY": "api-k3y-value"},
                "environment_secrets": {"production": {"SSH_KEY": "ssh-k3y-value"}}
            }
        }))
        .expect("a lease");
        let (job_lease, context) = handed_over(&lease);
        let sent = serde_json::to_string(&(&job_lease, &context)).expect("serialises");
        assert!(!sent.contains("lease-t0ken-of-the-runner"), "{sent}");
        // The `github` context once too: in the run's context.
        assert_eq!(sent.matches("refs/heads/main").count(), 1, "{sent}");
        for secret in ["api-k3y-value", "ssh-k3y-value"] {
            assert_eq!(sent.matches(secret).count(), 1, "{secret} in {sent}");
        }
        // What the job's process reads back masks the secrets and its own token.
        let (_, got): (Lease, engine::RunContext) =
            serde_json::from_str(&sent).expect("reads back");
        assert_eq!(
            got.secrets
                .masker()
                .mask("api-k3y-value ssh-k3y-value j0b-t0ken eu"),
            "*** *** *** eu"
        );
        assert_eq!(
            got.secrets
                .environment("production")
                .and_then(|m| m.get("SSH_KEY"))
                .map(expr::Value::to_expr_string)
                .as_deref(),
            Some("ssh-k3y-value")
        );
        assert_eq!(
            got.vars
                .get("REGION")
                .map(expr::Value::to_expr_string)
                .as_deref(),
            Some("eu")
        );
    }

    #[tokio::test]
    async fn what_reuses_a_slot_waits_for_the_end_of_its_last_job_s_process() {
        let ahead: Ahead<bool> = Ahead::default();
        let ended = Ended::default();
        let guard = ended.0.clone().drop_guard();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = done.clone();
        ahead.start(0, ended, move || {
            seen.load(std::sync::atomic::Ordering::SeqCst)
        });
        // The process exits, then its end is over.
        tokio::time::sleep(Duration::from_millis(50)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(guard);
        assert_eq!(
            ahead.take(0).await,
            Some(true),
            "the work ran before the end"
        );
        // An end that is over lets it start at once; nothing started gives nothing.
        ahead.start(1, Ended::over(), || true);
        assert_eq!(ahead.take(1).await, Some(true));
        assert_eq!(ahead.take(2).await, None);
    }

    #[tokio::test]
    async fn a_job_process_that_does_not_exit_after_its_report_is_killed() {
        let d = tempfile::tempdir().unwrap();
        let record = d.path().join(CHILD_RECORD);
        std::fs::write(&record, "1 1").unwrap();
        let child = tokio::process::Command::new("sleep")
            .arg("600")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let ended = Ended::default();
        let t0 = std::time::Instant::now();
        let status = end_of(
            child,
            Duration::from_millis(200),
            None,
            record.clone(),
            ended.clone(),
        )
        .await
        .unwrap();
        assert!(!status.success(), "killed: {status}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(ended.0.is_cancelled(), "the slot may be used again");
        assert!(!record.exists());
        // One that exits in time is waited for, not killed.
        let child = tokio::process::Command::new("true").spawn().unwrap();
        let ended = Ended::default();
        let status = end_of(child, Duration::from_secs(60), None, record, ended.clone())
            .await
            .unwrap();
        assert!(status.success());
        assert!(ended.0.is_cancelled());
    }

    #[test]
    fn messages_are_json_lines() {
        let out = b"{\"line\":\"hello\"}\nnot json\n{\"line\":\"two\"}\n";
        let m = messages(out);
        assert_eq!(m.len(), 2);
        assert!(matches!(&m[0], Message::Line(t) if t == "hello"));
    }

    #[test]
    fn a_slot_is_emptied_for_the_next_job() {
        let d = tempfile::tempdir().unwrap();
        let slot = d.path().join("0");
        ready_slot(&slot, None, true).unwrap();
        std::fs::write(slot.join("job/workspace/f"), "x").unwrap();
        std::fs::write(slot.join("job/home/.profile"), "x").unwrap();
        std::fs::write(slot.join("job/temp/step-1.sh"), "true").unwrap();
        std::fs::write(slot.join("job/temp/mine"), "x").unwrap();
        std::fs::write(slot.join("job/planted"), "x").unwrap();
        std::fs::create_dir_all(slot.join("artifacts/dist")).unwrap();
        ready_slot(&slot, None, true).unwrap();
        let names = |p: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(slot.join(p))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert!(names("job/workspace").is_empty());
        assert!(names("job/home").is_empty());
        assert!(names("artifacts").is_empty());
        assert!(
            names("job/temp").is_empty(),
            "the engine's own files go too: they are the job user's to change"
        );
        assert_eq!(names("job"), ["github_home", "home", "temp", "workspace"]);
        // A directory that is not a directory any more is made anew.
        std::fs::remove_dir(slot.join("job/home")).unwrap();
        std::fs::write(slot.join("job/home"), "x").unwrap();
        ready_slot(&slot, None, true).unwrap();
        assert!(slot.join("job/home").is_dir());
    }
}
