//! `.pipewright/deploy.yml`: the file as written (a YAML tree with positions) checked into a
//! [`DeployConfig`], with every problem reported as a [`Diagnostic`] pointing at its place.
//!
//! Pure: the caller reads the file. What a host needs to run a deploy is [`Settings`], which
//! is serialisable and sent to the host-side agent as it is.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use workflow::yaml::{self, Node};
use workflow::{Diagnostic, Span};

/// Variables by host.
pub type HostEnv = BTreeMap<String, BTreeMap<String, String>>;

/// The checked configuration of an application's deployments.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub app: String,
    pub environments: IndexMap<String, Environment>,
}

/// One environment: where to deploy (hosts, how to reach them) and what to do there.
#[derive(Debug, Clone)]
pub struct Environment {
    /// OpenSSH destinations; the user's ssh configuration applies.
    pub hosts: Vec<String>,
    /// Variables for one host only (`hosts: [{host: web-2, env: {PORT: "8001"}}]`), over
    /// the environment's.
    pub host_env: HostEnv,
    /// A deploy path for one host only (`hosts: [{host: web-2, path: /srv/app}]`).
    pub host_path: BTreeMap<String, String>,
    /// Another ssh configuration file (`ssh -F`), relative to the repository root.
    pub ssh_config: Option<String>,
    /// A dotenv file (relative to the repository root) whose variables join `env`.
    pub env_file: Option<String>,
    /// How many hosts switch at once (default: all).
    pub batch: usize,
    pub settings: Settings,
}

impl Environment {
    /// What a pipewright server that records a deploy here watches afterwards, as
    /// `(host, URL)`: `health.monitor.url` once for all hosts, else each host's health URL
    /// (its `${NAME}`s filled in from the host's variables over `vars`) with a loopback
    /// address replaced by the host's name: `hostname(destination)` (as ssh resolves it),
    /// else the name in the destination. None without a health check or with
    /// `health.monitor: false`.
    pub fn monitor_urls(
        &self,
        vars: &BTreeMap<String, String>,
        hostname: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<(String, String)> {
        let Some(health) = &self.settings.health else {
            return Vec::new();
        };
        if health.monitor.off {
            return Vec::new();
        }
        if let Some(url) = &health.monitor.url {
            return vec![(String::new(), url.clone())];
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for host in &self.hosts {
            let own = self.host_env.get(host);
            let lookup = |name: &str| {
                own.and_then(|v| v.get(name))
                    .or_else(|| vars.get(name))
                    .cloned()
            };
            let expanded = crate::health::expand(&health.url, &lookup);
            let Ok(mut url) = reqwest::Url::parse(&expanded) else {
                continue;
            };
            let loopback = url.host_str().is_some_and(|h| {
                h.eq_ignore_ascii_case("localhost")
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback() || a.is_unspecified())
            });
            if loopback {
                let name = hostname(host).unwrap_or_else(|| destination_host(host));
                let name = match name.parse::<std::net::Ipv6Addr>() {
                    Ok(_) => format!("[{name}]"),
                    Err(_) => name,
                };
                if url.set_host(Some(&name)).is_err() {
                    continue;
                }
            }
            let url = url.to_string();
            if !out.iter().any(|(_, u)| *u == url) {
                out.push((host.clone(), url));
            }
        }
        out
    }
}

/// The host name of an OpenSSH destination: `user@host`, `ssh://user@host:port`, `host`.
fn destination_host(destination: &str) -> String {
    let rest = destination.strip_prefix("ssh://").unwrap_or(destination);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default().to_owned();
    }
    if destination.starts_with("ssh://") {
        return rest.split(':').next().unwrap_or_default().to_owned();
    }
    rest.to_owned()
}

/// Everything the host-side agent needs to know; sent to it as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub app: String,
    pub environment: String,
    /// The absolute deploy path on the host.
    pub path: String,
    pub keep_releases: usize,
    /// Files and directories under `shared/`, linked into each release.
    pub shared: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub hooks: Hooks,
    pub backup: Backup,
    pub health: Option<Health>,
    pub restore_database: RestoreDatabase,
    /// `strategy: compose`: the release is a Docker Compose stack.
    #[serde(default)]
    pub compose: Option<Compose>,
}

