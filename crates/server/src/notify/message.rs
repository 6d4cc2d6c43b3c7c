//! What an alert says: a title, named facts (repository, branch, commit, author, failing
//! job and step), the last lines of the failing job's log (masked when stored), and a link;
//! rendered as plain text for mail, escaped for Slack, as JSON for webhooks.

use serde::{Deserialize, Serialize};

use super::{AlertEvent, Channel, Scope, alerts_for};

/// Lines of the failing job's log an alert carries.
const LOG_TAIL: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub event: String,
    pub title: String,
    /// Named facts, in order.
    #[serde(default)]
    pub facts: Vec<(String, String)>,
    /// The last lines of the failing job's log.
    #[serde(default)]
    pub log: Vec<String>,
    pub link: Option<String>,
}

impl Message {
    /// Plain text: the title, the facts, the log's last lines, the link.
    pub(crate) fn text(&self) -> String {
        let mut out = format!("{}\n", self.title);
        if !self.facts.is_empty() {
            out.push('\n');
            for (k, v) in &self.facts {
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
        if !self.log.is_empty() {
            out.push_str("\nThe last lines of its log:\n");
            for l in &self.log {
                out.push_str(&format!("    {l}\n"));
            }
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n{link}\n"));
        }
        out
    }

    /// Slack's `mrkdwn`: the text with `&`, `<` and `>` escaped (a commit message saying
    /// `<!channel>` pings no one), the log in a code block.
    pub(crate) fn slack(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut out = format!("*{}*\n", esc(&self.title));
        for (k, v) in &self.facts {
            out.push_str(&format!("{}: {}\n", esc(k), esc(v)));
        }
        if !self.log.is_empty() {
            out.push_str("```\n");
            for l in &self.log {
                // A log line cannot end the code block early.
                out.push_str(&esc(&l.replace("```", "` ` `")));
                out.push('\n');
            }
            out.push_str("```\n");
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("<{}|Open>\n", esc(link)));
        }
        out
    }
}

/// What a run's alerts say, read before the run is recorded as finished (the closure that
/// makes them runs inside that transaction and must do no IO).
pub(crate) struct RunAlerts {
    repo: String,
    branch: String,
    default_branch: String,
    facts: Vec<(String, String)>,
    log: Vec<String>,
    failing: Option<String>,
    link: String,
    channels: Vec<Channel>,
}

impl RunAlerts {
    /// Reads what an alert of `run` needs (its jobs, the failing job's last log lines, the
    /// commit's author and subject), if any channel could want one; blocking.
    pub(crate) fn prepare(
        config: &crate::Config,
        store: &store::Store,
        run: &store::Run,
    ) -> Option<RunAlerts> {
        let branch = run.git_ref.strip_prefix("refs/heads/")?.to_owned();
        let repo = config.repo(&run.repo)?;
        let channels: Vec<Channel> = config
            .channels
            .iter()
            .filter(|c| {
                c.events.contains(&AlertEvent::RunFailed)
                    || c.events.contains(&AlertEvent::RunFixed)
            })
            .cloned()
            .collect();
        let message = Message::default();
        let wanted = [AlertEvent::RunFailed, AlertEvent::RunFixed]
            .iter()
            .any(|e| {
                !alerts_for(
                    &channels,
                    *e,
                    Scope::Run {
                        repo: &run.repo,
                        branch: &branch,
                        default_branch: &repo.default_branch,
                    },
                    &message,
                )
                .is_empty()
            });
        if !wanted {
            return None;
        }
        let mut facts = vec![
            ("Repository".to_owned(), run.repo.clone()),
            ("Branch".to_owned(), branch.clone()),
            ("Workflow".to_owned(), run.workflow.clone()),
            ("Event".to_owned(), run.event.clone()),
        ];
        let (author, subject) = crate::git::author(&repo.path, &run.sha).unwrap_or_default();
        let short = run.sha.get(..12).unwrap_or(&run.sha);
        facts.push((
            "Commit".to_owned(),
            if subject.is_empty() {
                short.to_owned()
            } else {
                format!("{short} {subject}")
            },
        ));
        if !author.is_empty() {
            facts.push(("Author".to_owned(), author));
        }
        // The first job that failed, its first failed step, and its log's last lines.
        let jobs = store.jobs(run.id).unwrap_or_default();
        let failed = jobs
            .iter()
            .find(|j| j.conclusion == Some(store::Conclusion::Failure));
        let mut log = Vec::new();
        let mut failing = None;
        if let Some(job) = failed {
            let step = job
                .report
                .as_deref()
                .and_then(|r| serde_json::from_str::<engine::JobReport>(r).ok())
                .and_then(|r| {
                    r.steps
                        .into_iter()
                        .find(|s| s.conclusion == engine::Conclusion::Failure)
                        .map(|s| s.name)
                });
            facts.push(("Failed job".to_owned(), job.name.clone()));
            if let Some(step) = &step {
                facts.push(("Failed step".to_owned(), step.clone()));
            }
            if let Some(reason) = &job.reason {
                facts.push(("Reason".to_owned(), reason.clone()));
            }
            failing = Some(match step {
                Some(s) => format!("{} / {s}", job.name),
                None => job.name.clone(),
            });
            let mut tail = std::collections::VecDeque::with_capacity(LOG_TAIL);
            let _ = crate::logfiles::each_line(store, &config.data_dir, job.id, 0, &mut |_, l| {
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(l);
                true
            });
            log = tail.into();
        }
        if let Some(reason) = &run.reason {
            facts.push(("Reason".to_owned(), reason.clone()));
        }
        Some(RunAlerts {
            repo: run.repo.clone(),
            branch,
            default_branch: repo.default_branch.clone(),
            facts,
            log,
            failing,
            link: format!(
                "{}/api/v1/runs/{}",
                config.public_url.trim_end_matches('/'),
                run.id
            ),
            channels,
        })
    }

