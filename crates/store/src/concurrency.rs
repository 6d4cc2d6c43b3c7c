//! `concurrency` groups as rows, so that they hold across every server process on the
//! database and across a restart: one slot per group of a scope (a repository), with the one
//! holding it, the one waiting, and whether the holder is asked to stop (a newcomer with
//! `cancel-in-progress`).
//!
//! A claimant is a job instance (or a workflow) of a run: the run's id and a key the
//! orchestrator gives it, the same each time the run is walked. A server that takes up a run
//! (after a restart, or from a server that died) therefore finds the slots the run held or
//! waited for as its own; a claimant replaced while waiting is remembered until its run
//! completes, so that, taken up again, it learns it was replaced instead of claiming anew. A
//! slot whose holder's or waiter's run is completed (or gone) is treated as free: a server
//! that died holding a group does not hold it for ever.
//!
//! Each operation is one transaction whose first statement writes: SQLite takes its write
//! lock before reading (no lock upgrade between server processes), PostgreSQL locks the row.

use crate::db::{Db, Dialect, Row, params};
use crate::{Result, RunId, Store};

/// Who claims a group: a job instance (or a workflow) of a run, orchestrated by `server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub run: RunId,
    /// The job instance's (or the workflow's) name within its run.
    pub key: String,
    /// The server process orchestrating the run (for the record: identity is run and key).
    pub server: String,
}

/// Where a claim stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The claimant holds the group.
    Held,
    /// The claimant is the one waiting.
    Waiting,
    /// A newcomer took the claimant's place as the one waiting: it is to be cancelled.
    Replaced,
}

/// A slot as stored, its holder and waiter as (run, key).
struct Slot {
    holder: Option<(RunId, String)>,
    pending: Option<(RunId, String)>,
}

fn who_of(r: &Row, run: &str, key: &str) -> Result<Option<(RunId, String)>> {
    Ok(match (r.opt_i64(run)?, r.opt_string(key)?) {
        (Some(run), Some(key)) => Some((RunId::from(run), key)),
        _ => None,
    })
}

fn is(who: &Claimant, slot: Option<&(RunId, String)>) -> bool {
    slot.is_some_and(|(run, key)| *run == who.run && *key == who.key)
}

/// Whether `run` is still going: a slot of a completed (or deleted) run is free.
fn live(c: &mut dyn Db, run: Option<&(RunId, String)>) -> Result<bool> {
    let Some((run, _)) = run else {
        return Ok(false);
    };
    Ok(
        c.query_opt("SELECT status FROM runs WHERE id = ?1", params![*run])?
            .map(|r| r.string("status"))
            .transpose()?
            .is_some_and(|s| s != "completed"),
    )
}

/// Deletes the slot if nobody holds it or waits for it.
fn forget_if_empty(c: &mut dyn Db, scope: &str, name: &str) -> Result<()> {
    c.execute(
        "DELETE FROM concurrency_slots WHERE scope = ?1 AND name = ?2
         AND holder_run IS NULL AND pending_run IS NULL",
        params![scope, name],
    )
    .map(drop)
}