/// A Compose deployment (`strategy: compose`): the release holds the compose file, the
/// images the deployer built (`services_to_build`) and the file naming them; the host runs
/// `docker compose up` with the release's files under one project name, so that named
/// volumes (a database's data) outlive every release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compose {
    /// The compose file, relative to the release (`compose_file`); empty: Compose's own
    /// default names, the first the release has (`compose::file_in`).
    pub file: String,
    /// The Compose project name (`compose_project`; `<app>-<environment>` by default).
    pub project: String,
    /// The services whose images the deployer builds and ships (`services_to_build`).
    pub build: Vec<String>,
    /// How long the old containers of a service replaced without downtime keep serving
    /// after the new ones are healthy (`compose_drain`), so that a proxy that caches DNS
    /// answers finds the new ones before the old ones stop.
    #[serde(default)]
    pub drain_ms: u64,
}

/// Shell commands run on the host in the new release's directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hooks {
    pub install: Option<String>,
    pub migrate: Option<String>,
    pub assets: Option<String>,
    pub restart: Option<String>,
    /// How long one hook (these, and the backup's database commands) may run before it is
    /// stopped and counted as failed; [`Hooks::DEFAULT_TIMEOUT_MS`] if not set.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl Hooks {
    /// 30 minutes: a migration may well take long; a hook must not hang a deploy (and its
    /// lock) forever.
    pub const DEFAULT_TIMEOUT_MS: u64 = 30 * 60 * 1000;

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(Self::DEFAULT_TIMEOUT_MS))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    /// Paths under `shared/` copied before migrating and put back on restore.
    pub paths: Vec<String>,
    pub database_dump: Option<String>,
    pub database_restore: Option<String>,
}

/// An HTTP GET made on the host until it succeeds `successes` times in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub url: String,
    pub expect_status: u16,
    pub contains: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub deadline_ms: u64,
    pub successes: u32,
    /// How a pipewright server watches the environment after it deploys (`health.monitor`).
    #[serde(default)]
    pub monitor: Watch,
}

/// How a pipewright server that records the deploy watches the environment afterwards:
/// by default it requests the health URL from outside (its loopback host replaced by each
/// host's name) every minute; `health.monitor` gives another URL or interval, or `false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    pub off: bool,
    /// The URL to request instead of the health URL (`http://` or `https://`).
    pub url: Option<String>,
    pub interval_ms: u64,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            off: false,
            url: None,
            interval_ms: 60_000,
        }
    }
}

/// When a rollback restores the database from the backup taken before migrating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreDatabase {
    Never,
    Always,
    /// Only if the failed deploy ran a `migrate` hook.
    OnMigration,
}

/// The result of checking a deploy.yml: the configuration if it had no errors, and every
/// diagnostic found.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: Option<DeployConfig>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and checks the text of a deploy.yml.
pub fn parse(src: &str) -> Parsed {
    let root = match yaml::load(src) {
        Ok(root) => root,
        Err(d) => {
            return Parsed {
                config: None,
                diagnostics: vec![d],
            };
        }
    };
    let mut c = Checker { diags: Vec::new() };
    let config = c.config(&root);
    let mut diagnostics = c.diags;
    diagnostics.sort_by_key(|d| d.span.start.offset);
    let config = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        config
    };
    Parsed {
        config,
        diagnostics,
    }
}

struct Checker {
    diags: Vec<Diagnostic>,
}

const TOP_KEYS: &[&str] = &["app", "environments"];
const ENV_KEYS: &[&str] = &[
    "hosts",
    "ssh_config",
    "path",
    "keep_releases",
    "shared",
    "env",
    "env_file",
    "batch",
    "hooks",
    "backup",
    "health",
    "rollback",
    "strategy",
    "compose_file",
    "compose_project",
    "services_to_build",
    "compose_drain",
];
const HOOK_KEYS: &[&str] = &["install", "migrate", "assets", "restart", "timeout"];
const BACKUP_KEYS: &[&str] = &["paths", "database_dump", "database_restore"];
const HEALTH_KEYS: &[&str] = &[
    "url",
    "expect_status",
    "contains",
    "interval",
    "timeout",
    "deadline",
    "successes",
    "monitor",
];
const MONITOR_KEYS: &[&str] = &["url", "interval"];
const ROLLBACK_KEYS: &[&str] = &["restore_database"];

