//! Service containers without Docker: a job's `postgres:<version>` and `redis:<version>`
//! services run from the server binaries installed on this machine (PostgreSQL's `initdb`
//! and `postgres`, `redis-server`), each in a directory of the job's temporary directory,
//! listening on 127.0.0.1 at the host port the job maps (or a free one), with
//! `POSTGRES_USER`, `POSTGRES_PASSWORD` and `POSTGRES_DB` honoured. The job waits until
//! each answers, within its health check's time (`--health-interval` times
//! `--health-retries`, after `--health-start-period`; 30 s at least). A service is stopped
//! and its directory removed when its handle is dropped: at the job's end, whatever way it
//! ends. A step that outlives its job dies with the job's process, and its services too.
//!
//! Any other image needs a Docker engine: it fails the job, naming the service and image.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use workflow::container::{ContainerSpec, Protocol};

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
#[error("service `{id}` ({image}): {message}")]
pub struct ServiceError {
    pub id: String,
    pub image: String,
    pub message: String,
}

/// What can run a service's image here without Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Redis,
}

impl Kind {
    /// The kind of `image` (`postgres:16`, `docker.io/library/redis:7-alpine`), if any, and
    /// the major version its tag asks for.
    pub fn of(image: &str) -> Option<(Kind, Option<u32>)> {
        let (name, tag) = match image.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (image, None),
        };
        let name = name.split('@').next().unwrap_or(name);
        let repo = name.strip_prefix("docker.io/").unwrap_or(name);
        let repo = repo.strip_prefix("library/").unwrap_or(repo);
        let kind = match repo {
            "postgres" => Kind::Postgres,
            "redis" => Kind::Redis,
            _ => return None,
        };
        let major = tag
            .and_then(|t| t.split(['.', '-']).next())
            .and_then(|m| m.parse().ok());
        Some((kind, major))
    }
}

/// A service running from a local binary; stopped (and its directory removed) on drop.
pub struct Local {
    pub id: String,
    /// (container port, host port) of each mapped port.
    pub ports: Vec<(u16, u16)>,
    /// What it says in the job's log.
    pub description: String,
    child: Option<Child>,
    dir: PathBuf,
}

