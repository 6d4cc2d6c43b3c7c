//! The job graph's rules, without IO: which jobs a run selects, which are ready (their
//! `needs` all done), the `needs` context and the status a job's `if` sees, whether a job
//! runs, is skipped or fails before it starts, and what a job's instances add up to
//! (`fail-fast` included). `run` walks the graph with these; the table tests below pin them.

use std::collections::{HashMap, HashSet};

use expr::{Map, Status, Value};
use workflow::{Job, Workflow};

use crate::error::JobError;
use crate::job::obj;
use crate::report::{Conclusion, JobReport};

/// The outcome of one job (all its matrix instances), as `needs` sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Done {
    pub(crate) result: Conclusion,
    pub(crate) outputs: Map,
}

impl Done {
    pub(crate) fn of(result: Conclusion) -> Done {
        Done {
            result,
            outputs: Map::new(),
        }
    }
}

/// The jobs to run, in workflow order: all, or `only` and everything it needs.
pub(crate) fn selected(wf: &Workflow, only: Option<&str>) -> Vec<String> {
    let Some(only) = only else {
        return wf.jobs.keys().cloned().collect();
    };
    let mut keep = HashSet::new();
    let mut stack = vec![only.to_owned()];
    while let Some(id) = stack.pop() {
        if let Some(job) = wf.jobs.get(&id)
            && keep.insert(id)
        {
            stack.extend(job.needs.iter().map(|n| n.value.clone()));
        }
    }
    wf.jobs
        .keys()
        .filter(|k| keep.contains(*k))
        .cloned()
        .collect()
}

/// The selected jobs not started yet whose needs are all done (a need that is not selected
/// counts as done), in workflow order.
pub(crate) fn ready(
    wf: &Workflow,
    ids: &[String],
    done: &HashMap<String, Done>,
    started: &HashSet<String>,
) -> Vec<String> {
    ids.iter()
        .filter(|id| !started.contains(*id))
        .filter(|id| {
            wf.jobs.get(*id).is_some_and(|job| {
                job.needs
                    .iter()
                    .all(|n| done.contains_key(&n.value) || !ids.contains(&n.value))
            })
        })
        .cloned()
        .collect()
}

/// The `needs` context of `job`: each direct need's result and outputs (`skipped` for one
/// that never ran).
pub(crate) fn needs_context(job: &Job, done: &HashMap<String, Done>) -> Map {
    let mut needs = Map::new();
    for n in &job.needs {
        let d = done.get(&n.value);
        needs.insert(
            n.value.clone(),
            obj([
                (
                    "result",
                    Value::from(d.map_or("skipped", |d| d.result.as_str())),
                ),
                (
                    "outputs",
                    Value::Object(d.map(|d| d.outputs.clone()).unwrap_or_default()),
                ),
            ]),
        );
    }
    needs
}

/// The status a job's `if` sees: cancelled if the run was, failure if any ancestor (need of
/// a need, ...) failed, cancelled if one was cancelled, else success.
pub(crate) fn ancestors_status(
    wf: &Workflow,
    id: &str,
    done: &HashMap<String, Done>,
    cancelled: bool,
) -> Status {
    if cancelled {
        return Status::Cancelled;
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<&str> = wf
        .jobs
        .get(id)
        .map(|j| j.needs.iter().map(|n| n.value.as_str()).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        match done.get(n).map(|d| d.result) {
            Some(Conclusion::Failure) => return Status::Failure,
            Some(Conclusion::Cancelled) => return Status::Cancelled,
            _ => {}
        }
        if let Some(j) = wf.jobs.get(n) {
            stack.extend(j.needs.iter().map(|x| x.value.as_str()));
        }
    }
    Status::Success
}

/// Whether a direct need of `job` was skipped.
pub(crate) fn any_need_skipped(job: &Job, done: &HashMap<String, Done>) -> bool {
    job.needs.iter().any(|n| {
        done.get(&n.value)
            .is_some_and(|d| d.result == Conclusion::Skipped)
    })
}

/// What becomes of a job before it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gate {
    Run,
    Skip,
    /// Its `if` cannot be read or evaluated: the job fails with this message.
    Fail(String),
}