impl Checker {
    fn config(&mut self, root: &Node) -> Option<DeployConfig> {
        let entries = self.map(root, "deploy.yml", TOP_KEYS)?;
        let mut app = None;
        let mut envs_node = None;
        for (k, v) in entries {
            match k.as_str() {
                Some("app") => app = self.string(v, "`app`"),
                Some("environments") => envs_node = Some(v),
                _ => {}
            }
        }
        if app.is_none() && root.get("app").is_none() {
            self.error("`app` is missing", root.span, "`app: NAME`");
        }
        let Some(envs_node) = envs_node else {
            self.error(
                "`environments` is missing",
                root.span,
                "`environments:` with at least one environment",
            );
            return None;
        };
        let Some(env_entries) = envs_node.as_map() else {
            self.error(
                format!(
                    "`environments` must be a mapping, found {}",
                    envs_node.describe()
                ),
                envs_node.span,
                "a mapping of environment names",
            );
            return None;
        };
        if env_entries.is_empty() {
            self.error(
                "`environments` is empty",
                envs_node.span,
                "at least one environment",
            );
        }
        let app = app.unwrap_or_default();
        let mut environments = IndexMap::new();
        for (k, v) in env_entries {
            let name = k.as_str().unwrap_or_default().to_owned();
            if let Some(env) = self.environment(&app, &name, k.span, v) {
                environments.insert(name, env);
            }
        }
        Some(DeployConfig { app, environments })
    }

