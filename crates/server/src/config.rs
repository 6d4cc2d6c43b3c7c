//! Server configuration: defaults, then a TOML file, then `PIPEWRIGHT_*` environment
//! variables. The raw file ([`RawConfig`]) and the checked result ([`Config`]) are different
//! types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub runner: RawRunner,
    #[serde(default)]
    pub repos: Vec<RawRepo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub admin_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRunner {
    pub embedded_capacity: Option<usize>,
    /// Seconds a job's lease lasts without a heartbeat before its runner counts as lost.
    pub lease_seconds: Option<u64>,
    /// Attempts a job gets when its runner is lost (1 = no retry).
    pub max_attempts: Option<i64>,
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
}

/// A repository the server builds.
#[derive(Clone)]
pub struct RepoConfig {
    pub name: String,
    /// A local bare repository.
    pub path: PathBuf,
    pub webhook_secret: Option<String>,
    pub default_branch: String,
    /// Where to post commit statuses, if anywhere.
    pub forge: Option<Forge>,
}

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
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("default_branch", &self.default_branch)
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
    pub admin_token: Option<String>,
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
            .field("embedded_capacity", &self.embedded_capacity)
            .field("lease_ms", &self.lease_ms)
            .field("max_attempts", &self.max_attempts)
            .field("repos", &self.repos)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
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
        for (k, v) in env {
            match k.as_str() {
                "PIPEWRIGHT_SECRET_KEY" => secret_key = Some(v.clone()),
                "PIPEWRIGHT_LISTEN" => raw.listen = Some(v.clone()),
                "PIPEWRIGHT_DATA_DIR" => raw.data_dir = Some(PathBuf::from(v)),
                "PIPEWRIGHT_DATABASE_URL" => raw.database_url = Some(v.clone()),
                "PIPEWRIGHT_PUBLIC_URL" => raw.public_url = Some(v.clone()),
                "PIPEWRIGHT_ADMIN_TOKEN" => raw.auth.admin_token = Some(v.clone()),
                "PIPEWRIGHT_EMBEDDED_CAPACITY" => {
                    raw.runner.embedded_capacity =
                        Some(v.parse().map_err(|_| ConfigError::Invalid {
                            key: k.clone(),
                            message: format!("`{v}` is not a number"),
                        })?);
                }
                _ => {}
            }
        }
        let mut config = Config::check(raw)?;
        config.secret_key = secret_key;
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
            if r.url.is_some() || r.poll_interval.is_some() {
                return Err(ConfigError::Invalid {
                    key: format!("repos.{}", r.name),
                    message: "`url` repositories (polling) are not supported yet; use `path`"
                        .into(),
                });
            }
            let Some(path) = r.path else {
                return Err(ConfigError::Invalid {
                    key: format!("repos.{}", r.name),
                    message: "needs `path` (a local bare repository)".into(),
                });
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
            repos.push(RepoConfig {
                name: r.name,
                path,
                webhook_secret: r.webhook_secret,
                default_branch: r.default_branch.unwrap_or_else(|| "main".into()),
                forge,
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
        Ok(Config {
            public_url: raw.public_url.unwrap_or_else(|| format!("http://{listen}")),
            database_url: raw.database_url,
            lease_ms: i64::try_from(lease_seconds * 1000).unwrap_or(30_000),
            max_attempts,
            listen,
            data_dir,
            admin_token: raw.auth.admin_token,
            embedded_capacity: raw.runner.embedded_capacity.unwrap_or(2),
            repos,
            secret_key: None,
        })
    }

    pub fn repo(&self, name: &str) -> Option<&RepoConfig> {
        self.repos.iter().find(|r| r.name == name)
    }
}
