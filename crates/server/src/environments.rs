//! Environment protection (`[[environments]]` of the server's configuration), as GitHub's
//! environment protection rules: a job whose `environment:` is protected waits (`waiting`)
//! until someone approves it (`require_approval`), and runs only for the branches the
//! environment takes (`branches`, GitHub's branch patterns).
//!
//! The rules live in the server's configuration, not in the repository: a pull request
//! cannot lower the protection of the environment it would deploy to.

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnvironment {
    pub name: String,
    /// The repositories it applies to (all when absent).
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub require_approval: bool,
    /// The branches whose runs may use it (GitHub's patterns: `main`, `release/*`).
    pub branches: Option<Vec<String>>,
}

/// A protected environment.
#[derive(Clone)]
pub struct Protection {
    pub name: String,
    pub repos: Vec<String>,
    pub require_approval: bool,
    /// The branches that may use it, as written, and compiled.
    pub branches: Option<(Vec<String>, plan::filter::Filter)>,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("name", &self.name)
            .field("repos", &self.repos)
            .field("require_approval", &self.require_approval)
            .field("branches", &self.branches.as_ref().map(|(b, _)| b))
            .finish()
    }
}

impl Protection {
    /// Why a run of `git_ref` may not use this environment, if it may not.
    pub(crate) fn refuses(&self, git_ref: &str) -> Option<String> {
        let (written, filter) = self.branches.as_ref()?;
        let allowed = git_ref
            .strip_prefix("refs/heads/")
            .is_some_and(|branch| filter.matches(branch));
        (!allowed).then(|| {
            format!(
                "environment `{}` takes deploys from the branches {} only, not from `{git_ref}`",
                self.name,
                written
                    .iter()
                    .map(|b| format!("`{b}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// The protection of environment `name` of `repo`, if any.
pub(crate) fn protection_of<'a>(
    list: &'a [Protection],
    repo: &str,
    name: &str,
) -> Option<&'a Protection> {
    list.iter()
        .find(|p| p.name == name && (p.repos.is_empty() || p.repos.iter().any(|r| r == repo)))
}

pub(crate) fn check(raw: Vec<RawEnvironment>) -> Result<Vec<Protection>, ConfigError> {
    let mut out: Vec<Protection> = Vec::new();
    for e in raw {
        let key = |k: &str| format!("environments.{}{k}", e.name);
        if e.name.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "environments.name".into(),
                message: "an environment needs a non-empty `name`".into(),
            });
        }
        let overlaps = |o: &Protection| {
            o.name == e.name
                && (o.repos.is_empty()
                    || e.repos.is_empty()
                    || o.repos.iter().any(|r| e.repos.contains(r)))
        };
        if out.iter().any(overlaps) {
            return Err(ConfigError::Invalid {
                key: key(""),
                message: "is defined twice for the same repository".into(),
            });
        }
        let branches = match e.branches {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(ConfigError::Invalid {
                    key: key(".branches"),
                    message: "is empty: no branch could deploy (remove it to let any)".into(),
                });
            }
            Some(list) => {
                let filter = plan::filter::Filter::new(&list, plan::filter::PatternKind::Ref)
                    .map_err(|(i, err)| ConfigError::Invalid {
                        key: key(".branches"),
                        message: format!("`{}`: {err}", list[i]),
                    })?;
                Some((list, filter))
            }
        };
        out.push(Protection {
            name: e.name,
            repos: e.repos,
            require_approval: e.require_approval,
            branches,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, branches: Option<&[&str]>) -> RawEnvironment {
        RawEnvironment {
            name: name.into(),
            repos: Vec::new(),
            require_approval: true,
            branches: branches.map(|b| b.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn branches_are_github_patterns_and_other_refs_are_refused() {
        let list = check(vec![raw("production", Some(&["main", "release/*"]))]).unwrap();
        let p = protection_of(&list, "acme/app", "production").unwrap();
        assert_eq!(p.refuses("refs/heads/main"), None);
        assert_eq!(p.refuses("refs/heads/release/2.0"), None);
        assert_eq!(
            p.refuses("refs/heads/feature").as_deref(),
            Some(
                "environment `production` takes deploys from the branches `main`, `release/*` only, not from `refs/heads/feature`"
            )
        );
        assert!(p.refuses("refs/pull/3/merge").is_some());
        assert!(p.refuses("refs/tags/v1").is_some());
        assert!(protection_of(&list, "acme/app", "staging").is_none());
    }

    #[test]
    fn bad_rules_name_their_key() {
        let e = check(vec![raw("p", Some(&[]))]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environments.p.branches: is empty"),
            "{e}"
        );
        let e = check(vec![raw("p", None), raw("p", None)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environments.p: is defined twice for the same repository"
        );
        let e = check(vec![raw("p", Some(&["[z-a]"]))]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("environments.p.branches: `[z-a]`: "),
            "{e}"
        );
    }
}