    fn environment(
        &mut self,
        app: &str,
        name: &str,
        key: Span,
        node: &Node,
    ) -> Option<Environment> {
        let what = format!("environment `{name}`");
        let entries = self.map(node, &what, ENV_KEYS)?;
        let mut env = Environment {
            hosts: Vec::new(),
            host_env: BTreeMap::new(),
            host_path: BTreeMap::new(),
            ssh_config: None,
            env_file: None,
            batch: 0,
            settings: Settings {
                app: app.to_owned(),
                environment: name.to_owned(),
                path: String::new(),
                keep_releases: 5,
                shared: Vec::new(),
                env: std::collections::BTreeMap::new(),
                hooks: Hooks::default(),
                backup: Backup::default(),
                health: None,
                restore_database: RestoreDatabase::OnMigration,
                compose: None,
            },
        };
        let s = &mut env.settings;
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "hosts" => {
                    (env.hosts, env.host_env, env.host_path) = self.hosts(v);
                    if env.hosts.is_empty() && v.as_seq().is_some() {
                        self.error("`hosts` is empty", v.span, "at least one host");
                    }
                }
                "ssh_config" => env.ssh_config = self.string(v, "`ssh_config`"),
                "env_file" => env.env_file = self.string(v, "`env_file`"),
                "path" => {
                    if let Some(p) = self.string(v, "`path`") {
                        if p.starts_with('/') && p.len() > 1 {
                            s.path = p.trim_end_matches('/').to_owned();
                        } else {
                            self.error(
                                format!("`path` `{p}` is not absolute"),
                                v.span,
                                "an absolute path on the host, such as /var/www/app",
                            );
                        }
                    }
                }
                "keep_releases" => {
                    if let Some(n) = self.integer(v, "`keep_releases`", 1, 1000) {
                        s.keep_releases = n as usize;
                    }
                }
                "batch" => {
                    if let Some(n) = self.integer(v, "`batch`", 1, 10_000) {
                        env.batch = n as usize;
                    }
                }
                "shared" => s.shared = self.relative_paths(v, "`shared`"),
                "env" => {
                    if let Some(vars) = v.as_map() {
                        for (vk, vv) in vars {
                            let key = vk.as_str().unwrap_or_default().to_owned();
                            match vv.as_str() {
                                Some(val) if vv.as_seq().is_none() => {
                                    s.env.insert(key, val.to_owned());
                                }
                                _ => self.error(
                                    format!("`env.{key}` must be a string"),
                                    vv.span,
                                    "a string, number or boolean",
                                ),
                            }
                        }
                    } else {
                        self.error(
                            format!("`env` must be a mapping, found {}", v.describe()),
                            v.span,
                            "a mapping of NAME: value",
                        );
                    }
                }
                "hooks" => {
                    if let Some(hooks) = self.map(v, "`hooks`", HOOK_KEYS) {
                        for (hk, hv) in hooks {
                            if hk.as_str() == Some("timeout") {
                                s.hooks.timeout_ms = self.duration(hv, "`hooks.timeout`");
                                if s.hooks.timeout_ms == Some(0) {
                                    self.error(
                                        "`hooks.timeout` must be more than zero",
                                        hv.span,
                                        "a duration such as 90s or 20m",
                                    );
                                }
                                continue;
                            }
                            let cmd = self
                                .string(hv, &format!("hook `{}`", hk.as_str().unwrap_or_default()));
                            match hk.as_str().unwrap_or_default() {
                                "install" => s.hooks.install = cmd,
                                "migrate" => s.hooks.migrate = cmd,
                                "assets" => s.hooks.assets = cmd,
                                "restart" => s.hooks.restart = cmd,
                                _ => {}
                            }
                        }
                    }
                }
                "backup" => {
                    if let Some(b) = self.map(v, "`backup`", BACKUP_KEYS) {
                        for (bk, bv) in b {
                            match bk.as_str().unwrap_or_default() {
                                "paths" => {
                                    s.backup.paths = self.relative_paths(bv, "`backup.paths`");
                                }
                                "database_dump" => {
                                    s.backup.database_dump =
                                        self.string(bv, "`backup.database_dump`");
                                }
                                "database_restore" => {
                                    s.backup.database_restore =
                                        self.string(bv, "`backup.database_restore`");
                                }
                                _ => {}
                            }
                        }
                        if s.backup.database_dump.is_some() != s.backup.database_restore.is_some() {
                            self.error(
                                "`backup` needs both `database_dump` and `database_restore`",
                                k.span,
                                "both commands, or neither",
                            );
                        }
                    }
                }
                "health" => s.health = self.health(v),
                "rollback" => {
                    if let Some(r) = self.map(v, "`rollback`", ROLLBACK_KEYS)
                        && let Some((_, rv)) = r.first()
                    {
                        match rv.as_str() {
                            Some("never") => s.restore_database = RestoreDatabase::Never,
                            Some("always") => s.restore_database = RestoreDatabase::Always,
                            Some("on_migration") => {
                                s.restore_database = RestoreDatabase::OnMigration;
                            }
                            _ => self.error(
                                format!(
                                    "`rollback.restore_database` `{}` is not a policy",
                                    rv.as_str().unwrap_or_default()
                                ),
                                rv.span,
                                "one of: never, always, on_migration",
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
        if node.get("hosts").is_none() {
            self.error(
                format!("{what} has no `hosts`"),
                key,
                "`hosts: [DESTINATION, ...]`",
            );
        }
        if node.get("path").is_none()
            && (env.hosts.is_empty() || env.hosts.iter().any(|h| !env.host_path.contains_key(h)))
        {
            self.error(
                format!("{what} has no `path`"),
                key,
                "`path: /absolute/path/on/the/host`",
            );
        }
        env.settings.compose = self.compose(node, app, name);
        if env.batch == 0 {
            env.batch = env.hosts.len().max(1);
        }
        Some(env)
    }

    /// `hosts`: destinations, or `{host: DESTINATION, env: {...}}` mappings.
    fn hosts(&mut self, node: &Node) -> (Vec<String>, HostEnv, BTreeMap<String, String>) {
        let mut hosts = Vec::new();
        let mut host_env = BTreeMap::new();
        let mut host_path = BTreeMap::new();
        let Some(items) = node.as_seq() else {
            return (self.strings(node, "`hosts`"), host_env, host_path);
        };
        for item in items {
            if item.as_map().is_none() {
                if let Some(h) = self.string(item, "an item of `hosts`") {
                    hosts.push(h);
                }
                continue;
            }
            let Some(entries) = self.map(item, "a host", &["host", "env", "path"]) else {
                continue;
            };
            let mut dest = None;
            let mut path = None;
            let mut vars = BTreeMap::new();
            for (k, v) in entries {
                match k.as_str().unwrap_or_default() {
                    "host" => dest = self.string(v, "`host`"),
                    "path" => match self.string(v, "a host's `path`") {
                        Some(p) if p.starts_with('/') && p.len() > 1 => {
                            path = Some(p.trim_end_matches('/').to_owned());
                        }
                        Some(p) => self.error(
                            format!("`path` `{p}` is not absolute"),
                            v.span,
                            "an absolute path on the host",
                        ),
                        None => {}
                    },
                    "env" => match v.as_map() {
                        Some(m) => {
                            for (vk, vv) in m {
                                if let Some(val) = self.string(vv, "a host's variable") {
                                    vars.insert(vk.as_str().unwrap_or_default().to_owned(), val);
                                }
                            }
                        }
                        None => self.error(
                            format!("a host's `env` must be a mapping, found {}", v.describe()),
                            v.span,
                            "a mapping of NAME: value",
                        ),
                    },
                    _ => {}
                }
            }
            match dest {
                Some(d) => {
                    if let Some(p) = path {
                        host_path.insert(d.clone(), p);
                    }
                    host_env.insert(d.clone(), vars);
                    hosts.push(d);
                }
                None => self.error("a host without `host`", item.span, "`host: DESTINATION`"),
            }
        }
        (hosts, host_env, host_path)
    }

    fn health(&mut self, node: &Node) -> Option<Health> {
        let entries = self.map(node, "`health`", HEALTH_KEYS)?;
        let mut h = Health {
            url: String::new(),
            expect_status: 200,
            contains: None,
            interval_ms: 1000,
            timeout_ms: 5000,
            deadline_ms: 60_000,
            successes: 1,
            monitor: Watch::default(),
        };
        for (k, v) in entries {
            match k.as_str().unwrap_or_default() {
                "url" => {
                    if let Some(u) = self.string(v, "`health.url`") {
                        let sample = crate::health::expand(&u, &|_| Some("1".to_owned()));
                        if crate::health::check_url(&sample).is_ok() {
                            h.url = u;
                        } else {
                            self.error(
                                format!("`health.url` `{u}` is not an http:// URL"),
                                v.span,
                                "a URL such as http://127.0.0.1:8000/health",
                            );
                        }
                    }
                }
                "expect_status" => {
                    if let Some(n) = self.integer(v, "`health.expect_status`", 100, 599) {
                        h.expect_status = n as u16;
                    }
                }
                "contains" => h.contains = self.string(v, "`health.contains`"),
                "interval" => h.interval_ms = self.duration(v, "`health.interval`").unwrap_or(0),
                "timeout" => h.timeout_ms = self.duration(v, "`health.timeout`").unwrap_or(0),
                "deadline" => h.deadline_ms = self.duration(v, "`health.deadline`").unwrap_or(0),
                "successes" => {
                    if let Some(n) = self.integer(v, "`health.successes`", 1, 1000) {
                        h.successes = n as u32;
                    }
                }
                "monitor" => h.monitor = self.watch(v),
                _ => {}
            }
        }
        if node.get("url").is_none() {
            self.error("`health` has no `url`", node.span, "`url: http://...`");
        }
        Some(h)
    }

    /// `health.monitor`: `false`, a URL, or `{url, interval}`.
    fn watch(&mut self, node: &Node) -> Watch {
        let mut w = Watch::default();
        if let Some(yaml::Scalar::Bool(on)) = node.scalar() {
            w.off = !on;
            return w;
        }
        let expected =
            "`false`, a URL such as https://app.example.com/health, or `{url, interval}`";
        let url = |c: &mut Checker, v: &Node| {
            let u = c.string(v, "`health.monitor.url`")?;
            match reqwest::Url::parse(&u) {
                Ok(p)
                    if matches!(p.scheme(), "http" | "https")
                        && p.host_str().is_some_and(|h| !h.is_empty())
                        && p.username().is_empty()
                        && p.password().is_none() =>
                {
                    Some(u)
                }
                _ => {
                    c.error(
                        format!("`health.monitor.url` `{u}` is not an http:// or https:// URL"),
                        v.span,
                        expected,
                    );
                    None
                }
            }
        };
        if node.as_map().is_none() {
            if node.as_str().is_some() && !node.is_null() {
                w.url = url(self, node);
            } else {
                self.error(
                    format!(
                        "`health.monitor` must be {expected}, found {}",
                        node.describe()
                    ),
                    node.span,
                    expected,
                );
            }
            return w;
        }
        for (k, v) in self
            .map(node, "`health.monitor`", MONITOR_KEYS)
            .unwrap_or_default()
        {
            match k.as_str().unwrap_or_default() {
                "url" => w.url = url(self, v),
                "interval" => {
                    if let Some(ms) = self.duration(v, "`health.monitor.interval`") {
                        if ms < 1000 {
                            self.error(
                                "`health.monitor.interval` is under a second",
                                v.span,
                                "a duration of 1s or more, such as 60s",
                            );
                        } else {
                            w.interval_ms = ms;
                        }
                    }
                }
                _ => {}
            }
        }
        w
    }
}

mod compose;
mod read;
#[cfg(test)]
mod tests;
