//! `.pipewright/deploy.yml`: the file as written (a YAML tree with positions) checked into a
//! [`DeployConfig`], with every problem reported as a [`Diagnostic`] pointing at its place.
//!
//! Pure: the caller reads the file. What a host needs to run a deploy is [`Settings`], which
//! is serialisable and sent to the host-side agent as it is.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use workflow::duration::parse_duration;
use workflow::yaml::{self, Node, NodeKind};
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
    fn error(&mut self, message: impl Into<String>, span: Span, expected: &str) {
        self.diags
            .push(Diagnostic::error(message, span).with_label(format!("expected {expected}")));
    }

    /// The entries of a mapping, reporting unknown keys.
    fn map<'n>(&mut self, node: &'n Node, what: &str, keys: &[&str]) -> Option<&'n [(Node, Node)]> {
        let Some(entries) = node.as_map() else {
            self.error(
                format!("{what} must be a mapping, found {}", node.describe()),
                node.span,
                "a mapping",
            );
            return None;
        };
        for (k, _) in entries {
            let name = k.as_str().unwrap_or_default();
            if !keys.contains(&name) {
                self.diags.push(
                    Diagnostic::error(format!("unknown key `{name}` in {what}"), k.span)
                        .with_label(format!("expected one of: {}", keys.join(", "))),
                );
            }
        }
        Some(entries)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(s, _) if !node.is_null() => Some(s.clone()),
            _ => {
                self.error(
                    format!("{what} must be a string, found {}", node.describe()),
                    node.span,
                    "a string",
                );
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        if let Some(s) = node.as_str()
            && !node.is_null()
        {
            return vec![s.to_owned()];
        }
        let Some(items) = node.as_seq() else {
            self.error(
                format!(
                    "{what} must be a list of strings, found {}",
                    node.describe()
                ),
                node.span,
                "a list of strings",
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| self.string(i, &format!("an item of {what}")))
            .collect()
    }

    fn integer(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u64> {
        let n = match node.scalar() {
            Some(yaml::Scalar::Number(n)) if n.fract() == 0.0 => n,
            _ => {
                self.error(
                    format!("{what} must be a whole number, found {}", node.describe()),
                    node.span,
                    &format!("a whole number from {min} to {max}"),
                );
                return None;
            }
        };
        if n < min as f64 || n > max as f64 {
            self.error(
                format!("{what} is {n}, out of range"),
                node.span,
                &format!("a whole number from {min} to {max}"),
            );
            return None;
        }
        Some(n as u64)
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<u64> {
        let d = node.as_str().and_then(parse_duration);
        if d.is_none() {
            self.error(
                format!(
                    "{what} `{}` is not a duration",
                    node.as_str().unwrap_or_default()
                ),
                node.span,
                "a duration such as 500ms, 5s, 2m",
            );
        }
        d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// A path below the deploy path or `shared/`: relative and without `..`.
    fn relative_paths(&mut self, node: &Node, what: &str) -> Vec<String> {
        let items = self.strings(node, what);
        let bad = items.iter().any(|p| {
            p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".")
        });
        if bad {
            self.error(
                format!("{what} must be relative paths inside the directory"),
                node.span,
                "paths such as `.env` or `data/uploads`, without `..`",
            );
            return Vec::new();
        }
        items
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_owned())
            .collect()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_may_have_their_own_path_and_variables() {
        let p = parse(
            "app: a\nenvironments:\n  prod:\n    hosts:\n      - web-1\n      - {host: web-2, path: /srv/b, env: {PORT: '8001'}}\n    path: /srv/a\n    env: {PORT: '8000'}\n",
        );
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let env = &p.config.unwrap().environments["prod"];
        assert_eq!(env.hosts, ["web-1", "web-2"]);
        assert_eq!(env.host_path["web-2"], "/srv/b");
        assert_eq!(env.host_env["web-2"]["PORT"], "8001");
        assert_eq!(env.settings.env["PORT"], "8000");
        assert_eq!(env.batch, 2);
        assert_eq!(env.settings.restore_database, RestoreDatabase::OnMigration);
    }

    #[test]
    fn a_server_watches_each_host_at_its_health_url_seen_from_outside() {
        let env = |health: &str| {
            let p = parse(&format!(
                "app: a\nenvironments:\n  prod:\n    hosts:\n      - deploy@web-1.example.com\n      - {{host: 'ssh://deploy@10.0.0.2:2222', env: {{PORT: '8001'}}}}\n      - alias-3\n    path: /srv/a\n    env: {{PORT: '8000'}}\n{health}"
            ));
            assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
            p.config.unwrap().environments["prod"].clone()
        };
        // Loopback becomes the host's name; the host's own variables fill the URL in.
        let e = env("    health: {url: 'http://127.0.0.1:${PORT}/health'}\n");
        let vars = e.settings.env.clone();
        // What ssh would say of the alias.
        let ssh = |h: &str| (h == "alias-3").then(|| "10.0.0.3".to_owned());
        let urls = |e: &Environment| e.monitor_urls(&e.settings.env, &ssh);
        assert_eq!(
            e.monitor_urls(&vars, &ssh),
            [
                (
                    "deploy@web-1.example.com".to_owned(),
                    "http://web-1.example.com:8000/health".to_owned()
                ),
                (
                    "ssh://deploy@10.0.0.2:2222".to_owned(),
                    "http://10.0.0.2:8001/health".to_owned()
                ),
                (
                    "alias-3".to_owned(),
                    "http://10.0.0.3:8000/health".to_owned()
                ),
            ]
        );
        assert_eq!(
            e.settings.health.as_ref().unwrap().monitor.interval_ms,
            60_000
        );
        // A URL that is not loopback is watched as it is, once.
        let e = env("    health: {url: 'http://app.internal/health'}\n");
        assert_eq!(urls(&e).len(), 1);
        assert_eq!(urls(&e)[0].1, "http://app.internal/health");
        // Its own URL and interval, or none.
        let e = env(
            "    health:\n      url: http://127.0.0.1:8000/\n      monitor: {url: 'https://app.example.com/health', interval: 30s}\n",
        );
        assert_eq!(
            urls(&e),
            [(String::new(), "https://app.example.com/health".to_owned())]
        );
        assert_eq!(
            e.settings.health.as_ref().unwrap().monitor.interval_ms,
            30_000
        );
        let e = env("    health:\n      url: http://127.0.0.1:8000/\n      monitor: false\n");
        assert!(urls(&e).is_empty());
        assert!(urls(&env("")).is_empty());
    }

    #[test]
    fn a_bad_monitor_is_reported_where_it_is() {
        for (monitor, says) in [
            (
                "ftp://x/",
                "`health.monitor.url` `ftp://x/` is not an http:// or https:// URL",
            ),
            (
                "{interval: 10ms}",
                "`health.monitor.interval` is under a second",
            ),
            ("{every: 1m}", "unknown key `every` in `health.monitor`"),
            ("[1]", "`health.monitor` must be `false`, a URL"),
        ] {
            let p = parse(&format!(
                "app: a\nenvironments:\n  prod:\n    hosts: [h]\n    path: /srv/a\n    health:\n      url: http://127.0.0.1/\n      monitor: {monitor}\n"
            ));
            assert!(
                p.diagnostics.iter().any(|d| d.message.starts_with(says)),
                "{monitor}: {:?}",
                p.diagnostics
            );
        }
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let p = parse(
            "app: a\nenvironments:\n  s:\n    hosts: []\n    path: x\n    keep_releases: 0\n",
        );
        assert!(p.config.is_none());
        let lines: Vec<u32> = p.diagnostics.iter().map(|d| d.span.start.line).collect();
        assert_eq!(lines, [4, 5, 6], "{:?}", p.diagnostics);
    }

    #[test]
    fn hooks_have_a_timeout_of_their_own_or_thirty_minutes() {
        let env = |hooks: &str| {
            parse(&format!(
                "app: a\nenvironments:\n  s:\n    hosts: [h]\n    path: /srv/a\n    hooks: {hooks}\n"
            ))
        };
        let p = env("{migrate: m, timeout: 90s}");
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        let hooks = &p.config.unwrap().environments["s"].settings.hooks;
        assert_eq!(hooks.timeout(), Duration::from_secs(90));
        let p = env("{migrate: m}");
        let hooks = &p.config.unwrap().environments["s"].settings.hooks;
        assert_eq!(hooks.timeout(), Duration::from_secs(30 * 60));
        for bad in ["{timeout: 0s}", "{timeout: soon}"] {
            let p = env(bad);
            assert!(p.config.is_none(), "{bad}");
            assert_eq!(p.diagnostics.len(), 1, "{bad}: {:?}", p.diagnostics);
            assert!(
                p.diagnostics[0].message.contains("`hooks.timeout`"),
                "{:?}",
                p.diagnostics
            );
            assert_eq!(p.diagnostics[0].span.start.line, 6, "{:?}", p.diagnostics);
        }
    }
}