    /// The alerts of a run that ended with `conclusion`, the one before it having ended
    /// with `before`: failed (any failure), or fixed (success after a failure).
    pub(crate) fn make(
        &self,
        run: &store::Run,
        before: Option<store::Conclusion>,
    ) -> Vec<store::NewAlert> {
        use store::Conclusion::{Failure, Success};
        let (event, title, log) = match (run.conclusion, before) {
            (Some(Failure), _) => (
                AlertEvent::RunFailed,
                format!(
                    "{} failed on {}: {}{}",
                    self.repo,
                    self.branch,
                    run.workflow,
                    self.failing
                        .as_deref()
                        .map(|f| format!(" ({f})"))
                        .unwrap_or_default()
                ),
                self.log.clone(),
            ),
            (Some(Success), Some(Failure)) => (
                AlertEvent::RunFixed,
                format!(
                    "{} is fixed on {}: {} succeeded",
                    self.repo, self.branch, run.workflow
                ),
                Vec::new(),
            ),
            _ => return Vec::new(),
        };
        let message = Message {
            event: event.as_str().to_owned(),
            title,
            facts: self.facts.clone(),
            log,
            link: Some(self.link.clone()),
        };
        alerts_for(
            &self.channels,
            event,
            Scope::Run {
                repo: &self.repo,
                branch: &self.branch,
                default_branch: &self.default_branch,
            },
            &message,
        )
    }
}

/// The alerts of a deployment that ended: `deploy_failed` (failed, its rollback failed, or
/// the environment was locked), `rolled_back`; none for one that deployed.
pub(crate) fn deployment_alerts(
    channels: &[Channel],
    public_url: &str,
    d: &store::Deployment,
) -> Vec<store::NewAlert> {
    let (event, what) = match d.status.as_str() {
        "rolled_back" => (AlertEvent::RolledBack, "failed and was rolled back"),
        "rollback_failed" => (
            AlertEvent::DeployFailed,
            "failed and its rollback failed too",
        ),
        "failed" => (AlertEvent::DeployFailed, "failed (nothing live changed)"),
        "locked" => (
            AlertEvent::DeployFailed,
            "did not start: another deploy holds the lock",
        ),
        _ => return Vec::new(),
    };
    let hosts: Vec<String> = d
        .hosts
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut facts = vec![
        ("Repository".to_owned(), d.repo.clone()),
        ("Environment".to_owned(), d.environment.clone()),
        ("Version".to_owned(), d.version.clone()),
        (
            "Commit".to_owned(),
            d.sha.get(..12).unwrap_or(&d.sha).to_owned(),
        ),
        ("By".to_owned(), d.who.clone()),
        ("Hosts".to_owned(), hosts.join(", ")),
    ];
    if let Some(release) = &d.release {
        facts.push(("Release".to_owned(), release.clone()));
    }
    if let Some(message) = &d.message {
        facts.push(("Result".to_owned(), message.clone()));
    }
    // The phases, as the log: which host did what, how long, and what failed.
    let log = d
        .phases
        .as_array()
        .map(|phases| {
            phases
                .iter()
                .map(|p| {
                    let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                    let mut line = format!(
                        "{}: {} {} ({} ms)",
                        text("host"),
                        text("phase"),
                        text("status"),
                        p["ms"].as_u64().unwrap_or(0)
                    );
                    if let Some(m) = p["message"].as_str() {
                        line.push_str(&format!(": {m}"));
                    }
                    line
                })
                .collect()
        })
        .unwrap_or_default();
    let base = public_url.trim_end_matches('/');
    let message = Message {
        event: event.as_str().to_owned(),
        title: format!(
            "{}: the deploy of {} to {} {what}",
            d.repo, d.version, d.environment
        ),
        facts,
        log,
        link: Some(match d.run_id {
            Some(run) => format!("{base}/api/v1/runs/{run}"),
            None => format!("{base}/api/v1/environments"),
        }),
    };
    alerts_for(
        channels,
        event,
        Scope::Deployment { repo: &d.repo },
        &message,
    )
}

/// The alerts telling that job `job` of run `run` waits for approval to use `environment`.
pub(crate) fn approval_alerts(
    config: &crate::Config,
    repo: &str,
    git_ref: &str,
    sha: &str,
    run: store::RunId,
    job: &str,
    environment: &str,
) -> Vec<store::NewAlert> {
    let base = config.public_url.trim_end_matches('/');
    let message = Message {
        event: AlertEvent::ApprovalWaiting.as_str().to_owned(),
        title: format!("{repo}: `{job}` waits for approval to deploy to {environment}"),
        facts: vec![
            ("Repository".to_owned(), repo.to_owned()),
            ("Ref".to_owned(), git_ref.to_owned()),
            ("Commit".to_owned(), sha.get(..12).unwrap_or(sha).to_owned()),
            ("Job".to_owned(), job.to_owned()),
            ("Environment".to_owned(), environment.to_owned()),
            (
                "Approve".to_owned(),
                format!("pipewright approve {run} --job '{job}'"),
            ),
        ],
        log: Vec::new(),
        link: Some(format!("{base}/api/v1/runs/{run}")),
    };
    alerts_for(
        &config.channels,
        AlertEvent::ApprovalWaiting,
        Scope::Deployment { repo },
        &message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_cannot_ping_or_close_the_log_block() {
        let m = Message {
            event: "run_failed".into(),
            title: "acme <!channel> failed".into(),
            facts: vec![("Commit".into(), "a & b <@U123>".into())],
            log: vec!["``` <!here>".into()],
            link: Some("http://ci/runs/1".into()),
        };
        let s = m.slack();
        assert!(!s.contains("<!"), "{s}");
        assert!(!s.contains("<@"), "{s}");
        assert!(s.contains("a &amp; b &lt;@U123&gt;"), "{s}");
        assert_eq!(s.matches("```").count(), 2, "{s}");
        assert!(s.contains("<http://ci/runs/1|Open>"), "{s}");
        let t = m.text();
        assert!(t.contains("Commit: a & b <@U123>\n"), "{t}");
        assert!(t.contains("\n    ``` <!here>\n"), "{t}");
    }
}
