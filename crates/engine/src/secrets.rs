//! The secrets of a run, as a type that masks what it holds: every value put here is
//! registered with the run's [`Masker`] as it goes in, so no caller can add a secret and
//! forget to hide it.

use std::collections::HashMap;

use expr::{Map, Value};

use crate::mask::Masker;

/// The secrets a run may use: its own (`secrets.<name>`), those of deployment environments
/// (a job sees an environment's only when its `environment:` names it), and the masker that
/// hides all of them.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    run: Map,
    environments: HashMap<String, Map>,
    masker: Masker,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// A secret of the run, masked from now on.
    pub fn insert(&mut self, name: impl Into<String>, value: &str) {
        self.masker.add(value);
        self.run.insert(name.into(), Value::from(value));
    }

    /// A secret of deployment environment `environment`, masked from now on.
    pub fn insert_for(&mut self, environment: &str, name: impl Into<String>, value: &str) {
        self.masker.add(value);
        self.environments
            .entry(environment.to_owned())
            .or_default()
            .insert(name.into(), Value::from(value));
    }

    /// Hides a value that is no secret of any name (a job's token, a value a step masks).
    pub fn hide(&self, value: &str) {
        self.masker.add(value);
    }

    /// The masker that hides every value put here (clones share it).
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// The run's secrets by name.
    pub fn run(&self) -> &Map {
        &self.run
    }

    /// Environment `name`'s secrets, if it has any.
    pub fn environment(&self, name: &str) -> Option<&Map> {
        self.environments.get(name)
    }

    /// Every deployment environment's secrets, by environment.
    pub fn environments(&self) -> impl Iterator<Item = (&str, &Map)> {
        self.environments.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The same secrets with the run's replaced by `run` (a called workflow's, passed by its
    /// caller), masked as well; the masker is shared.
    pub(crate) fn with_run(&self, run: Map) -> Secrets {
        for v in run.values() {
            self.masker.add(&v.to_expr_string());
        }
        Secrets {
            run,
            environments: self.environments.clone(),
            masker: self.masker.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatever_goes_in_is_masked_and_environments_stay_apart() {
        let mut s = Secrets::new();
        s.insert("API_KEY", "sk-live-123");
        s.insert_for("production", "SSH_KEY", "line one\nline two");
        s.hide("job-token-xyz");
        let shown = s
            .masker()
            .mask("sk-live-123 line one line two job-token-xyz");
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(!shown.contains("line one"), "{shown}");
        assert!(!shown.contains("job-token"), "{shown}");
        assert_eq!(s.run().len(), 1);
        assert!(s.environment("production").is_some());
        assert!(s.environment("staging").is_none());
        let mut called = Map::new();
        called.insert("PASSED".into(), Value::from("passed-on-value"));
        let inner = s.with_run(called);
        assert!(inner.run().contains_key("PASSED"));
        // The masker is shared: the caller's lines hide the called workflow's values too.
        assert!(!s.masker().mask("passed-on-value").contains("passed-on"));
    }
}
