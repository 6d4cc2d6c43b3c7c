//! Which workflows an event fires, by GitHub's rules for `branches`, `tags`, `paths` (and
//! their `-ignore` forms) and `types`.

use crate::filter::{Filter, PatternError, PatternKind};

/// An event as far as triggering is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `push`, `pull_request`, `workflow_dispatch`, `schedule`, ...
    pub name: String,
    /// `push`: the pushed ref (`refs/heads/main`, `refs/tags/v1`).
    pub git_ref: Option<String>,
    /// `pull_request`: the base (target) branch, without `refs/heads/`.
    pub base_branch: Option<String>,
    /// The activity type (`opened`, `synchronize`, ...), for events that have types.
    pub action: Option<String>,
    /// The files the event changed; `None` when unknown (path filters then pass).
    pub changed_paths: Option<Vec<String>>,
}

/// The filters of one `on.<event>` entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filters<'a> {
    pub branches: Option<&'a [String]>,
    pub branches_ignore: Option<&'a [String]>,
    pub tags: Option<&'a [String]>,
    pub tags_ignore: Option<&'a [String]>,
    pub paths: Option<&'a [String]>,
    pub paths_ignore: Option<&'a [String]>,
    pub types: Option<&'a [String]>,
}

/// A filter pattern that does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {source}")]
pub struct TriggerError {
    pub pattern: String,
    #[source]
    pub source: PatternError,
}

fn filter(patterns: &[String], kind: PatternKind) -> Result<Filter, TriggerError> {
    Filter::new(patterns, kind).map_err(|(i, source)| TriggerError {
        pattern: patterns.get(i).cloned().unwrap_or_default(),
        source,
    })
}

/// The activity types an event fires for when `types` is not given.
fn default_types(event: &str) -> Option<&'static [&'static str]> {
    match event {
        "pull_request" | "pull_request_target" => Some(&["opened", "synchronize", "reopened"]),
        _ => None,
    }
}

/// Whether the filters of a workflow's `on.<event>` let `event` through.
pub fn fires(f: &Filters<'_>, event: &Event) -> Result<bool, TriggerError> {
    // Activity types.
    if let Some(action) = &event.action {
        let ok = match f.types {
            Some(types) => types.iter().any(|t| t == action),
            None => default_types(&event.name).is_none_or(|d| d.contains(&action.as_str())),
        };
        if !ok {
            return Ok(false);
        }
    }
    match event.name.as_str() {
        "push" => {
            let Some(r) = &event.git_ref else {
                return Ok(true);
            };
            let has_branch_filter = f.branches.is_some() || f.branches_ignore.is_some();
            let has_tag_filter = f.tags.is_some() || f.tags_ignore.is_some();
            if let Some(tag) = r.strip_prefix("refs/tags/") {
                // Only branch filters: tag pushes do not run. Paths are not checked for tags.
                if has_branch_filter && !has_tag_filter {
                    return Ok(false);
                }
                return ref_ok(f.tags, f.tags_ignore, tag);
            }
            let branch = r.strip_prefix("refs/heads/").unwrap_or(r);
            if has_tag_filter && !has_branch_filter {
                return Ok(false);
            }
            if !ref_ok(f.branches, f.branches_ignore, branch)? {
                return Ok(false);
            }
            paths_ok(f, event)
        }
        "pull_request" | "pull_request_target" => {
            if let Some(base) = &event.base_branch {
                let base = base.strip_prefix("refs/heads/").unwrap_or(base);
                if !ref_ok(f.branches, f.branches_ignore, base)? {
                    return Ok(false);
                }
            }
            paths_ok(f, event)
        }
        "workflow_run" => match &event.git_ref {
            Some(r) => ref_ok(
                f.branches,
                f.branches_ignore,
                r.strip_prefix("refs/heads/").unwrap_or(r),
            ),
            None => Ok(true),
        },
        _ => Ok(true),
    }
}

fn ref_ok(
    include: Option<&[String]>,
    ignore: Option<&[String]>,
    name: &str,
) -> Result<bool, TriggerError> {
    if let Some(p) = include {
        return Ok(filter(p, PatternKind::Ref)?.matches(name));
    }
    if let Some(p) = ignore {
        return Ok(!filter(p, PatternKind::Ref)?.matches(name));
    }
    Ok(true)
}

fn paths_ok(f: &Filters<'_>, event: &Event) -> Result<bool, TriggerError> {
    let Some(changed) = &event.changed_paths else {
        return Ok(true);
    };
    if let Some(p) = f.paths {
        return Ok(filter(p, PatternKind::Path)?.matches_any(changed));
    }
    if let Some(p) = f.paths_ignore {
        return Ok(!filter(p, PatternKind::Path)?.matches_all(changed));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn push(r: &str, paths: Option<&[&str]>) -> Event {
        Event {
            name: "push".into(),
            git_ref: Some(r.into()),
            changed_paths: paths.map(s),
            ..Event::default()
        }
    }

    #[test]
    fn branches_and_tags() {
        let b = s(&["main", "releases/**"]);
        let f = Filters {
            branches: Some(&b),
            ..Filters::default()
        };
        assert!(fires(&f, &push("refs/heads/main", None)).unwrap());
        assert!(fires(&f, &push("refs/heads/releases/v1/x", None)).unwrap());
        assert!(!fires(&f, &push("refs/heads/dev", None)).unwrap());
        // Only branch filters: tags do not fire.
        assert!(!fires(&f, &push("refs/tags/v1", None)).unwrap());
        let none = Filters::default();
        assert!(fires(&none, &push("refs/tags/v1", None)).unwrap());
    }

    #[test]
    fn paths_need_both() {
        let b = s(&["main"]);
        let p = s(&["src/**"]);
        let f = Filters {
            branches: Some(&b),
            paths: Some(&p),
            ..Filters::default()
        };
        assert!(
            fires(
                &f,
                &push("refs/heads/main", Some(&["src/a.py", "README.md"]))
            )
            .unwrap()
        );
        assert!(!fires(&f, &push("refs/heads/main", Some(&["README.md"]))).unwrap());
        let ig = s(&["docs/**"]);
        let f = Filters {
            paths_ignore: Some(&ig),
            ..Filters::default()
        };
        assert!(!fires(&f, &push("refs/heads/main", Some(&["docs/a.md"]))).unwrap());
        assert!(fires(&f, &push("refs/heads/main", Some(&["docs/a.md", "app.py"]))).unwrap());
    }

    #[test]
    fn pull_requests_filter_on_base_and_types() {
        let b = s(&["main", "development"]);
        let f = Filters {
            branches: Some(&b),
            ..Filters::default()
        };
        let mut e = Event {
            name: "pull_request".into(),
            base_branch: Some("development".into()),
            action: Some("opened".into()),
            ..Event::default()
        };
        assert!(fires(&f, &e).unwrap());
        e.action = Some("closed".into());
        assert!(!fires(&f, &e).unwrap());
        e.action = Some("opened".into());
        e.base_branch = Some("feature".into());
        assert!(!fires(&f, &e).unwrap());
    }
}
