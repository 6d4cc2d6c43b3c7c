//! Event payloads with the fields GitHub's webhooks have that workflows read
//! (`github.event.repository.default_branch`, `pull_request.head.repo.full_name`,
//! `sender.login`, `head_commit.message`, ...): what `pipewright run` makes when no payload
//! is given, and what a server adds to the payloads it makes itself (a push through its git
//! hook or a poll) or was given without them. Pure: the caller gathers the facts.

use serde_json::{Value, json};

/// A commit as a payload describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// The subject line.
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// RFC 3339.
    pub timestamp: String,
}

/// What a payload is made from.
pub struct Facts<'a> {
    pub event: &'a str,
    /// `owner/name`.
    pub full_name: &'a str,
    pub default_branch: &'a str,
    pub actor: &'a str,
    pub sha: &'a str,
    pub git_ref: &'a str,
    pub head_ref: &'a str,
    pub base_ref: &'a str,
    /// The base branch's commit, for a pull request.
    pub base_sha: &'a str,
    pub action: Option<&'a str>,
    pub commit: &'a CommitInfo,
}

/// The payload of `f.event`, with the repository and sender every webhook has.
pub fn payload(f: &Facts<'_>) -> Value {
    let (owner, name) = f
        .full_name
        .split_once('/')
        .unwrap_or(("local", f.full_name));
    let html = format!("https://github.com/{}", f.full_name);
    let user = |login: &str| json!({"login": login, "type": "User"});
    let repository = json!({
        "id": 1,
        "name": name,
        "full_name": f.full_name,
        "owner": user(owner),
        "private": false,
        "fork": false,
        "html_url": html,
        "clone_url": format!("{html}.git"),
        "default_branch": f.default_branch,
    });
    let sender = user(f.actor);
    let author = json!({
        "name": f.commit.author_name,
        "email": f.commit.author_email,
        "username": f.actor,
    });
    let commit = json!({
        "id": f.sha,
        "tree_id": "",
        "message": f.commit.message,
        "timestamp": f.commit.timestamp,
        "url": format!("{html}/commit/{}", f.sha),
        "author": author,
        "committer": author,
    });
    match f.event {
        "push" => json!({
            "ref": f.git_ref,
            "before": "0".repeat(40),
            "after": f.sha,
            "base_ref": null,
            "created": false,
            "deleted": false,
            "forced": false,
            "compare": format!("{html}/commit/{}", f.sha),
            "commits": [commit],
            "head_commit": commit,
            "pusher": {"name": f.actor, "email": f.commit.author_email},
            "repository": repository,
            "sender": sender,
        }),
        "pull_request" | "pull_request_target" => {
            let side = |r: &str, sha: &str| {
                json!({
                    "ref": r,
                    "sha": sha,
                    "label": format!("{owner}:{r}"),
                    "user": user(owner),
                    "repo": repository,
                })
            };
            json!({
                "action": f.action.unwrap_or("opened"),
                "number": 1,
                "pull_request": {
                    "number": 1,
                    "state": "open",
                    "title": f.commit.message,
                    "draft": false,
                    "merged": false,
                    "html_url": format!("{html}/pull/1"),
                    "user": sender,
                    "head": side(f.head_ref, f.sha),
                    "base": side(f.base_ref, f.base_sha),
                },
                "repository": repository,
                "sender": sender,
            })
        }
        "workflow_dispatch" => json!({
            "ref": f.git_ref,
            "inputs": {},
            "repository": repository,
            "sender": sender,
        }),
        _ => json!({"repository": repository, "sender": sender}),
    }
}

/// Adds to `target` what it lacks of `defaults`, key by key, into nested objects: what a
/// payload has is kept, a `null` too (GitHub sends `head.repo: null` for a deleted fork).
pub fn fill_missing(target: &mut Value, defaults: Value) {
    if let (Value::Object(t), Value::Object(d)) = (target, defaults) {
        for (k, v) in d {
            match t.get_mut(&k) {
                Some(existing) => fill_missing(existing, v),
                None => {
                    t.insert(k, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(event: &'a str, commit: &'a CommitInfo) -> Facts<'a> {
        Facts {
            event,
            full_name: "acme/app",
            default_branch: "main",
            actor: "ada",
            sha: "abc123",
            git_ref: "refs/heads/feature",
            head_ref: "feature",
            base_ref: "main",
            base_sha: "def456",
            action: None,
            commit,
        }
    }

    #[test]
    fn the_fields_workflows_read_are_there() {
        let c = CommitInfo {
            message: "Fix the login".into(),
            author_name: "Ada".into(),
            author_email: "ada@example.com".into(),
            timestamp: "2026-12-04T10:00:00+00:00".into(),
        };
        let push = payload(&facts("push", &c));
        assert_eq!(push["repository"]["default_branch"], "main");
        assert_eq!(push["repository"]["owner"]["login"], "acme");
        assert_eq!(push["sender"]["login"], "ada");
        assert_eq!(push["head_commit"]["message"], "Fix the login");
        assert_eq!(push["head_commit"]["author"]["email"], "ada@example.com");
        assert_eq!(push["commits"][0]["id"], "abc123");
        let pr = payload(&facts("pull_request", &c));
        assert_eq!(pr["action"], "opened");
        assert_eq!(pr["pull_request"]["head"]["repo"]["full_name"], "acme/app");
        assert_eq!(pr["pull_request"]["base"]["sha"], "def456");
        assert_eq!(pr["pull_request"]["head"]["label"], "acme:feature");
        let mut given =
            json!({"ref": "refs/heads/x", "repository": {"full_name": "acme/app"}, "sender": null});
        fill_missing(&mut given, payload(&facts("push", &c)));
        assert_eq!(given["ref"], "refs/heads/x");
        assert_eq!(given["sender"], Value::Null);
        assert_eq!(given["repository"]["name"], "app");
        assert_eq!(given["repository"]["default_branch"], "main");
        assert_eq!(given["head_commit"]["message"], "Fix the login");
        let other = payload(&facts("release", &c));
        assert_eq!(other["repository"]["name"], "app");
        assert_eq!(other["sender"]["type"], "User");
    }
}
