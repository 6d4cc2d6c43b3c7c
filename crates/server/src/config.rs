//! Server configuration: defaults, then a TOML file, then `PIPEWRIGHT_*` environment
//! variables. The raw file ([`RawConfig`]) and the checked result ([`Config`]) are different
//! types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub server_id: Option<String>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub runner: RawRunner,
    #[serde(default)]
    pub repos: Vec<RawRepo>,
    #[serde(default)]
    pub artifacts: RawArtifacts,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub monitors: Vec<crate::notify::RawMonitor>,
    #[serde(default)]
    pub notify: Vec<crate::notify::RawNotify>,
    #[serde(default)]
    pub environments: Vec<crate::environments::RawEnvironment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    /// Connections served at once; more wait.
    pub max_connections: Option<usize>,
    /// A connection that sends no request (or no request head) for this long is closed.
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArtifacts {
    /// Days a run's artifacts (and a cache entry since its last use) are kept.
    pub retention_days: Option<u32>,
    /// How often expired artifacts and unused blobs are collected (`1h`, `30m`).
    pub gc_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub admin_token: Option<String>,
    /// A token `/metrics` asks for (none: `/metrics` is open).
    pub metrics_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRunner {
    pub embedded_capacity: Option<usize>,
    /// Seconds a job's lease lasts without a heartbeat before its runner counts as lost.
    pub lease_seconds: Option<u64>,
    /// Attempts a job gets when its runner is lost (1 = no retry).
    pub max_attempts: Option<i64>,
    /// The unprivileged user the in-process runner's jobs run as.
    pub job_user: Option<String>,
    /// `landlock` (default): each job runs in a process of its own, confined (Landlock
    /// where the kernel has it, and `job_user`); `none`: in the server's process, as the
    /// server's user (jobs of untrusted origin are then refused).
    pub isolation: Option<String>,
    /// Paths every job may write besides its own directory.
    #[serde(default)]
    pub writable_paths: Vec<PathBuf>,
    /// How long a registration token stays good (`1h`).
    pub registration_token_ttl: Option<String>,
    /// `runs-on` labels whose jobs run in a container of a local image (`ubuntu-latest =
    /// "IMAGE"`); needs `isolation = "none"`.
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepo {
    pub name: String,
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub poll_interval: Option<String>,
    pub webhook_secret: Option<String>,
    pub default_branch: Option<String>,
    /// `github` or `gitea` (Forgejo too): where commit statuses are posted.
    pub forge: Option<String>,
    /// The forge's API base, e.g. `https://api.github.com` or `https://git.example.com/api/v1`.
    pub forge_url: Option<String>,
    pub forge_token: Option<String>,
    /// `owner/name` on the forge (default: `name`).
    pub forge_repo: Option<String>,
    /// `run` (default): pull requests from forks run (without secrets); `approve`: they
    /// wait until someone approves them (`pipewright approve RUN`).
    pub fork_pull_requests: Option<String>,
}

/// A repository the server builds.
#[derive(Clone)]
pub struct RepoConfig {
    pub name: String,
    /// A local bare repository: the configured `path`, or the mirror of a polled `url`
    /// (`data_dir/mirrors/<name>.git`). Everything that reads commits reads them here.
    pub path: PathBuf,
    /// Set for a `url` repository: the server fetches it into `path` at this interval.
    pub poll: Option<Poll>,
    pub webhook_secret: Option<String>,
    pub default_branch: String,
    /// Where to post commit statuses, if anywhere.
    pub forge: Option<Forge>,
    /// Runs of pull requests from forks wait for approval.
    pub fork_approval: bool,
    /// What the server read of the repository's commits (shared by the configuration's
    /// clones).
    pub commits: std::sync::Arc<crate::git::CommitCache>,
}

/// A remote repository the server polls.
#[derive(Clone)]
pub struct Poll {
    /// Anything `git fetch` accepts (a path, `file://`, `https://`, `ssh://`, `host:path`).
    pub url: String,
    pub interval: Duration,
}

/// How often a `url` repository is fetched when `poll_interval` is not given.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// How often expired artifacts and unused blobs are collected when `gc_interval` is not
/// given.
pub(crate) const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);

/// A forge's commit status API (GitHub's and Gitea's have the same shape).
#[derive(Clone)]
pub struct Forge {
    pub api_url: String,
    pub token: String,
    pub repo: String,
}

impl std::fmt::Debug for RepoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoConfig")
            .field("name", &self.name)
            .field("path", &self.path)
            .field(
                "poll",
                &self.poll.as_ref().map(|p| (redact_url(&p.url), p.interval)),
            )
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("default_branch", &self.default_branch)
            .field("fork_approval", &self.fork_approval)
            .field(
                "forge",
                &self
                    .forge
                    .as_ref()
                    .map(|f| (&f.api_url, &f.repo, "<token redacted>")),
            )
            .finish()
    }
}

