//! The Docker broker: how a confined job reaches the Docker engine. The job's user may not
//! open the engine's socket (whoever can is root on the machine); the runner, which may,
//! listens on a socket in the job's slot that only the job's user can open, checks each
//! request against [`policy`] and sends on only what the engine does for a job's
//! containers, on what this job made. Everything made through it is labelled with the slot
//! and removed when the job ends ([`Broker::finish`]), whatever the job did or did not
//! remove, and even when its process was killed.
//!
//! Every slot's job runs as the same user, so the socket's owner does not tell one job from
//! another: the broker answers only processes descending from its own job's process (the
//! peer's credentials, then its parents in `/proc`; a job process is a subreaper, so all its
//! steps' processes stay its descendants). Another slot's job, or a container that mounted
//! the slot, is refused.
//!
//! A container may mount only what the job's user cannot redirect: every directory on the
//! way is checked on the files ([`fixed`]), so a symbolic link the job made, or a directory
//! it could swap for one before the engine mounts it, is refused.

mod calls;
mod images;
mod policy;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use calls::{engine_call, engine_call_within, engine_get, engine_has_image};
pub(crate) use images::Pulls;
pub(crate) use policy::Rules;
use policy::{Bind, Makes, Owned, Payload, Refusal, Verdict};

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The most pulls a job may have under way at once.
const MAX_PULLS_AT_ONCE: usize = 8;

/// The most a request body the broker reads (a container's configuration) may hold.
const MAX_BODY: usize = 1 << 20;

/// The most of a refused request's body the broker reads before answering.
const MAX_DRAIN: usize = 16 << 20;

/// The most connections a job may hold open to its broker at once (the engine, the steps'
/// `docker`, the streams of `attach` and `exec`); more wait.
const MAX_CONNECTIONS: usize = 64;

/// A broker listening for one job.
pub(crate) struct Broker {
    socket: PathBuf,
    engine: PathBuf,
    /// The job process's pid, once started (0 before: nobody is served).
    job: Arc<AtomicI32>,
    task: tokio::task::JoinHandle<()>,
    /// Ends the job's connections (and the streams of its `attach` and `exec`) with the job.
    done: CancellationToken,
    /// Whether a request that makes something was sent on.
    made: Arc<AtomicBool>,
    /// Requests that make something sent on and not answered (a job that hung up on one).
    in_flight: Arc<AtomicUsize>,
    label: String,
    pulls: Pulls,
}

/// What a connection's requests are judged with.
struct Shared {
    rules: Rules,
    engine: PathBuf,
    owned: Mutex<Owned>,
    /// The job's user: it must not be able to change what a mount names.
    uid: u32,
    done: CancellationToken,
    made: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    /// How many connections the job may hold at once.
    connections: Arc<Semaphore>,
    /// How many upgraded streams it may hold at once.
    streams: Arc<Semaphore>,
    /// The images the runner's running jobs pulled.
    pulls: Pulls,
    /// How many pulls the job may have under way at once (a pull outlives its connection).
    pulls_at_once: Arc<Semaphore>,
}

/// Counts a request under way while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the job's user (`uid`) cannot change what `path` names before the engine mounts
/// it: no component is a symbolic link, and none can be renamed or replaced by that user
/// (the directory holding it is not writable by it, or is sticky and neither the directory
/// nor the entry is its). A read-write mount must also be that user's own (a container
/// writes as root what the job could not).
fn fixed(path: &Path, uid: u32, writable: bool) -> Result<(), Refusal> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: &str| {
        Refusal::new(format!(
            "mounting `{}` is not allowed to a job: {why}",
            path.display()
        ))
    };
    let stat = |p: &Path| std::fs::symlink_metadata(p).map_err(|e| refuse(&e.to_string()));
    let mut at = PathBuf::from("/");
    let mut parent = stat(&at)?;
    for component in path.components().skip(1) {
        at.push(component);
        let here = stat(&at)?;
        if here.file_type().is_symlink() {
            return Err(refuse(&format!("`{}` is a symbolic link", at.display())));
        }
        let open = parent.uid() == uid || parent.mode() & 0o022 != 0;
        let sticky = parent.mode() & 0o1000 != 0 && parent.uid() != uid && here.uid() != uid;
        if open && !sticky {
            return Err(refuse(&format!(
                "the job can replace `{}` (its directory is writable by the job)",
                at.display()
            )));
        }
        parent = here;
    }
    if !(parent.is_dir() || parent.is_file()) {
        return Err(refuse("it is neither a directory nor a file"));
    }
    if writable && parent.uid() != uid {
        return Err(refuse("read-write, only what the job's user owns"));
    }
    Ok(())
}