impl Store {
    /// Claims group `name` of `scope` for `who`, with GitHub's rules.
    ///
    /// The group is `who`'s if it holds it already (a run taken up again), or if it is free
    /// (nobody holds it, or the holder's run is completed) and nobody else waits. Otherwise,
    /// on the `first` claim, `who` becomes the one waiting in place of any other (who sees
    /// [`Claim::Replaced`] on its next claim) and, with `cancel_in_progress`, the holder is
    /// flagged to stop ([`Store::group_cancel_requested`]). Later claims only look: waiting
    /// still, or replaced.
    pub fn claim_group(
        &self,
        scope: &str,
        name: &str,
        who: &Claimant,
        cancel_in_progress: bool,
        first: bool,
    ) -> Result<Claim> {
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO concurrency_slots (scope, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![scope, name],
            )?;
            let lock = match c.dialect() {
                Dialect::Sqlite => "",
                Dialect::Postgres => " FOR UPDATE",
            };
            let row = c.query_one(
                &format!(
                    "SELECT holder_run, holder_key, pending_run, pending_key FROM concurrency_slots
                     WHERE scope = ?1 AND name = ?2{lock}"
                ),
                params![scope, name],
            )?;
            let slot = Slot {
                holder: who_of(&row, "holder_run", "holder_key")?,
                pending: who_of(&row, "pending_run", "pending_key")?,
            };
            if is(who, slot.holder.as_ref()) {
                // Held already: the run was taken up again. A cancellation asked of the holder
                // still stands.
                c.execute(
                    "UPDATE concurrency_slots SET holder_server = ?3 WHERE scope = ?1 AND name = ?2",
                    params![scope, name, &who.server],
                )?;
                return Ok(Claim::Held);
            }
            let me_pending = is(who, slot.pending.as_ref());
            if first
                && !me_pending
                && c.query_opt(
                    "SELECT run FROM concurrency_replaced
                     WHERE scope = ?1 AND name = ?2 AND run = ?3 AND claim_key = ?4",
                    params![scope, name, who.run, &who.key],
                )?
                .is_some()
            {
                return Ok(Claim::Replaced);
            }
            let holder_live = live(c, slot.holder.as_ref())?;
            let pending_live = live(c, slot.pending.as_ref())?;
            let my_turn = me_pending || !pending_live;
            if !holder_live && my_turn {
                c.execute(
                    "UPDATE concurrency_slots SET holder_run = ?3, holder_key = ?4, holder_server = ?5,
                         cancel_holder = 0, pending_run = NULL, pending_key = NULL,
                         pending_server = NULL
                     WHERE scope = ?1 AND name = ?2",
                    params![scope, name, who.run, &who.key, &who.server],
                )?;
                return Ok(Claim::Held);
            }
            if !first {
                return Ok(if me_pending {
                    Claim::Waiting
                } else {
                    Claim::Replaced
                });
            }
            if !me_pending {
                if let Some((run, key)) = slot.pending.as_ref().filter(|_| pending_live) {
                    c.execute(
                        "INSERT INTO concurrency_replaced (scope, name, run, claim_key)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                        params![scope, name, *run, key],
                    )?;
                }
                c.execute(
                    "UPDATE concurrency_slots SET pending_run = ?3, pending_key = ?4,
                         pending_server = ?5
                     WHERE scope = ?1 AND name = ?2",
                    params![scope, name, who.run, &who.key, &who.server],
                )?;
            }
            if cancel_in_progress && holder_live {
                c.execute(
                    "UPDATE concurrency_slots SET cancel_holder = 1 WHERE scope = ?1 AND name = ?2",
                    params![scope, name],
                )?;
            }
            Ok(Claim::Waiting)
        })
    }

    /// Whether `who`, holding group `name` of `scope`, is asked to stop (a newcomer with
    /// `cancel-in-progress`). `false` when `who` does not hold it.
    pub fn group_cancel_requested(&self, scope: &str, name: &str, who: &Claimant) -> Result<bool> {
        self.db.with(|c| {
            Ok(c.query_opt(
                "SELECT cancel_holder FROM concurrency_slots
                 WHERE scope = ?1 AND name = ?2 AND holder_run = ?3 AND holder_key = ?4",
                params![scope, name, who.run, &who.key],
            )?
            .map(|r| r.i64("cancel_holder"))
            .transpose()?
            .is_some_and(|f| f != 0))
        })
    }

    /// Lets group `name` of `scope` go, if `who` holds it: the one waiting may take it.
    pub fn release_group(&self, scope: &str, name: &str, who: &Claimant) -> Result<()> {
        self.db.tx(|c| {
            c.execute(
                "UPDATE concurrency_slots SET holder_run = NULL, holder_key = NULL,
                     holder_server = NULL, cancel_holder = 0
                 WHERE scope = ?1 AND name = ?2 AND holder_run = ?3 AND holder_key = ?4",
                params![scope, name, who.run, &who.key],
            )?;
            c.execute(
                "DELETE FROM concurrency_replaced WHERE scope = ?1 AND name = ?2
                 AND NOT EXISTS (SELECT 1 FROM runs
                     WHERE runs.id = concurrency_replaced.run AND runs.status <> 'completed')",
                params![scope, name],
            )?;
            forget_if_empty(c, scope, name)
        })
    }

    /// Stops waiting for group `name` of `scope`, if `who` is the one waiting (its run was
    /// cancelled meanwhile).
    pub fn withdraw_group(&self, scope: &str, name: &str, who: &Claimant) -> Result<()> {
        self.db.tx(|c| {
            c.execute(
                "UPDATE concurrency_slots SET pending_run = NULL, pending_key = NULL,
                     pending_server = NULL
                 WHERE scope = ?1 AND name = ?2 AND pending_run = ?3 AND pending_key = ?4",
                params![scope, name, who.run, &who.key],
            )?;
            forget_if_empty(c, scope, name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conclusion;
    use crate::tests::stores;

    fn run(s: &Store) -> RunId {
        s.create_run(&crate::tests::new_run("r")).unwrap()
    }

    fn who(run: RunId, server: &str) -> Claimant {
        Claimant {
            run,
            key: "ci-deploy-0".into(),
            server: server.into(),
        }
    }

    #[test]
    fn one_holds_one_waits_and_a_newcomer_replaces_the_waiting_one() {
        for s in stores() {
            let (a, b, c) = (who(run(&s), "s1"), who(run(&s), "s2"), who(run(&s), "s1"));
            assert_eq!(
                s.claim_group("r", "g", &a, false, true).unwrap(),
                Claim::Held
            );
            // Another scope is another group.
            assert_eq!(
                s.claim_group("q", "g", &b, false, true).unwrap(),
                Claim::Held
            );
            assert_eq!(
                s.claim_group("r", "g", &b, false, true).unwrap(),
                Claim::Waiting
            );
            assert_eq!(
                s.claim_group("r", "g", &b, false, false).unwrap(),
                Claim::Waiting
            );
            assert_eq!(
                s.claim_group("r", "g", &c, false, true).unwrap(),
                Claim::Waiting
            );
            assert_eq!(
                s.claim_group("r", "g", &b, false, false).unwrap(),
                Claim::Replaced
            );
            // Only the holder lets go.
            s.release_group("r", "g", &b).unwrap();
            assert_eq!(
                s.claim_group("r", "g", &c, false, false).unwrap(),
                Claim::Waiting
            );
            s.release_group("r", "g", &a).unwrap();
            assert_eq!(
                s.claim_group("r", "g", &c, false, false).unwrap(),
                Claim::Held
            );
            s.release_group("r", "g", &c).unwrap();
            s.release_group("q", "g", &b).unwrap();
            let slots =
                s.db.with(|c| c.query_one("SELECT count(*) FROM concurrency_slots", params![]))
                    .unwrap()
                    .first_i64()
                    .unwrap();
            assert_eq!(slots, 0, "empty slots are removed");
        }
    }

    #[test]
    fn cancel_in_progress_flags_the_holder_and_a_taken_up_run_finds_its_slot() {
        for s in stores() {
            let (a, b) = (who(run(&s), "s1"), who(run(&s), "s2"));
            assert_eq!(
                s.claim_group("r", "g", &a, true, true).unwrap(),
                Claim::Held
            );
            assert!(!s.group_cancel_requested("r", "g", &a).unwrap());
            assert_eq!(
                s.claim_group("r", "g", &b, true, true).unwrap(),
                Claim::Waiting
            );
            assert!(s.group_cancel_requested("r", "g", &a).unwrap());
            assert!(!s.group_cancel_requested("r", "g", &b).unwrap());
            // Server s1 died; s3 takes the run up: the slot is still the run's, still flagged.
            let taken_up = Claimant {
                server: "s3".into(),
                ..a.clone()
            };
            assert_eq!(
                s.claim_group("r", "g", &taken_up, true, true).unwrap(),
                Claim::Held
            );
            assert!(s.group_cancel_requested("r", "g", &taken_up).unwrap());
            // The holder's run completed without letting go: the group is free.
            s.finish_run(a.run, Conclusion::Cancelled, None).unwrap();
            assert_eq!(
                s.claim_group("r", "g", &b, true, false).unwrap(),
                Claim::Held
            );
            assert!(!s.group_cancel_requested("r", "g", &b).unwrap());
            // A waiter replaced while its server was down learns it when its run is taken up,
            // and the newcomer keeps its place.
            let (c, d) = (who(run(&s), "s1"), who(run(&s), "s2"));
            assert_eq!(
                s.claim_group("r", "g", &c, false, true).unwrap(),
                Claim::Waiting
            );
            assert_eq!(
                s.claim_group("r", "g", &d, false, true).unwrap(),
                Claim::Waiting
            );
            let c_taken_up = Claimant {
                server: "s3".into(),
                ..c.clone()
            };
            assert_eq!(
                s.claim_group("r", "g", &c_taken_up, false, true).unwrap(),
                Claim::Replaced
            );
            assert_eq!(
                s.claim_group("r", "g", &d, false, false).unwrap(),
                Claim::Waiting
            );
            s.withdraw_group("r", "g", &d).unwrap();
            s.finish_run(c.run, Conclusion::Cancelled, None).unwrap();
            // A waiter that gives up leaves the slot to the next newcomer at once.
            let c = who(run(&s), "s1");
            assert_eq!(
                s.claim_group("r", "g", &c, false, true).unwrap(),
                Claim::Waiting
            );
            s.withdraw_group("r", "g", &c).unwrap();
            s.release_group("r", "g", &b).unwrap();
            let e = who(run(&s), "s2");
            assert_eq!(
                s.claim_group("r", "g", &e, false, true).unwrap(),
                Claim::Held
            );
        }
    }
}
