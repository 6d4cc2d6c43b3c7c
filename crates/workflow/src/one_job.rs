//! A workflow's text reduced to one of its jobs, for a process that runs that job alone: a
//! runner's confined job process then parses what it runs, not every job of a large
//! workflow again for each of them.
//!
//! The other jobs' lines are made comments of the same length, so every line keeps its
//! number and every byte its offset: the kept job's positions (and the messages naming them)
//! are those of the whole text. Only a block-style `jobs:` mapping whose keys each start a
//! line is reduced, and a reduction is checked once: parsed again, it must give the same job
//! and the same workflow around it.

use std::ops::Range;

use crate::yaml::{self, Node, NodeKind};

/// Where each job's entry lies in a workflow's text: the bytes of its whole lines, from its
/// key's line to the next entry's (the last: to the next top-level key's, or the end).
#[derive(Debug, Clone, Default)]
pub struct JobLines(Vec<(String, Range<usize>)>);

impl JobLines {
    /// The lines of each job of `src`; `None` when its `jobs:` is not a block mapping whose
    /// keys each start a line (or the text is not YAML).
    pub fn of(src: &str) -> Option<JobLines> {
        let root = yaml::load(src).ok()?;
        let entries = root.as_map()?;
        let at = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("jobs"))?;
        let jobs = &entries[at].1;
        if src.as_bytes().get(jobs.span.start.offset) == Some(&b'{') {
            return None;
        }
        let line_start = |offset: usize| src[..offset].rfind('\n').map_or(0, |i| i + 1);
        let mut starts = Vec::new();
        for (k, _) in jobs.as_map()? {
            let offset = k.span.start.offset;
            let start = line_start(offset);
            if !src[start..offset].bytes().all(|b| b == b' ') {
                return None;
            }
            starts.push((k.as_str()?.to_owned(), start));
        }
        let end = entries
            .get(at + 1)
            .map_or(src.len(), |(k, _)| line_start(k.span.start.offset));
        let mut lines = Vec::with_capacity(starts.len());
        for (i, (id, start)) in starts.iter().enumerate() {
            let next = starts.get(i + 1).map_or(end, |(_, s)| *s);
            // Keys come in the text's order; a range the other way round would be no range
            // to blank (and a panic to slice), whatever positions the parser reported.
            if next < *start {
                return None;
            }
            lines.push((id.clone(), *start..next));
        }
        Some(JobLines(lines))
    }

    /// `src` with the lines of every job but `keep` made comments of the same length.
    pub fn blank(&self, src: &str, keep: &str) -> String {
        let mut out = src.as_bytes().to_vec();
        for (_, range) in self.0.iter().filter(|(id, _)| id != keep) {
            let mut line_start = true;
            for b in &mut out[range.clone()] {
                if *b == b'\n' {
                    line_start = true;
                    continue;
                }
                *b = if line_start { b'#' } else { b' ' };
                line_start = false;
            }
        }
        // Whole lines were replaced by ASCII: what is left is whole characters.
        String::from_utf8(out).unwrap_or_else(|_| src.to_owned())
    }

    /// [`JobLines::blank`], checked: the reduced text holds the same YAML as `src` outside
    /// `jobs`, and `keep` alone in `jobs`, the same as in `src` (its positions are, by
    /// construction; a node's end may lie further on, at the next node left). `None` when it
    /// does not (an alias of an anchor in another job) or `src` has no job `keep`: the whole
    /// text is then the one to parse.
    pub fn only(&self, src: &str, keep: &str) -> Option<String> {
        if !self.0.iter().any(|(id, _)| id == keep) {
            return None;
        }
        let text = self.blank(src, keep);
        let (Ok(whole), Ok(reduced)) = (yaml::load(src), yaml::load(&text)) else {
            return None;
        };
        let (whole, reduced) = (whole.as_map()?, reduced.as_map()?);
        if whole.len() != reduced.len() {
            return None;
        }
        for ((k, v), (rk, rv)) in whole.iter().zip(reduced) {
            if !same(k, rk) {
                return None;
            }
            if k.as_str() == Some("jobs") {
                let (kept_key, kept) =
                    v.as_map()?.iter().find(|(k, _)| k.as_str() == Some(keep))?;
                match rv.as_map()? {
                    [(rk, rv)] if same(kept_key, rk) && same(kept, rv) => {}
                    _ => return None,
                }
            } else if !same(v, rv) {
                return None;
            }
        }
        let parsed = crate::parse_model(&text);
        let parses = !parsed.diagnostics.iter().any(crate::Diagnostic::is_error)
            && parsed.workflow.is_some_and(|w| w.jobs.contains_key(keep));
        parses.then_some(text)
    }
}