/// A job's `if` (`cond_src`, empty when it has none: `success()`), as GitHub decides it: a
/// job whose need was skipped is skipped too unless its `if` calls a status function
/// (`always()`, `failure()`, ...).
pub(crate) fn gate(
    id: &str,
    cond_src: &str,
    ectx: &expr::Context<'_>,
    any_need_skipped: bool,
) -> Gate {
    let cond = match expr::parse_condition(cond_src) {
        Ok(c) => c,
        Err(e) => return Gate::Fail(format!("the `if` of job `{id}`: {e}")),
    };
    if any_need_skipped && !cond.uses_status_function() {
        return Gate::Skip;
    }
    match cond.evaluate(ectx) {
        Ok(true) => Gate::Run,
        Ok(false) => Gate::Skip,
        Err(e) => Gate::Fail(format!("the `if` of job `{id}`: {e}")),
    }
}

/// What a job's instances add up to: cancelled if the run was, failure if any failed, then
/// cancelled if any was (a sibling's failure under `fail-fast` cancels the rest), else
/// success.
pub(crate) fn node_result(cancelled: bool, instances: &[Conclusion]) -> Conclusion {
    if cancelled {
        Conclusion::Cancelled
    } else if instances.contains(&Conclusion::Failure) {
        Conclusion::Failure
    } else if instances.contains(&Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    }
}

/// Whether an instance that ended with `conclusion` cancels its siblings.
pub(crate) fn cancels_siblings(conclusion: Conclusion, fail_fast: bool) -> bool {
    fail_fast && conclusion == Conclusion::Failure
}

/// A job of a called workflow as its caller's `jobs` context sees it, from its instances:
/// failure, cancelled, skipped when all were, else success.
pub(crate) fn called_job_result(instances: &[Conclusion]) -> Conclusion {
    if instances.contains(&Conclusion::Failure) {
        Conclusion::Failure
    } else if instances.contains(&Conclusion::Cancelled) {
        Conclusion::Cancelled
    } else if instances.iter().all(|c| *c == Conclusion::Skipped) {
        Conclusion::Skipped
    } else {
        Conclusion::Success
    }
}

/// A `concurrency:` evaluated: its group, and whether it cancels what is in progress. A
/// group that cannot be evaluated, or evaluates to nothing, is an error (it used to become
/// the group `""`, shared by every such job).
pub(crate) fn concurrency_group(
    c: &workflow::Concurrency,
    ectx: &expr::Context<'_>,
) -> Result<(String, bool), JobError> {
    let group = workflow::eval::evaluate_string(&c.group, ectx)
        .map_err(|e| JobError::expr("`concurrency.group`", e))?;
    if group.trim().is_empty() {
        return Err(JobError::invalid(
            "`concurrency.group`",
            "it evaluates to an empty string".to_owned(),
        ));
    }
    let cancel_in_progress = match &c.cancel_in_progress {
        None => false,
        Some(n) => workflow::eval::evaluate(n, ectx)
            .map_err(|e| JobError::expr("`concurrency.cancel-in-progress`", e))?
            .truthy(),
    };
    Ok((group, cancel_in_progress))
}

