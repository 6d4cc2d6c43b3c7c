//! What a deploy's events say for a server's record of it: the release and each host's
//! phases as they ended, and the word for how it ended. Pure: callers feed it the events
//! they already get.

use serde_json::json;

use crate::protocol::{Event, Outcome};

/// The release a deploy made (or rolled back to) and the phases it went through.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Seen {
    pub release: Option<String>,
    /// `{host, phase, status, ms, message}` of each phase as it ended.
    pub phases: Vec<serde_json::Value>,
}

impl Seen {
    /// Takes in one event of `host`.
    pub fn remember(&mut self, host: &str, ev: &Event) {
        match ev {
            Event::Ready { release, .. } => {
                self.release.get_or_insert_with(|| release.clone());
            }
            // Each phase as it ended (its start says nothing more).
            Event::Phase {
                phase,
                status,
                ms,
                message,
            } if status != "start" => self.phases.push(json!({
                "host": host,
                "phase": phase,
                "status": status,
                "ms": ms,
                "message": message,
            })),
            Event::Result {
                release: Some(release),
                ..
            } => {
                self.release.get_or_insert_with(|| release.clone());
            }
            _ => {}
        }
    }
}

/// How a deploy that ended with `outcome` is recorded.
pub fn status_of(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "deployed",
        Outcome::Failed => "failed",
        Outcome::RolledBack => "rolled_back",
        Outcome::RollbackFailed => "rollback_failed",
        Outcome::Locked => "locked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_is_the_first_named_and_phases_are_kept_as_they_end() {
        let mut seen = Seen::default();
        let phase = |status: &str| Event::Phase {
            phase: "MIGRATE".into(),
            status: status.into(),
            ms: 12,
            message: None,
        };
        seen.remember("web-1", &phase("start"));
        seen.remember("web-1", &phase("ok"));
        seen.remember(
            "web-1",
            &Event::Result {
                outcome: Outcome::Ok,
                message: "deployed".into(),
                release: Some("r1".into()),
            },
        );
        seen.remember(
            "web-2",
            &Event::Result {
                outcome: Outcome::Ok,
                message: "deployed".into(),
                release: Some("r2".into()),
            },
        );
        assert_eq!(seen.release.as_deref(), Some("r1"));
        assert_eq!(seen.phases.len(), 1);
        assert_eq!(seen.phases[0]["host"], "web-1");
        assert_eq!(seen.phases[0]["status"], "ok");
        assert_eq!(status_of(Outcome::RolledBack), "rolled_back");
    }
}