impl Local {
    /// The last `max` lines the service printed, and how many came before them.
    pub fn log_tail(&self, max: usize) -> (Vec<String>, usize) {
        let text = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(max);
        (
            lines[skip..].iter().map(|l| (*l).to_owned()).collect(),
            skip,
        )
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Who runs a service: PostgreSQL refuses root, so a root job runs it as `user` (uid, gid).
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Whether a service of `image` can run from a local server binary (postgres, redis).
pub fn supported(image: &str) -> bool {
    Kind::of(image).is_some()
}

/// Starts service `id` of image `spec.image` from a local binary, in a directory under
/// `temp`, and waits until it answers.
pub fn start(
    id: &str,
    spec: &ContainerSpec,
    temp: &Path,
    run_as: Option<RunAs>,
) -> Result<Local, ServiceError> {
    let fail = |message: String| ServiceError {
        id: id.to_owned(),
        image: spec.image.clone(),
        message,
    };
    let Some((kind, major)) = Kind::of(&spec.image) else {
        return Err(fail(
            "this image needs a Docker engine; without one only postgres and redis services run (from the server binaries installed here)".into(),
        ));
    };
    let default_port = match kind {
        Kind::Postgres => 5432,
        Kind::Redis => 6379,
    };
    // The service's own port, and where the job reaches it.
    let mut ports = Vec::new();
    for p in &spec.ports {
        if p.protocol == Protocol::Udp {
            return Err(fail(format!(
                "{}/udp: only TCP ports are served",
                p.container
            )));
        }
        if p.container != default_port {
            return Err(fail(format!(
                "port {} is not the service's ({default_port})",
                p.container
            )));
        }
        let host = match p.host {
            Some(h) => h,
            None => free_port().map_err(|e| fail(format!("no free port: {e}")))?,
        };
        ports.push((p.container, host));
    }
    let port = match ports.first() {
        Some((_, h)) => *h,
        None => free_port().map_err(|e| fail(format!("no free port: {e}")))?,
    };
    if TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
    {
        return Err(fail(format!(
            "port {port} is taken on this machine (map another: `ports: [\"{}:{default_port}\"]`)",
            port + 1
        )));
    }
    let dir = tempdir_in(temp, id).map_err(|e| fail(format!("cannot make its directory: {e}")))?;
    if let Some(u) = run_as {
        chown_to(&dir, u).map_err(|e| fail(format!("cannot hand its directory over: {e}")))?;
    }
    let env = |name: &str| {
        spec.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let wait = spec
        .options
        .health
        .as_ref()
        .map_or(Duration::from_secs(30), |h| {
            (h.start_period + h.interval * h.retries.max(1)).max(Duration::from_secs(30))
        });
    let mut local = Local {
        id: id.to_owned(),
        ports,
        description: String::new(),
        child: None,
        dir: dir.clone(),
    };
    match kind {
        Kind::Postgres => {
            let user = env("POSTGRES_USER").unwrap_or_else(|| "postgres".into());
            let password = env("POSTGRES_PASSWORD");
            let db = env("POSTGRES_DB").unwrap_or_else(|| user.clone());
            let (bin, version) = postgres_bin(major).map_err(fail)?;
            let data = dir.join("data");
            let mut initdb = Command::new(bin.join("initdb"));
            initdb.arg("-D").arg(&data).args([
                "-U",
                &user,
                "-E",
                "UTF8",
                "--no-sync",
                "--auth-local=trust",
            ]);
            if let Some(pw) = &password {
                let file = dir.join("pw");
                std::fs::write(&file, pw).map_err(|e| fail(format!("{e}")))?;
                if let Some(u) = run_as {
                    chown_to(&file, u).map_err(|e| fail(format!("{e}")))?;
                }
                initdb
                    .arg("--auth-host=scram-sha-256")
                    .arg(format!("--pwfile={}", file.display()));
            } else {
                initdb.arg("--auth-host=trust");
            }
            run(&mut initdb, run_as).map_err(|e| fail(format!("initdb: {e}")))?;
            let _ = std::fs::remove_file(dir.join("pw"));
            let mut server = Command::new(bin.join("postgres"));
            server
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                // TCP only: a socket's path under a job's directory is often longer than
                // the 107 bytes a Unix socket's may be.
                .args([
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "listen_addresses=127.0.0.1",
                ])
                .args(["-c", "fsync=off"]);
            local.child = Some(
                spawn(&mut server, &dir.join("log"), run_as)
                    .map_err(|e| fail(format!("postgres: {e}")))?,
            );
            let ready = |local: &mut Local| -> Result<bool, String> {
                let mut probe = Command::new(bin.join("pg_isready"));
                probe.args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    &user,
                ]);
                Ok(probe.status().map_err(|e| e.to_string())?.success() && alive(local))
            };
            wait_until(&mut local, wait, ready).map_err(fail)?;
            if db != user {
                let mut create = Command::new(bin.join("createdb"));
                create
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", &user])
                    .arg(&db);
                if let Some(pw) = &password {
                    create.env("PGPASSWORD", pw);
                }
                run(&mut create, run_as).map_err(|e| fail(format!("createdb {db}: {e}")))?;
            }
            local.description = format!(
                "PostgreSQL {version} from {} on 127.0.0.1:{port} (user {user}, database {db}){}",
                bin.display(),
                match major {
                    Some(m) if m != version =>
                        format!("; the image asks for {m}, which is not installed"),
                    _ => String::new(),
                }
            );
        }
        Kind::Redis => {
            let bin = which("redis-server").ok_or_else(|| {
                fail("needs a Docker engine or redis-server installed here (apt-get install redis-server)".into())
            })?;
            let mut server = Command::new(&bin);
            server
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "no", "--daemonize", "no", "--dir"])
                .arg(&dir);
            local.child = Some(
                spawn(&mut server, &dir.join("log"), run_as)
                    .map_err(|e| fail(format!("redis-server: {e}")))?,
            );
            let ready = |local: &mut Local| -> Result<bool, String> {
                Ok(alive(local) && redis_pong(port))
            };
            wait_until(&mut local, wait, ready).map_err(fail)?;
            local.description = format!("{} on 127.0.0.1:{port}", bin.display());
        }
    }
    Ok(local)
}