/// The report of a job that did not run: skipped, under its name when that is plain text.
pub(crate) fn skipped_report(wf: &Workflow, id: &str) -> JobReport {
    let name = wf
        .jobs
        .get(id)
        .and_then(|j| j.name.as_ref())
        .and_then(|n| n.as_str())
        .filter(|n| !n.contains("${{"))
        .unwrap_or(id)
        .to_owned();
    JobReport::without_steps(id, &name, None, Conclusion::Skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(yaml: &str) -> Workflow {
        let parsed = workflow::parse(yaml);
        parsed.workflow.expect("a workflow")
    }

    /// `a`; `b` and `c` need `a`; `d` needs `b` and `c`; `e` needs `d`.
    const DIAMOND: &str = "on: push
jobs:
  a: {runs-on: x, steps: [{run: 'true'}]}
  b: {runs-on: x, needs: a, steps: [{run: 'true'}]}
  c: {runs-on: x, needs: a, steps: [{run: 'true'}]}
  d: {runs-on: x, needs: [b, c], steps: [{run: 'true'}]}
  e: {runs-on: x, needs: d, steps: [{run: 'true'}]}
";

    fn done(results: Results<'_>) -> HashMap<String, Done> {
        results
            .iter()
            .map(|(id, c)| ((*id).to_owned(), Done::of(*c)))
            .collect()
    }

    /// Finished jobs and their results.
    type Results<'a> = &'a [(&'a str, Conclusion)];

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn selection_keeps_a_job_and_everything_it_needs() {
        let w = wf(DIAMOND);
        for (only, want) in [
            (None, vec!["a", "b", "c", "d", "e"]),
            (Some("a"), vec!["a"]),
            (Some("b"), vec!["a", "b"]),
            (Some("d"), vec!["a", "b", "c", "d"]),
            (Some("nope"), vec![]),
        ] {
            assert_eq!(selected(&w, only), strings(&want), "{only:?}");
        }
    }

    #[test]
    fn a_job_is_ready_once_each_selected_need_is_done() {
        use Conclusion::*;
        let w = wf(DIAMOND);
        let all = selected(&w, None);
        let table: &[(Results<'_>, &[&str], &[&str])] = &[
            // done, started, ready
            (&[], &[], &["a"]),
            (&[], &["a"], &[]),
            (&[("a", Success)], &["a"], &["b", "c"]),
            (&[("a", Failure)], &["a"], &["b", "c"]),
            (&[("a", Success), ("b", Success)], &["a", "b", "c"], &[]),
            (
                &[("a", Success), ("b", Skipped), ("c", Success)],
                &["a", "b", "c"],
                &["d"],
            ),
        ];
        for (d, started, want) in table {
            let started: HashSet<String> = started.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(
                ready(&w, &all, &done(d), &started),
                strings(want),
                "done {d:?}, started {started:?}"
            );
        }
        // A need that is not selected does not hold a job back.
        let only_b = vec!["b".to_owned()];
        assert_eq!(ready(&w, &only_b, &HashMap::new(), &HashSet::new()), only_b);
    }

    #[test]
    fn the_status_an_if_sees_comes_from_every_ancestor() {
        use Conclusion::*;
        let w = wf(DIAMOND);
        let table: &[(&str, Results<'_>, bool, Status)] = &[
            ("a", &[], false, Status::Success),
            ("a", &[], true, Status::Cancelled),
            (
                "d",
                &[("a", Success), ("b", Success), ("c", Success)],
                false,
                Status::Success,
            ),
            (
                "d",
                &[("a", Success), ("b", Failure), ("c", Success)],
                false,
                Status::Failure,
            ),
            (
                "d",
                &[("a", Success), ("b", Cancelled), ("c", Success)],
                false,
                Status::Cancelled,
            ),
            // A failure two levels up still counts.
            (
                "e",
                &[
                    ("a", Failure),
                    ("b", Skipped),
                    ("c", Skipped),
                    ("d", Skipped),
                ],
                false,
                Status::Failure,
            ),
            (
                "e",
                &[
                    ("a", Success),
                    ("b", Skipped),
                    ("c", Success),
                    ("d", Success),
                ],
                false,
                Status::Success,
            ),
        ];
        for (id, d, cancelled, want) in table {
            assert_eq!(
                ancestors_status(&w, id, &done(d), *cancelled),
                *want,
                "{id} after {d:?}"
            );
        }
    }

    #[test]
    fn an_if_decides_with_the_status_and_skipped_needs() {
        let contexts = Map::new();
        let table: &[(&str, Status, bool, Gate)] = &[
            ("", Status::Success, false, Gate::Run),
            ("", Status::Failure, false, Gate::Skip),
            ("", Status::Success, true, Gate::Skip),
            ("always()", Status::Failure, true, Gate::Run),
            ("failure()", Status::Failure, false, Gate::Run),
            ("failure()", Status::Success, false, Gate::Skip),
            ("cancelled()", Status::Cancelled, false, Gate::Run),
            ("success() || failure()", Status::Failure, false, Gate::Run),
            ("!cancelled()", Status::Cancelled, false, Gate::Skip),
            // No status function: `success() && ...`, so skipped needs skip it.
            ("github.ref == ''", Status::Success, true, Gate::Skip),
            ("github.ref == ''", Status::Success, false, Gate::Run),
            ("1 == 2", Status::Success, false, Gate::Skip),
        ];
        for (cond, status, skipped, want) in table {
            let ectx = expr::Context {
                contexts: &contexts,
                status: *status,
                host: None,
            };
            assert_eq!(
                gate("j", cond, &ectx, *skipped),
                *want,
                "if: {cond} with {status:?}, need skipped: {skipped}"
            );
        }
        let ectx = expr::Context {
            contexts: &contexts,
            status: Status::Success,
            host: None,
        };
        match gate("j", "(", &ectx, false) {
            Gate::Fail(m) => assert!(m.starts_with("the `if` of job `j`: "), "{m}"),
            g => panic!("an unreadable `if` fails the job, got {g:?}"),
        }
    }

    #[test]
    fn instances_add_up_and_fail_fast_cancels_on_failure_only() {
        use Conclusion::*;
        let table: &[(bool, &[Conclusion], Conclusion)] = &[
            (false, &[Success, Success], Success),
            (false, &[Success, Failure, Cancelled], Failure),
            (false, &[Success, Cancelled], Cancelled),
            (true, &[Success, Success], Cancelled),
            (false, &[], Success),
        ];
        for (cancelled, instances, want) in table {
            assert_eq!(node_result(*cancelled, instances), *want, "{instances:?}");
        }
        assert!(cancels_siblings(Failure, true));
        assert!(!cancels_siblings(Failure, false));
        assert!(!cancels_siblings(Cancelled, true));
        assert!(!cancels_siblings(Success, true));
        assert_eq!(called_job_result(&[Skipped, Skipped]), Skipped);
        assert_eq!(called_job_result(&[Skipped, Success]), Success);
        assert_eq!(called_job_result(&[Cancelled, Success]), Cancelled);
        assert_eq!(called_job_result(&[Cancelled, Failure]), Failure);
    }

    #[test]
    fn needs_carry_results_and_outputs_and_skipped_for_what_never_ran() {
        let w = wf(DIAMOND);
        let mut d = done(&[("b", Conclusion::Success)]);
        d.get_mut("b")
            .unwrap()
            .outputs
            .insert("v".into(), Value::from("1"));
        let needs = needs_context(w.jobs.get("d").unwrap(), &d);
        let json = Value::Object(needs).to_json();
        assert_eq!(
            json,
            serde_json::json!({
                "b": {"result": "success", "outputs": {"v": "1"}},
                "c": {"result": "skipped", "outputs": {}},
            })
        );
        assert!(!any_need_skipped(w.jobs.get("d").unwrap(), &d));
        let d = done(&[("b", Conclusion::Skipped), ("c", Conclusion::Success)]);
        assert!(any_need_skipped(w.jobs.get("d").unwrap(), &d));
    }

    #[test]
    fn a_concurrency_group_that_cannot_be_evaluated_is_an_error() {
        let w = wf("on: push
concurrency:
  group: ${{ fromJSON('{') }}
jobs:
  a: {runs-on: x, steps: [{run: 'true'}]}
");
        let contexts = Map::new();
        let ectx = expr::Context {
            contexts: &contexts,
            status: Status::Success,
            host: None,
        };
        let e = concurrency_group(w.concurrency.as_ref().unwrap(), &ectx).unwrap_err();
        assert!(e.to_string().contains("concurrency.group"), "{e}");
        let w = wf("on: push
concurrency: ${{ github.nothing }}
jobs:
  a: {runs-on: x, steps: [{run: 'true'}]}
");
        let e = concurrency_group(w.concurrency.as_ref().unwrap(), &ectx).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let w = wf("on: push
concurrency:
  group: deploy-${{ format('{0}', 2) }}
  cancel-in-progress: true
jobs:
  a: {runs-on: x, steps: [{run: 'true'}]}
");
        assert_eq!(
            concurrency_group(w.concurrency.as_ref().unwrap(), &ectx).unwrap(),
            ("deploy-2".to_owned(), true)
        );
    }
}