/// Whether `pid` is `ancestor` or descends from it (read from `/proc`).
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..4096 {
        if p == ancestor {
            return true;
        }
        if p <= 1 {
            return false;
        }
        let Some(ppid) = parent_of(p) else {
            return false;
        };
        p = ppid;
    }
    false
}

/// Whether the peer of `stream` (process `pid` when it connected) is `ancestor` or descends
/// from it. With a pidfd of the peer (Linux 6.5 and later) the answer is about that very
/// process: it must still be alive once its parents were read, so its pid was not given to
/// another meanwhile (a process of another slot could connect and exit, and its pid go to a
/// process of this job).
fn peer_is_of(stream: &UnixStream, pid: i32, ancestor: i32) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let pidfd = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerPidfd).ok();
    let before = parent_of(pid);
    if !descends_from(pid, ancestor) {
        return false;
    }
    let Some(pidfd) = pidfd else {
        return true;
    };
    // A pidfd turns readable when its process has exited.
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let exited = poll(&mut fds, PollTimeout::ZERO).map_or(true, |n| n > 0);
    !exited && parent_of(pid) == before
}

/// The parent of process `pid`, read from `/proc`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

/// The runner's name on what its brokers make: its work directory's, hashed (the same when it
/// starts again).
pub(crate) fn runner_label(work_dir: &Path) -> String {
    let at = std::path::absolute(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    blake3::hash(at.as_os_str().as_encoded_bytes()).to_hex()[..16].to_owned()
}

/// Removes what this runner's brokers made and a runner that stopped during a job left (at
/// its start: none of its jobs runs yet), the images its jobs pulled included.
pub(crate) async fn sweep(work_dir: &Path, pulls: &Pulls) {
    let Some(engine) = engine_socket() else {
        return;
    };
    let label = format!("{}={}", policy::RUNNER_LABEL, runner_label(work_dir));
    match engine::docker::Engine::connect_at(&format!("unix://{}", engine.display())).await {
        Ok(e) => {
            if let Err(err) = e.remove_labelled(&label).await {
                tracing::warn!("what this runner's jobs left in Docker: {err}");
            }
        }
        Err(err) => tracing::warn!("what this runner's jobs left in Docker: {err}"),
    }
    images::remove_left(&engine, pulls).await;
}

/// Whether the runner brokers Docker for its confined jobs (where it has a job user, a
/// local engine and `fs.protected_hardlinks`): unless its process has
/// `PIPEWRIGHT_DOCKER_BROKER=0`, which leaves its confined jobs without Docker.
pub(crate) fn enabled() -> bool {
    std::env::var("PIPEWRIGHT_DOCKER_BROKER").map_or(true, |v| v != "0")
}

/// Where the Docker engine listens, when it is a local socket that exists.
pub(crate) fn engine_socket() -> Option<PathBuf> {
    let at = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let path = PathBuf::from(at.strip_prefix("unix://")?);
    std::fs::metadata(&path).is_ok().then_some(path)
}

impl Broker {
    /// Listens at `socket` (made for `user` alone) for a job whose rules are `rules`.
    pub(crate) fn start(
        socket: &Path,
        engine: &Path,
        user: &engine::confine::JobUser,
        rules: Rules,
        pulls: Pulls,
    ) -> std::io::Result<Broker> {
        // Without it a job could hard-link the machine's files into what its containers
        // mount (and write them as root there).
        if !std::fs::read_to_string("/proc/sys/fs/protected_hardlinks")
            .is_ok_and(|v| v.trim() == "1")
        {
            return Err(std::io::Error::other(
                "fs.protected_hardlinks is not 1: a job could link the machine's files into \
                 what its containers mount",
            ));
        }
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        user.own(socket)?;
        let job = Arc::new(AtomicI32::new(0));
        let done = CancellationToken::new();
        let made = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let label = rules.label.clone();
        let shared = Arc::new(Shared {
            rules,
            engine: engine.to_path_buf(),
            owned: Mutex::new(Owned::default()),
            uid: user.uid,
            done: done.clone(),
            made: made.clone(),
            in_flight: in_flight.clone(),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            streams: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            pulls: pulls.clone(),
            pulls_at_once: Arc::new(Semaphore::new(MAX_PULLS_AT_ONCE)),
        });
        let job_of_task = job.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    // Out of descriptors, say: this broker waits, others go on.
                    Err(e) => {
                        tracing::warn!("docker broker: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = shared.connections.clone().acquire_owned().await else {
                    break;
                };
                let ancestor = job_of_task.load(Ordering::SeqCst);
                let peer = stream.peer_cred().ok().and_then(|c| c.pid());
                if ancestor <= 1 || !peer.is_some_and(|p| peer_is_of(&stream, p, ancestor)) {
                    tracing::warn!(
                        "docker broker: refused a connection from process {peer:?}, not of its job"
                    );
                    continue;
                }
                let shared = shared.clone();
                let done = shared.done.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(req, &shared).await) }
                    });
                    let serving = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::select! {
                        _ = serving => {}
                        () = done.cancelled() => {}
                    }
                    drop(permit);
                });
            }
        });
        Ok(Broker {
            socket: socket.to_path_buf(),
            engine: engine.to_path_buf(),
            job,
            task,
            done,
            made,
            in_flight,
            label,
            pulls,
        })
    }

    /// Where the job's process's pid goes once it is started.
    pub(crate) fn job_pid(&self) -> Arc<AtomicI32> {
        self.job.clone()
    }

    /// `DOCKER_HOST` for the job.
    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Stops listening and removes what the job made: containers (with their anonymous
    /// volumes), then networks and volumes, and the images it pulled.
    ///
    /// Everything is found by the job's label, which the broker set on all it let the job
    /// make (a create whose answer the job did not wait for is not in [`Owned`]). Answers
    /// whether nothing is left: a container left running could still see the slot.
    pub(crate) async fn finish(self) -> bool {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        // A create the job hung up on may still be under way in the engine: it lands (or
        // fails) before the sweep, up to a minute.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.done.cancel();
        let left = self.sweep().await;
        // What it pulled is removed once no running job pulled it too; what could not be
        // removed (an engine restarting, say) is tried again after the next job, and at the
        // runner's next start.
        self.pulls.release(&self.label);
        images::remove_left(&self.engine, &self.pulls).await;
        left
    }

    /// Removes the containers, networks and volumes the job made; whether nothing is left.
    async fn sweep(&self) -> bool {
        if !self.made.load(Ordering::SeqCst) {
            return true;
        }
        let label = format!("{}={}", policy::BROKER_LABEL, self.label);
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let removed = match engine::docker::Engine::connect_at(&format!(
                "unix://{}",
                self.engine.display()
            ))
            .await
            {
                Ok(engine) => engine.remove_labelled(&label).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => return true,
                Err(e) => tracing::warn!("removing what the job made in Docker: {e}"),
            }
        }
        false
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_answer(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn refused(message: String) -> Response<Body> {
    tracing::info!("docker broker refused: {message}");
    json_answer(
        StatusCode::FORBIDDEN,
        &serde_json::json!({ "message": message }),
    )
}

/// Starts the job's pull of `name` (the engine's name for it): refused when another job
/// pulled it or pulls it, when the machine has it (and the job did not pull it), when the
/// job has as many pulls under way as it may. Answers the ids of the images the engine had
/// before, and the place among the job's pulls at once.
async fn start_pull(
    shared: &Shared,
    name: &str,
) -> Result<
    (
        String,
        std::collections::BTreeSet<String>,
        OwnedSemaphorePermit,
    ),
    Response<Body>,
> {
    let label = &shared.rules.label;
    let others = || {
        refused(format!(
            "pipewright: `{name}` was pulled by another job: a job's pulls are its own until it \
             ends and they are removed"
        ))
    };
    if shared.pulls.taken(name, label) {
        return Err(others());
    }
    if !shared.pulls.its_own(name, label) && engine_has_image(&shared.engine, name).await {
        return Err(refused(format!(
            "pipewright: `{name}` is on this machine already: a job may pull what the machine \
             lacks, not replace what it has (other jobs run it)"
        )));
    }
    let Ok(permit) = shared.pulls_at_once.clone().try_acquire_owned() else {
        return Err(refused(format!(
            "pipewright: a job may pull at most {MAX_PULLS_AT_ONCE} images at once"
        )));
    };
    let Some(before) = images::ids(&shared.engine).await else {
        return Err(refused(format!(
            "pipewright: `{name}` cannot be pulled: the Docker engine did not list its images"
        )));
    };
    match shared.pulls.start(name, label, Arc::new(before.clone())) {
        Ok(()) => Ok((name.to_owned(), before, permit)),
        Err(images::NotPulled::Others) => Err(others()),
        Err(images::NotPulled::TooMany) => Err(refused(
            "pipewright: a job may pull at most 256 images".to_owned(),
        )),
        Err(images::NotPulled::Journal(e)) => Err(refused(format!(
            "pipewright: `{name}` cannot be pulled: the runner could not write down the pull: {e}"
        ))),
    }
}

async fn handle(mut req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    // The job's body is read where the broker decides on it, and never sent on as it came.
    let (json, unread) = if policy::reads_body(&method, &path) {
        let bytes = match Limited::new(incoming, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return refused(format!("pipewright: the request's body: {e}")),
        };
        if bytes.is_empty() {
            (Some(Value::Null), None)
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => (Some(v), None),
                Err(e) => {
                    return refused(format!("pipewright: the request's body is not JSON: {e}"));
                }
            }
        }
    } else {
        (None, Some(incoming))
    };
    let verdict = {
        let o = shared.owned.lock().unwrap_or_else(PoisonError::into_inner);
        policy::judge(&method, &path, &query, json.as_ref(), &o, &shared.rules)
    };
    let forward = match verdict {
        Err(r) => {
            // Read what the job is still sending (a build's context, say), up to a bound, so
            // that it gets to read the refusal instead of a broken pipe.
            if let Some(body) = unread {
                let _ = Limited::new(body, MAX_DRAIN).collect().await;
            }
            return refused(r.to_string());
        }
        Ok(Verdict::Answer(v)) => return json_answer(StatusCode::OK, &v),
        Ok(Verdict::Forward(f)) => f,
    };
    drop(unread);
    for Bind { path, writable } in &forward.binds {
        if let Err(r) = fixed(path, shared.uid, *writable) {
            return refused(r.to_string());
        }
    }
    for name in &forward.volumes {
        let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let ours = engine_get(&shared.engine, &format!("/volumes/{encoded}"))
            .await
            .is_some_and(|(status, v)| status.is_success() && policy::made_for(&v, &shared.rules));
        if !ours {
            shared
                .owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .forget(policy::Kind::Volume, name);
            return refused(format!(
                "pipewright: the volume `{name}` is no longer this job's (it was removed)"
            ));
        }
    }
    if let Some(image) = &forward.image {
        let creating = matches!(forward.makes, Makes::Container(_));
        let label = &shared.rules.label;
        match images::usable(&shared.engine, &shared.pulls, label, image, creating).await {
            Ok(()) => {}
            Err(images::Unusable::Missing) => {
                // Answered here, not by the engine: a pull landing meanwhile could be
                // another job's.
                return json_answer(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({ "message": format!("No such image: {image}") }),
                );
            }
            Err(images::Unusable::Refused(why)) => return refused(format!("pipewright: {why}")),
        }
    }
    // A pull: of a name no other job pulled, and the machine lacks (or the job pulled).
    let pulling = match &forward.pull {
        None => None,
        Some(pull) => match start_pull(shared, &pull.reference()).await {
            Ok(started) => Some(started),
            Err(answer) => return answer,
        },
    };
    // The job's content type is never sent on: the engine reads a form-encoded body as
    // parameters that win over the query's.
    for h in [
        hyper::header::CONTENT_TYPE,
        hyper::header::CONTENT_LENGTH,
        hyper::header::TRANSFER_ENCODING,
    ] {
        parts.headers.remove(h);
    }
    let (body, content_type) = match forward.body {
        Payload::Empty => (full(Bytes::new()), None),
        Payload::Json(v) => (full(v.to_string()), Some("application/json")),
    };
    if let Some(t) = content_type {
        parts.headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(t),
        );
    }
    parts.uri = match forward.uri.parse() {
        Ok(u) => u,
        Err(e) => return refused(format!("pipewright: the request's path: {e}")),
    };
    let making = matches!(
        forward.makes,
        Makes::Container(_) | Makes::Network(_) | Makes::Volume(_)
    );
    if making {
        shared.made.store(true, Ordering::SeqCst);
    }
    let upstream = Request::from_parts(parts, body);
    let stream = match UnixStream::connect(&shared.engine).await {
        Ok(s) => s,
        Err(e) => {
            return json_answer(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "message": format!("pipewright: the Docker engine: {e}") }),
            );
        }
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return json_answer(
            StatusCode::BAD_GATEWAY,
            &serde_json::json!({ "message": "pipewright: the Docker engine did not answer" }),
        );
    };
    let done = shared.done.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = conn.with_upgrades() => {}
            () = done.cancelled() => {}
        }
    });
    // A stream (`attach`, `exec`) holds a place of its own while it lasts: its connection's
    // place is given back as it is upgraded.
    let stream_place = match client_upgrade {
        Some(_) => match shared.streams.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return refused(format!(
                    "pipewright: a job may hold at most {MAX_CONNECTIONS} streams at once"
                ));
            }
        },
        None => None,
    };
    // A request that makes something runs to its answer in a task of its own, counted while
    // it does, even when the job hangs up: the job's end waits for it before its sweep.
    // A pull is counted until the engine's answer ends (the image lands then).
    let counted = (making || pulling.is_some()).then(|| InFlight::new(&shared.in_flight));
    let counts_to_the_end = pulling.is_some();
    let sent = tokio::spawn(async move {
        let sent = sender.send_request(upstream).await;
        (sent, counted.filter(|_| counts_to_the_end))
    })
    .await;
    let (sent, counted) = match sent {
        Ok((sent, counted)) => (Ok(sent), counted),
        Err(e) => (Err(e), None),
    };
    if let Some((name, before, permit)) = pulling {
        let (engine, pulls, label) = (
            shared.engine.clone(),
            shared.pulls.clone(),
            shared.rules.label.clone(),
        );
        return match sent {
            Ok(Ok(r)) => {
                let held = (counted, permit);
                images::follow_pull(r, name, before, (engine, pulls, label), held)
            }
            _ => {
                images::pull_ended(&engine, &pulls, &label, &name, &before).await;
                json_answer(
                    StatusCode::BAD_GATEWAY,
                    &serde_json::json!({ "message": "pipewright: the Docker engine did not answer the pull" }),
                )
            }
        };
    }
    let mut response = match sent {
        Ok(Ok(r)) => r,
        Err(e) => {
            return json_answer(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "message": format!("pipewright: the Docker engine: {e}") }),
            );
        }
        Ok(Err(e)) => {
            return json_answer(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "message": format!("pipewright: the Docker engine: {e}") }),
            );
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let engine_upgrade = hyper::upgrade::on(&mut response);
        if let Some(client_upgrade) = client_upgrade {
            let done = shared.done.clone();
            tokio::spawn(async move {
                let _place = stream_place;
                if let (Ok(a), Ok(b)) = (client_upgrade.await, engine_upgrade.await) {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        () = done.cancelled() => {}
                    }
                }
            });
        }
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, full(Bytes::new()));
    }
    if forward.makes == Makes::Nothing || !response.status().is_success() {
        let (parts, incoming) = response.into_parts();
        return Response::from_parts(parts, incoming.map_err(Into::into).boxed());
    }
    // What the answer made is the job's: its id (or a volume's name).
    let (parts, incoming) = response.into_parts();
    let bytes = match incoming.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return json_answer(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "message": format!("pipewright: the Docker engine: {e}") }),
            );
        }
    };
    let made: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let field = |k: &str| made.get(k).and_then(Value::as_str).map(str::to_owned);
    {
        let mut o = shared.owned.lock().unwrap_or_else(PoisonError::into_inner);
        match forward.makes {
            Makes::Container(name) => {
                if let Some(id) = field("Id") {
                    if let Some(name) = name.filter(|n| !n.is_empty()) {
                        o.container_names
                            .insert(name.trim_start_matches('/').to_owned(), id.clone());
                    }
                    o.mounts.insert(id.clone(), forward.binds.clone());
                    o.containers.insert(id);
                }
            }
            Makes::Exec => o.execs.extend(field("Id")),
            Makes::Network(name) => {
                if let Some(id) = field("Id") {
                    if !name.is_empty() {
                        o.network_names.insert(name, id.clone());
                    }
                    o.networks.insert(id);
                }
            }
            Makes::Volume(asked) => {
                // Creating a volume that exists answers with it: someone else's stays theirs.
                if !policy::made_for(&made, &shared.rules) {
                    return refused(format!(
                        "pipewright: the volume `{}` exists and was not made by this job",
                        field("Name").unwrap_or_default()
                    ));
                }
                if let Some(name) = field("Name") {
                    if !asked.is_empty() {
                        o.volume_names.insert(asked, name.clone());
                    }
                    o.volumes.insert(name);
                }
            }
            Makes::Removes(kind, id) => o.forget(kind, &id),
            Makes::Nothing => {}
        }
    }
    Response::from_parts(parts, full(bytes))
}

#[cfg(test)]
mod tests;