/// Whether two YAML trees hold the same: the same scalars in the same styles, wherever they
/// are.
fn same(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::Scalar(x, xs), NodeKind::Scalar(y, ys)) => x == y && xs == ys,
        (NodeKind::Seq(x), NodeKind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (NodeKind::Map(x), NodeKind::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(src: &str) -> crate::Workflow {
        let parsed = crate::parse_model(src);
        assert!(
            !parsed.diagnostics.iter().any(crate::Diagnostic::is_error),
            "{:?}",
            parsed.diagnostics
        );
        parsed.workflow.unwrap()
    }

    const WORKFLOW: &str = "name: ci
on: push
env:
  A: 1
jobs:
  first:
    runs-on: x
    steps:
      - run: |
          echo é first
  # a comment between jobs
  second:
    runs-on: x
    needs: first
    steps:
      - run: echo \"${{ needs.first.result }}\"
  third:
    runs-on: x
    steps:
      - run: echo third
defaults:
  run:
    shell: bash
";

    #[test]
    fn each_job_alone_keeps_its_lines_positions_and_the_workflow_around_it() {
        let wf = whole(WORKFLOW);
        let lines = JobLines::of(WORKFLOW).unwrap();
        for keep in ["first", "second", "third"] {
            let text = lines.only(WORKFLOW, keep).unwrap();
            assert_eq!(text.len(), WORKFLOW.len());
            assert_eq!(text.lines().count(), WORKFLOW.lines().count());
            let reduced = whole(&text);
            assert_eq!(reduced.jobs.keys().collect::<Vec<_>>(), [keep]);
            let (job, was) = (&reduced.jobs[keep], &wf.jobs[keep]);
            assert_eq!(job.span, was.span);
            assert_eq!(job.needs, was.needs);
            assert_eq!(job.steps.len(), was.steps.len());
            for (step, was) in job.steps.iter().zip(&was.steps) {
                assert_eq!(step.run, was.run);
                assert_eq!(step.span.start, was.span.start);
            }
            assert_eq!(reduced.defaults, wf.defaults);
            assert_eq!(reduced.env, wf.env);
            assert_eq!(reduced.on, wf.on);
            // The others are gone from the text, not only from the model.
            for other in ["first", "second", "third"]
                .into_iter()
                .filter(|o| *o != keep)
            {
                assert!(!text.contains(&format!("echo {other}")), "{text}");
            }
        }
        // The last job ends where it did: it is all the same, its nodes' ends too.
        let text = lines.only(WORKFLOW, "third").unwrap();
        assert_eq!(whole(&text).jobs["third"], wf.jobs["third"]);
        // What is outside `jobs` stays as it was.
        let text = lines.only(WORKFLOW, "second").unwrap();
        assert!(
            text.ends_with("defaults:\n  run:\n    shell: bash\n"),
            "{text}"
        );
        assert!(text.starts_with("name: ci\non: push\n"), "{text}");
    }

    #[test]
    fn a_block_scalar_keeps_its_trailing_lines_and_an_alias_into_another_job_is_refused() {
        // The kept job's last step keeps its trailing lines (`|+`): the other job's lines
        // after them, made comments, end the scalar where its key did.
        let kept_lines = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: |+\n          echo a\n\n  b:\n    runs-on: x\n    steps:\n      - run: echo b\n";
        let wf = whole(kept_lines);
        let lines = JobLines::of(kept_lines).unwrap();
        let text = lines.only(kept_lines, "a").unwrap();
        let run = |w: &crate::Workflow| w.jobs["a"].steps[0].run.as_ref().map(|n| n.kind.clone());
        assert_eq!(run(&whole(&text)), run(&wf));
        assert_eq!(
            run(&wf),
            Some(NodeKind::Scalar("echo a\n\n".into(), yaml::Style::Block))
        );
        // An alias of an anchor in another job cannot be resolved without it: the whole text
        // is the one to parse.
        let aliased = "on: push\njobs:\n  a:\n    runs-on: &label x\n    steps:\n      - run: echo a\n  b:\n    runs-on: *label\n    steps:\n      - run: echo b\n";
        whole(aliased);
        let lines = JobLines::of(aliased).unwrap();
        assert!(lines.only(aliased, "b").is_none());
        assert!(lines.only(aliased, "a").is_some());
        // A job the workflow does not have is not made of nothing.
        assert!(lines.only(aliased, "c").is_none());
    }

    #[test]
    fn flow_style_jobs_are_not_reduced() {
        assert!(
            JobLines::of("on: push\njobs: {a: {runs-on: x, steps: [{run: echo}]}}\n").is_none()
        );
        assert!(
            JobLines::of("on: push\njobs:\n  a: {runs-on: x, steps: [{run: echo}]}\n").is_some()
        );
        assert!(JobLines::of("[not, a, workflow]").is_none());
    }
}