fn alive(local: &mut Local) -> bool {
    local
        .child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

/// Polls `ready` until it holds, the service ends, or `wait` passes; the error says why,
/// with the last lines of the service's log.
fn wait_until(
    local: &mut Local,
    wait: Duration,
    ready: impl Fn(&mut Local) -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        if ready(local)? {
            return Ok(());
        }
        let why = if !alive(local) {
            Some("it stopped".to_owned())
        } else if Instant::now() >= deadline {
            Some(format!(
                "not ready after {}",
                workflow::duration::format_duration(wait)
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let log = std::fs::read_to_string(local.dir.join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{why}; its last lines:\n{}", tail.join("\n")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn redis_pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn tempdir_in(temp: &Path, id: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(temp)?;
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    for n in 0..100 {
        let d = temp.join(format!("service-{safe}-{n}"));
        match std::fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many service directories"))
}

fn chown_to(path: &Path, u: RunAs) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
}

fn as_user(cmd: &mut Command, run_as: Option<RunAs>) {
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
}

/// Runs `cmd` to its end: an error with its output if it failed.
fn run(cmd: &mut Command, run_as: Option<RunAs>) -> Result<(), String> {
    as_user(cmd, run_as);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = text.lines().rev().take(5).collect();
    Err(format!(
        "{}: {}",
        out.status,
        last.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}

fn spawn(cmd: &mut Command, log: &Path, run_as: Option<RunAs>) -> Result<Child, String> {
    as_user(cmd, run_as);
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    if let Some(u) = run_as {
        chown_to(log, u).map_err(|e| e.to_string())?;
    }
    let err = out.try_clone().map_err(|e| e.to_string())?;
    // A group of its own: a Ctrl-C meant for pipewright does not stop it mid-job; the
    // handle's drop does.
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())
}

/// `name` on this process's `PATH`, or in the usual system directories (a server binary
/// may be in `/usr/sbin`, which a user's `PATH` often lacks).
fn which(name: &str) -> Option<PathBuf> {
    let mut dirs = std::env::var_os("PATH").unwrap_or_default();
    dirs.push(":/usr/sbin:/usr/bin:/usr/local/bin");
    crate::job::find_on_path(name, &dirs)
}

/// PostgreSQL's binaries: of the major version asked for if installed, else the newest
/// (Debian's `/usr/lib/postgresql/N/bin`, or `pg_config --bindir`).
fn postgres_bin(major: Option<u32>) -> Result<(PathBuf, u32), String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    if found.is_empty()
        && let Some(initdb) = which("initdb")
        && let Some(bin) = initdb.parent()
    {
        let version = Command::new(bin.join("postgres"))
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.split_whitespace()
                    .last()
                    .and_then(|v| v.split('.').next())
                    .and_then(|m| m.parse().ok())
            })
            .unwrap_or(0);
        found.push((version, bin.to_owned()));
    }
    found.sort();
    let pick = major
        .and_then(|m| found.iter().find(|(v, _)| *v == m))
        .or(found.last())
        .cloned();
    pick.map(|(v, b)| (b, v)).ok_or_else(|| {
        "needs a Docker engine or PostgreSQL's server binaries installed here (apt-get install postgresql)".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_that_run_without_docker() {
        assert_eq!(Kind::of("postgres:13"), Some((Kind::Postgres, Some(13))));
        assert_eq!(
            Kind::of("postgres:16.2-alpine"),
            Some((Kind::Postgres, Some(16)))
        );
        assert_eq!(
            Kind::of("docker.io/library/redis:7"),
            Some((Kind::Redis, Some(7)))
        );
        assert_eq!(Kind::of("redis"), Some((Kind::Redis, None)));
        assert_eq!(Kind::of("postgres:latest"), Some((Kind::Postgres, None)));
        assert_eq!(Kind::of("bitnami/postgresql:15"), None);
        assert_eq!(Kind::of("localhost:5000/postgres"), None);
    }
}