/// The checked configuration.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: String,
    /// `public_url` was configured (else it is the listening address, the one bound when
    /// the port is 0).
    pub public_url_configured: bool,
    /// This server among those sharing a database: it orchestrates the runs it took, and a
    /// restarted server with the same id takes its own runs up at once. `None`: the id kept
    /// in the data directory.
    pub server_id: Option<String>,
    /// The admin token; none: the server makes one on first start (`admin-token` in the
    /// data directory).
    pub admin_token: Option<String>,
    /// What `/metrics` asks for, if anything.
    pub metrics_token: Option<String>,
    pub embedded_capacity: usize,
    /// `postgres://...` or `sqlite:PATH`; the SQLite file in the data directory if absent.
    pub database_url: Option<String>,
    /// How long a job's lease lasts without a heartbeat.
    pub lease_ms: i64,
    /// Attempts of a job whose runner was lost, in all.
    pub max_attempts: i64,
    pub repos: Vec<RepoConfig>,
    /// `PIPEWRIGHT_SECRET_KEY`: the key sealing secrets at rest, instead of the key file.
    pub secret_key: Option<String>,
    /// `PIPEWRIGHT_ADMIN_PASSWORD`: the password of the first account, `admin` (made on the
    /// first start; a generated one is said once without it).
    pub admin_password: Option<String>,
    /// Days a run's artifacts, and a cache entry after its last use, are kept.
    pub artifact_retention_days: u32,
    /// How often the collection of expired artifacts and unused blobs runs.
    pub gc_interval: Duration,
    /// The file the configuration was read from (jobs may not read it).
    pub config_file: Option<PathBuf>,
    /// The user the in-process runner's jobs run as.
    pub job_user: Option<String>,
    /// Whether jobs run confined in processes of their own (`isolation = "landlock"`).
    pub confine_jobs: bool,
    /// `runs-on` labels whose jobs the in-process runner runs in a container of an image.
    pub runner_images: Vec<(String, String)>,
    /// Paths every job may write besides its own directory.
    pub writable_paths: Vec<PathBuf>,
    /// How long a registration token stays good.
    pub registration_token_ttl: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a connection may send no request, or take to send a request's head.
    pub idle_timeout: Duration,
    /// HTTP endpoints the server checks (`[[monitors]]`).
    pub monitors: Vec<crate::notify::Monitor>,
    /// Where alerts go (`[[notify]]`).
    pub channels: Vec<crate::notify::Channel>,
    /// Protected environments (`[[environments]]`).
    pub protections: Vec<crate::environments::Protection>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("embedded_capacity", &self.embedded_capacity)
            .field("lease_ms", &self.lease_ms)
            .field("max_attempts", &self.max_attempts)
            .field("repos", &self.repos)
            .field("artifact_retention_days", &self.artifact_retention_days)
            .field("gc_interval", &self.gc_interval)
            .field("job_user", &self.job_user)
            .field("confine_jobs", &self.confine_jobs)
            .field("runner_images", &self.runner_images)
            .field("monitors", &self.monitors)
            .field("channels", &self.channels)
            .field("protections", &self.protections)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Config {
    /// Loads `file` (if given), applies `env` (`PIPEWRIGHT_*` pairs) over it, and checks it.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut raw = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<RawConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => RawConfig::default(),
        };
        let mut secret_key = None;
        let mut admin_password = None;
        for (k, v) in env {
            match k.as_str() {
                "PIPEWRIGHT_SECRET_KEY" => secret_key = Some(v.clone()),
                "PIPEWRIGHT_ADMIN_PASSWORD" => admin_password = Some(v.clone()),
                "PIPEWRIGHT_LISTEN" => raw.listen = Some(v.clone()),
                "PIPEWRIGHT_DATA_DIR" => raw.data_dir = Some(PathBuf::from(v)),
                "PIPEWRIGHT_DATABASE_URL" => raw.database_url = Some(v.clone()),
                "PIPEWRIGHT_PUBLIC_URL" => raw.public_url = Some(v.clone()),
                "PIPEWRIGHT_SERVER_ID" => raw.server_id = Some(v.clone()),
                "PIPEWRIGHT_ADMIN_TOKEN" => raw.auth.admin_token = Some(v.clone()),
                "PIPEWRIGHT_METRICS_TOKEN" => raw.auth.metrics_token = Some(v.clone()),
                "PIPEWRIGHT_JOB_USER" => raw.runner.job_user = Some(v.clone()),
                "PIPEWRIGHT_EMBEDDED_CAPACITY" => {
                    raw.runner.embedded_capacity =
                        Some(v.parse().map_err(|_| ConfigError::Invalid {
                            key: k.clone(),
                            message: format!("`{v}` is not a number"),
                        })?);
                }
                "PIPEWRIGHT_ARTIFACTS_RETENTION_DAYS" => {
                    raw.artifacts.retention_days =
                        Some(v.parse().map_err(|_| ConfigError::Invalid {
                            key: k.clone(),
                            message: format!("`{v}` is not a number of days"),
                        })?);
                }
                "PIPEWRIGHT_ARTIFACTS_GC_INTERVAL" => raw.artifacts.gc_interval = Some(v.clone()),
                _ => {}
            }
        }
        let mut config = Config::check(raw)?;
        config.secret_key = secret_key;
        config.admin_password = admin_password;
        config.config_file = file.map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_owned()));
        Ok(config)
    }

    fn check(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "listen".into(),
            message: format!("`{listen_text}` is not an address like 127.0.0.1:8080"),
        })?;
        if let Some(url) = &raw.database_url
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p))
        {
            return Err(ConfigError::Invalid {
                key: "database_url".into(),
                message: format!(
                    "`{url}` is neither `postgres://user@host:port/db` nor `sqlite:PATH`"
                ),
            });
        }
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from("pipewright-data"));
        let mut repos = Vec::new();
        for r in raw.repos {
            if r.name.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "repos.name".into(),
                    message: "a repository needs a non-empty `name`".into(),
                });
            }
            let (path, poll) = match (r.path, r.url) {
                (Some(path), None) => {
                    if r.poll_interval.is_some() {
                        return Err(ConfigError::Invalid {
                            key: format!("repos.{}.poll_interval", r.name),
                            message: "only applies to a `url` repository (a `path` repository is told of pushes by its hook)".into(),
                        });
                    }
                    (path, None)
                }
                (None, Some(url)) => {
                    if url.trim().is_empty() {
                        return Err(ConfigError::Invalid {
                            key: format!("repos.{}.url", r.name),
                            message: "is empty".into(),
                        });
                    }
                    let interval = match &r.poll_interval {
                        None => DEFAULT_POLL_INTERVAL,
                        Some(text) => parse_interval(text).ok_or_else(|| ConfigError::Invalid {
                            key: format!("repos.{}.poll_interval", r.name),
                            message: format!(
                                "`{text}` is not a duration of at least one second like 30s, 5m, 1h or 1m30s"
                            ),
                        })?,
                    };
                    (
                        mirror_path(&data_dir, &r.name),
                        Some(Poll { url, interval }),
                    )
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid {
                        key: format!("repos.{}", r.name),
                        message: "has both `path` and `url`: use `path` for a local bare repository that is pushed to, `url` (with `poll_interval`) for one the server fetches".into(),
                    });
                }
                (None, None) => {
                    return Err(ConfigError::Invalid {
                        key: format!("repos.{}", r.name),
                        message: "needs `path` (a local bare repository) or `url` (a repository the server fetches every `poll_interval`)".into(),
                    });
                }
            };
            if repos.iter().any(|x: &RepoConfig| x.name == r.name) {
                return Err(ConfigError::Invalid {
                    key: format!("repos.{}", r.name),
                    message: "is defined twice".into(),
                });
            }
            let forge = match (r.forge.as_deref(), r.forge_url, r.forge_token) {
                (None, None, None) => None,
                (Some("github" | "gitea" | "forgejo") | None, Some(api_url), Some(token)) => {
                    Some(Forge {
                        api_url: api_url.trim_end_matches('/').to_owned(),
                        token,
                        repo: r.forge_repo.unwrap_or_else(|| r.name.clone()),
                    })
                }
                (Some(f), _, _) if !["github", "gitea", "forgejo"].contains(&f) => {
                    return Err(ConfigError::Invalid {
                        key: format!("repos.{}.forge", r.name),
                        message: format!("`{f}`: expected github, gitea or forgejo"),
                    });
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        key: format!("repos.{}", r.name),
                        message: "commit statuses need both `forge_url` and `forge_token`".into(),
                    });
                }
            };
            if r.webhook_secret
                .as_deref()
                .is_some_and(|w| w.trim().is_empty())
            {
                return Err(ConfigError::Invalid {
                    key: format!("repos.{}.webhook_secret", r.name),
                    message: "is empty: anyone could sign a webhook with it (remove the key to take no webhooks)".into(),
                });
            }
            let fork_approval = match r.fork_pull_requests.as_deref() {
                None | Some("run") => false,
                Some("approve") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        key: format!("repos.{}.fork_pull_requests", r.name),
                        message: format!("`{other}`: expected run or approve"),
                    });
                }
            };
            repos.push(RepoConfig {
                fork_approval,
                name: r.name,
                path,
                poll,
                webhook_secret: r.webhook_secret,
                default_branch: r.default_branch.unwrap_or_else(|| "main".into()),
                forge,
                commits: Default::default(),
            });
        }
        let lease_seconds = raw.runner.lease_seconds.unwrap_or(30);
        if !(1..=3600).contains(&lease_seconds) {
            return Err(ConfigError::Invalid {
                key: "runner.lease_seconds".into(),
                message: format!("must be between 1 and 3600, got {lease_seconds}"),
            });
        }
        let max_attempts = raw.runner.max_attempts.unwrap_or(2);
        if !(1..=10).contains(&max_attempts) {
            return Err(ConfigError::Invalid {
                key: "runner.max_attempts".into(),
                message: format!("must be between 1 and 10, got {max_attempts}"),
            });
        }
        let artifact_retention_days = raw.artifacts.retention_days.unwrap_or(90);
        if !(1..=36_500).contains(&artifact_retention_days) {
            return Err(ConfigError::Invalid {
                key: "artifacts.retention_days".into(),
                message: format!("must be between 1 and 36500, got {artifact_retention_days}"),
            });
        }
        let gc_interval = match &raw.artifacts.gc_interval {
            None => DEFAULT_GC_INTERVAL,
            Some(text) => parse_interval(text).ok_or_else(|| ConfigError::Invalid {
                key: "artifacts.gc_interval".into(),
                message: format!(
                    "`{text}` is not a duration of at least one second like 30s, 5m, 1h or 1m30s"
                ),
            })?,
        };
        let confine_jobs = match raw.runner.isolation.as_deref() {
            None | Some("landlock") => true,
            Some("none") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "runner.isolation".into(),
                    message: format!("`{other}`: expected landlock or none"),
                });
            }
        };
        for (key, token) in [
            ("auth.admin_token", &raw.auth.admin_token),
            ("auth.metrics_token", &raw.auth.metrics_token),
        ] {
            if token.as_deref().is_some_and(|t| t.trim().len() < 16) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: "is shorter than 16 characters: too easy to guess".into(),
                });
            }
        }
        let job_user = raw.runner.job_user.filter(|u| !u.trim().is_empty());
        if job_user.is_some() && !confine_jobs {
            return Err(ConfigError::Invalid {
                key: "runner.job_user".into(),
                message: "needs isolation = \"landlock\" (a job runs as another user in a process of its own)".into(),
            });
        }
        // A confined job reaches Docker only through its runner's broker, which needs a job
        // user (what a container mounts must be out of that user's reach).
        if !raw.runner.images.is_empty()
            && confine_jobs
            && (job_user.is_none()
                || std::env::var("PIPEWRIGHT_DOCKER_BROKER").is_ok_and(|v| v == "0"))
        {
            return Err(ConfigError::Invalid {
                key: "runner.images".into(),
                message: "needs a job user (runner.job_user) or isolation = \"none\": a confined job reaches Docker only through its runner's Docker broker, which needs one (and PIPEWRIGHT_DOCKER_BROKER=0 turns it off)".into(),
            });
        }
        if let Some((label, _)) = raw
            .runner
            .images
            .iter()
            .find(|(l, i)| l.trim().is_empty() || i.trim().is_empty())
        {
            return Err(ConfigError::Invalid {
                key: format!("runner.images.{label}"),
                message: "a label and an image, such as ubuntu-latest = \"my/image:1\"".into(),
            });
        }
        let runner_images: Vec<(String, String)> = raw.runner.images.clone().into_iter().collect();
        for p in &raw.runner.writable_paths {
            if !p.is_absolute() {
                return Err(ConfigError::Invalid {
                    key: "runner.writable_paths".into(),
                    message: format!("`{}` is not an absolute path", p.display()),
                });
            }
        }
        let registration_token_ttl = match &raw.runner.registration_token_ttl {
            None => Duration::from_secs(3600),
            Some(text) => parse_interval(text).ok_or_else(|| ConfigError::Invalid {
                key: "runner.registration_token_ttl".into(),
                message: format!(
                    "`{text}` is not a duration of at least one second like 30s, 5m, 1h or 1m30s"
                ),
            })?,
        };
        let max_connections = raw.http.max_connections.unwrap_or(1024);
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(ConfigError::Invalid {
                key: "http.max_connections".into(),
                message: format!("must be between 1 and 1000000, got {max_connections}"),
            });
        }
        let idle_timeout = match &raw.http.idle_timeout {
            None => Duration::from_secs(30),
            Some(text) => parse_interval(text).ok_or_else(|| ConfigError::Invalid {
                key: "http.idle_timeout".into(),
                message: format!(
                    "`{text}` is not a duration of at least one second like 30s, 5m, 1h or 1m30s"
                ),
            })?,
        };
        let monitors = crate::notify::check_monitors(raw.monitors)?;
        let channels = crate::notify::check_channels(raw.notify)?;
        let protections = crate::environments::check(raw.environments)?;
        Ok(Config {
            protections,
            monitors,
            channels,
            max_connections,
            idle_timeout,
            registration_token_ttl,
            config_file: None,
            job_user,
            confine_jobs,
            runner_images,
            writable_paths: raw.runner.writable_paths,
            artifact_retention_days,
            gc_interval,
            public_url_configured: raw.public_url.is_some(),
            public_url: raw.public_url.unwrap_or_else(|| format!("http://{listen}")),
            server_id: raw.server_id.filter(|s| !s.trim().is_empty()),
            database_url: raw.database_url,
            lease_ms: i64::try_from(lease_seconds * 1000).unwrap_or(30_000),
            max_attempts,
            listen,
            data_dir,
            admin_token: raw.auth.admin_token,
            metrics_token: raw.auth.metrics_token,
            embedded_capacity: raw.runner.embedded_capacity.unwrap_or(2),
            repos,
            secret_key: None,
            admin_password: None,
        })
    }

    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.repos.iter().find(|r| r.name == name)
    }
}

