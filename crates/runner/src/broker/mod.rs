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

mod policy;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{UnixListener, UnixStream};

pub(crate) use policy::Rules;
use policy::{Makes, Owned, Verdict};

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The most a request body the broker reads (a container's configuration) may hold.
const MAX_BODY: usize = 1 << 20;

/// A broker listening for one job.
pub(crate) struct Broker {
    socket: PathBuf,
    engine: PathBuf,
    owned: Arc<Mutex<Owned>>,
    /// The job process's pid, once started (0 before: nobody is served).
    job: Arc<AtomicI32>,
    task: tokio::task::JoinHandle<()>,
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
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
        else {
            return false;
        };
        p = ppid;
    }
    false
}

/// Whether the runner brokers Docker for its confined jobs: only when its process has
/// `PIPEWRIGHT_DOCKER_BROKER=1`. Experimental and off by default: a review found ways
/// through its rules that are not closed yet (docs/security.md, "What is not (yet) a
/// boundary").
pub(crate) fn enabled() -> bool {
    std::env::var("PIPEWRIGHT_DOCKER_BROKER").is_ok_and(|v| v == "1")
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
        user: Option<&engine::confine::JobUser>,
        rules: Rules,
    ) -> std::io::Result<Broker> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        if let Some(u) = user {
            u.own(socket)?;
        }
        let owned = Arc::new(Mutex::new(Owned::default()));
        let job = Arc::new(AtomicI32::new(0));
        let shared = Arc::new((rules, engine.to_path_buf(), owned.clone()));
        let job_of_task = job.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let ancestor = job_of_task.load(Ordering::SeqCst);
                let peer = stream.peer_cred().ok().and_then(|c| c.pid());
                if ancestor <= 1 || !peer.is_some_and(|p| descends_from(p, ancestor)) {
                    tracing::warn!(
                        "docker broker: refused a connection from process {peer:?}, not of its job"
                    );
                    continue;
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move {
                            Ok::<_, Infallible>(handle(req, &shared.0, &shared.1, &shared.2).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Broker {
            socket: socket.to_path_buf(),
            engine: engine.to_path_buf(),
            owned,
            job,
            task,
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
    /// volumes), then networks and volumes.
    pub(crate) async fn finish(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let owned = std::mem::take(&mut *self.owned.lock().unwrap_or_else(PoisonError::into_inner));
        if owned.containers.is_empty() && owned.networks.is_empty() && owned.volumes.is_empty() {
            return;
        }
        let Ok(engine) =
            engine::docker::Engine::connect_at(&format!("unix://{}", self.engine.display())).await
        else {
            tracing::warn!("the Docker engine is gone: what the job made there stays");
            return;
        };
        for c in &owned.containers {
            engine.remove_container(c).await;
        }
        for n in &owned.networks {
            engine.remove_network(n).await;
        }
        for v in &owned.volumes {
            engine.remove_volume(v).await;
        }
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

async fn handle(
    mut req: Request<Incoming>,
    rules: &Rules,
    engine: &Path,
    owned: &Mutex<Owned>,
) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, incoming) = req.into_parts();
    let (json, body): (Option<Value>, Body) = if policy::reads_body(&method, &path) {
        let bytes = match Limited::new(incoming, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return refused(format!("pipewright: the request's body: {e}")),
        };
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    return refused(format!("pipewright: the request's body is not JSON: {e}"));
                }
            }
        };
        (Some(json), full(bytes))
    } else {
        (None, incoming.map_err(Into::into).boxed())
    };
    let verdict = {
        let o = owned.lock().unwrap_or_else(PoisonError::into_inner);
        policy::judge(&method, &path, &query, json.as_ref(), &o, rules)
    };
    let (body, makes, rewritten) = match verdict {
        Verdict::Refuse(msg) => return refused(msg),
        Verdict::Answer(v) => return json_answer(StatusCode::OK, &v),
        Verdict::Forward {
            body: Some(v),
            makes,
        } => (full(v.to_string()), makes, true),
        Verdict::Forward { body: None, makes } => (body, makes, false),
    };
    let mut upstream = Request::from_parts(parts, body);
    if rewritten {
        // The body the engine gets is the broker's: its length is its own.
        upstream.headers_mut().remove(hyper::header::CONTENT_LENGTH);
    }
    let stream = match UnixStream::connect(engine).await {
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
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut response = match sender.send_request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            return json_answer(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "message": format!("pipewright: the Docker engine: {e}") }),
            );
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let engine_upgrade = hyper::upgrade::on(&mut response);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                if let (Ok(a), Ok(b)) = (client_upgrade.await, engine_upgrade.await) {
                    let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, full(Bytes::new()));
    }
    if makes == Makes::Nothing || !response.status().is_success() {
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
        let mut o = owned.lock().unwrap_or_else(PoisonError::into_inner);
        match makes {
            Makes::Container(name) => {
                o.containers.extend(field("Id"));
                o.containers.extend(name);
            }
            Makes::Exec => o.execs.extend(field("Id")),
            Makes::Network(name) => {
                o.networks.extend(field("Id"));
                o.networks.insert(name);
            }
            Makes::Volume => o.volumes.extend(field("Name")),
            Makes::Nothing => {}
        }
    }
    Response::from_parts(parts, full(bytes))
}

#[cfg(test)]
mod tests {
    use super::descends_from;

    #[test]
    fn a_process_descends_from_its_parents_and_not_from_others() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent = nix::unistd::getppid().as_raw();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let child_pid = i32::try_from(child.id()).unwrap();
        assert!(descends_from(me, me));
        assert!(descends_from(me, parent));
        assert!(descends_from(child_pid, me));
        assert!(!descends_from(me, child_pid));
        assert!(!descends_from(1, me));
        assert!(!descends_from(i32::MAX, me), "no such process");
        let _ = child.kill();
        let _ = child.wait();
    }
}
