//! `strategy: compose` and its keys (`compose_file`, `compose_project`,
//! `services_to_build`, `compose_drain`), checked into a [`Compose`].

use workflow::yaml::Node;

use super::{Checker, Compose};

const STRATEGIES: &str = "`files` (releases of files, the default) or `compose`";

/// The Compose project name made of the app's and the environment's names, as Compose
/// itself would normalise it (lowercase letters, digits, `-` and `_`).
pub(super) fn default_project(app: &str, environment: &str) -> String {
    format!("{app}-{environment}")
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

impl Checker {
    /// The environment's Compose settings, if its `strategy` is `compose`.
    pub(super) fn compose(&mut self, node: &Node, app: &str, env: &str) -> Option<Compose> {
        let strategy = node.get("strategy");
        let compose = match strategy {
            None => false,
            Some(v) => match self.string(v, "`strategy`").as_deref() {
                Some("compose") => true,
                Some("files") => false,
                Some(other) => {
                    self.error(
                        format!("`strategy` `{other}` is not a deploy strategy"),
                        v.span,
                        STRATEGIES,
                    );
                    false
                }
                None => false,
            },
        };
        let keys = [
            "compose_file",
            "compose_project",
            "services_to_build",
            "compose_drain",
        ];
        if !compose {
            for key in keys {
                if let Some((k, _)) = node
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
                {
                    self.error(
                        format!("`{key}` needs `strategy: compose`"),
                        k.span,
                        "`strategy: compose` beside it, or no Compose keys",
                    );
                }
            }
            return None;
        }
        let file = match node.get("compose_file") {
            Some(v) => self
                .relative_paths(v, "`compose_file`")
                .into_iter()
                .next()
                .unwrap_or_default(),
            // Found in the release: see `compose::file_in`.
            None => String::new(),
        };
        let project = match node.get("compose_project") {
            Some(v) => {
                let p = self.string(v, "`compose_project`").unwrap_or_default();
                let ok = !p.is_empty()
                    && p.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
                    })
                    && p.starts_with(|c: char| c.is_ascii_alphanumeric());
                if !ok {
                    self.error(
                        format!("`compose_project` `{p}` is not a Compose project name"),
                        v.span,
                        "lowercase letters, digits, `-` and `_`, starting with a letter or digit",
                    );
                }
                p
            }
            None => default_project(app, env),
        };
        let build = match node.get("services_to_build") {
            Some(v) => {
                let names = self.strings(v, "`services_to_build`");
                if let Some(bad) = names.iter().find(|n| !is_service_name(n)) {
                    self.error(
                        format!("`services_to_build` names `{bad}`, which is not a service name"),
                        v.span,
                        "the names of services in the compose file",
                    );
                }
                names
            }
            None => Vec::new(),
        };
        let drain_ms = node
            .get("compose_drain")
            .and_then(|v| self.duration(v, "`compose_drain`"))
            .unwrap_or(0);
        Some(Compose {
            file,
            project,
            build,
            drain_ms,
        })
    }
}

/// A Compose service name: letters, digits, `.`, `_` and `-`.
fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