/// Where the mirror of a polled repository lives: `data_dir/mirrors/<name>.git`, the name
/// percent-escaped so that `acme/app` and `acme_app` get different directories and no name
/// leaves `mirrors/`.
fn mirror_path(data_dir: &Path, name: &str) -> PathBuf {
    let mut escaped = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            escaped.push(char::from(b));
        } else {
            escaped.push_str(&format!("%{b:02X}"));
        }
    }
    data_dir.join("mirrors").join(format!("{escaped}.git"))
}

/// A duration in pipewright's one grammar ([`workflow::duration::parse_duration`]: `30s`,
/// `5m`, `1h`, `1m30s`, `1.5m`) of at least one second (a fetch or a collection more often
/// than that is a mistake, not a setting).
pub(crate) fn parse_interval(text: &str) -> Option<Duration> {
    workflow::duration::parse_duration(text).filter(|d| *d >= Duration::from_secs(1))
}

/// A URL with its credentials replaced, for logs and `Debug`: the password of
/// `user:password@`, or the whole user part of an HTTP URL (`https://TOKEN@host/...` is how
/// forges take tokens). An ssh user (`ssh://git@host`) is not a secret and stays.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:<redacted>"),
        None if scheme.starts_with("http") => "<redacted>".to_owned(),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(toml_text).expect("valid TOML");
        Config::check(raw)
    }

    fn invalid(toml_text: &str) -> (String, String) {
        match load(toml_text) {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn intervals() {
        for (text, secs) in [
            ("1s", Some(1)),
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("1h", Some(3600)),
            ("1m30s", Some(90)),
            (" 2m ", Some(120)),
            ("0s", None),
            ("30", None),
            ("s", None),
            ("", None),
            ("5 m", None),
            ("1.5m", Some(90)),
            ("0.5s", None),
            ("-1s", None),
            ("10d", None),
            ("99999999999999999999s", None),
            ("9999999999999999h", None),
        ] {
            assert_eq!(
                parse_interval(text),
                secs.map(Duration::from_secs),
                "`{text}`"
            );
        }
    }

    #[test]
    fn runner_images_map_labels_to_local_images_for_jobs_that_reach_docker() {
        let c = load(
            "data_dir = \"/d\"\n[runner]\nisolation = \"none\"\nimages = { ubuntu-latest = \"my/image:1\" }\n",
        )
        .unwrap();
        assert_eq!(
            c.runner_images,
            [("ubuntu-latest".to_owned(), "my/image:1".to_owned())]
        );
        assert_eq!(
            invalid("data_dir = \"/d\"\n[runner]\nimages = { ubuntu-latest = \"my/image:1\" }\n").0,
            "runner.images",
            "confined jobs without a job user have no broker to reach Docker through"
        );
        let brokered = load(
            "data_dir = \"/d\"\n[runner]\njob_user = \"pipewright-job\"\nimages = { ubuntu-latest = \"my/image:1\" }\n",
        )
        .unwrap();
        assert_eq!(brokered.runner_images.len(), 1);
        assert_eq!(
            invalid("data_dir = \"/d\"\n[runner]\nisolation = \"none\"\nimages = { x = \" \" }\n")
                .0,
            "runner.images.x"
        );
    }

    #[test]
    fn a_url_repository_is_polled_into_a_mirror() {
        let c = load(
            "data_dir = \"/d\"\n[[repos]]\nname = \"acme/app\"\nurl = \"https://u:pw@example.com/app.git\"\npoll_interval = \"5m\"\n[[repos]]\nname = \"acme_app\"\nurl = \"/srv/app\"\n",
        )
        .unwrap();
        assert_eq!(c.repos[0].path, Path::new("/d/mirrors/acme%2Fapp.git"));
        let poll = c.repos[0].poll.as_ref().unwrap();
        assert_eq!(poll.interval, Duration::from_secs(300));
        assert_eq!(c.repos[1].path, Path::new("/d/mirrors/acme_app.git"));
        assert_eq!(
            c.repos[1].poll.as_ref().unwrap().interval,
            DEFAULT_POLL_INTERVAL
        );
        let debug = format!("{c:?}");
        assert!(
            debug.contains("https://u:<redacted>@example.com/app.git") && !debug.contains("pw@"),
            "{debug}"
        );
        let local = load("[[repos]]\nname = \"a\"\npath = \"/srv/a.git\"\n").unwrap();
        assert!(local.repos[0].poll.is_none());
    }

    #[test]
    fn repository_source_errors_name_the_repository_and_key() {
        let (key, message) =
            invalid("[[repos]]\nname = \"a\"\nurl = \"/srv/a\"\npoll_interval = \"soon\"\n");
        assert_eq!(key, "repos.a.poll_interval");
        assert!(message.contains("`soon` is not a duration"), "{message}");
        let (key, message) =
            invalid("[[repos]]\nname = \"a\"\npath = \"/a.git\"\nurl = \"/srv/a\"\n");
        assert_eq!(key, "repos.a");
        assert!(message.contains("both `path` and `url`"), "{message}");
        let (key, message) = invalid("[[repos]]\nname = \"a\"\n");
        assert_eq!(key, "repos.a");
        assert!(message.contains("needs `path`"), "{message}");
        let (key, message) =
            invalid("[[repos]]\nname = \"a\"\npath = \"/a.git\"\npoll_interval = \"1m\"\n");
        assert_eq!(key, "repos.a.poll_interval");
        assert!(message.contains("only applies to a `url`"), "{message}");
        let (key, _) = invalid("[[repos]]\nname = \"a\"\nurl = \"\"\n");
        assert_eq!(key, "repos.a.url");
        let (key, _) = invalid("[[repos]]\nname = \"\"\nurl = \"/srv/a\"\n");
        assert_eq!(key, "repos.name");
    }

    #[test]
    fn artifact_retention_defaults_to_90_days_and_env_wins() {
        let c = load("").unwrap();
        assert_eq!(c.artifact_retention_days, 90);
        assert_eq!(c.gc_interval, DEFAULT_GC_INTERVAL);
        let c = load("[artifacts]\nretention_days = 7\ngc_interval = \"10m\"\n").unwrap();
        assert_eq!(c.artifact_retention_days, 7);
        assert_eq!(c.gc_interval, Duration::from_secs(600));
        let (key, _) = invalid("[artifacts]\nretention_days = 0\n");
        assert_eq!(key, "artifacts.retention_days");
        let (key, _) = invalid("[artifacts]\ngc_interval = \"often\"\n");
        assert_eq!(key, "artifacts.gc_interval");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[artifacts]\nretention_days = 7\n").unwrap();
        let env = [(
            "PIPEWRIGHT_ARTIFACTS_RETENTION_DAYS".to_owned(),
            "30".to_owned(),
        )];
        assert_eq!(
            Config::load(Some(&file), &env)
                .unwrap()
                .artifact_retention_days,
            30
        );
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("https://bot:s3cret@git.example.com/a/b.git"),
            "https://bot:<redacted>@git.example.com/a/b.git"
        );
        assert_eq!(redact_url("git@host:a/b.git"), "git@host:a/b.git");
        assert_eq!(redact_url("/srv/git/a"), "/srv/git/a");
        assert_eq!(
            redact_url("ssh://git@host/a@b.git"),
            "ssh://git@host/a@b.git"
        );
        assert_eq!(
            redact_url("https://ghp_token@github.com/a/b"),
            "https://<redacted>@github.com/a/b"
        );
    }
}
