//! A run's job graph as SVG, drawn from the workflow's `needs`: one column per depth (a job
//! sits right of everything it needs), a matrix's instances grouped into one box with their
//! count, each box coloured by the instances' combined state and linked to its row in the
//! jobs table. The layout is a pure function of the workflow and the jobs, tested below.

use maud::{Markup, html};

/// One box: a workflow job and the run's instances of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub job_id: String,
    pub label: String,
    /// The state word the box is coloured by (`success`, `failure`, `running`, …).
    pub state: &'static str,
    /// The first instance's row in the jobs table.
    pub anchor: Option<store::JobId>,
    pub column: usize,
    pub row: usize,
}

/// Where the boxes go, and the edges between them (indices into the nodes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    pub nodes: Vec<Node>,
    pub edges: Vec<(usize, usize)>,
}

/// The state of a group of instances: a failure shows first, then what still moves.
fn combined(jobs: &[&store::Job]) -> &'static str {
    use store::{Conclusion as C, JobStatus as S};
    let any = |f: &dyn Fn(&store::Job) -> bool| jobs.iter().any(|j| f(j));
    if any(&|j| j.conclusion == Some(C::Failure)) {
        "failure"
    } else if any(&|j| j.status == S::Running) {
        "running"
    } else if any(&|j| j.status == S::Waiting) {
        "waiting"
    } else if any(&|j| j.status == S::Queued) {
        "queued"
    } else if any(&|j| j.conclusion == Some(C::Cancelled)) {
        "cancelled"
    } else if !jobs.is_empty() && jobs.iter().all(|j| j.conclusion == Some(C::Skipped)) {
        "skipped"
    } else if jobs.is_empty() {
        "pending"
    } else {
        "success"
    }
}

/// Lays out `workflow`'s jobs with the run's instances of each (`jobs`).
pub(crate) fn layout(workflow: &workflow::Workflow, jobs: &[store::Job]) -> Layout {
    let ids: Vec<&str> = workflow.jobs.keys().map(String::as_str).collect();
    let index = |id: &str| ids.iter().position(|x| *x == id);
    // Depth: the longest chain of `needs` above a job. A validated workflow has no cycle;
    // a job met again while its depth is computed counts as a root, so none loops.
    let mut depth: Vec<Option<usize>> = vec![None; ids.len()];
    fn depth_of(
        i: usize,
        workflow: &workflow::Workflow,
        ids: &[&str],
        depth: &mut Vec<Option<usize>>,
        visiting: &mut Vec<bool>,
    ) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        if visiting[i] {
            return 0;
        }
        visiting[i] = true;
        let job = &workflow.jobs[ids[i]];
        let d = job
            .needs
            .iter()
            .filter_map(|n| ids.iter().position(|x| *x == n.value))
            .map(|p| depth_of(p, workflow, ids, depth, visiting) + 1)
            .max()
            .unwrap_or(0);
        visiting[i] = false;
        depth[i] = Some(d);
        d
    }
    let mut visiting = vec![false; ids.len()];
    let mut rows_in_column: Vec<usize> = Vec::new();
    let mut nodes = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let column = depth_of(i, workflow, &ids, &mut depth, &mut visiting);
        if rows_in_column.len() <= column {
            rows_in_column.resize(column + 1, 0);
        }
        let row = rows_in_column[column];
        rows_in_column[column] += 1;
        let mine: Vec<&store::Job> = jobs.iter().filter(|j| j.job_id == *id).collect();
        let label = match mine.as_slice() {
            [one] => one.name.clone(),
            [] => (*id).to_owned(),
            many => {
                let first = &many[0].name;
                let base = first.split_once(" (").map_or(first.as_str(), |(b, _)| b);
                format!("{base} ×{}", many.len())
            }
        };
        nodes.push(Node {
            job_id: (*id).to_owned(),
            label,
            state: combined(&mine),
            anchor: mine.first().map(|j| j.id),
            column,
            row,
        });
    }
    let mut edges = Vec::new();
    for (to, id) in ids.iter().enumerate() {
        for need in &workflow.jobs[*id].needs {
            if let Some(from) = index(&need.value) {
                edges.push((from, to));
            }
        }
    }
    Layout { nodes, edges }
}

const W: usize = 180;
const H: usize = 34;
const GAP_X: usize = 56;
const GAP_Y: usize = 14;
const PAD: usize = 4;

fn x(column: usize) -> usize {
    PAD + column * (W + GAP_X)
}

fn y(row: usize) -> usize {
    PAD + row * (H + GAP_Y)
}

/// A label that fits its box: at most 24 characters, the rest cut with an ellipsis.
fn fit(label: &str) -> String {
    if label.chars().count() <= 24 {
        label.to_owned()
    } else {
        let mut s: String = label.chars().take(23).collect();
        s.push('…');
        s
    }
}

/// The graph as an inline SVG. Labels are text nodes (maud escapes them).
pub(crate) fn svg(l: &Layout) -> Markup {
    let columns = l.nodes.iter().map(|n| n.column + 1).max().unwrap_or(0);
    let rows = l.nodes.iter().map(|n| n.row + 1).max().unwrap_or(0);
    let width = 2 * PAD + columns * W + columns.saturating_sub(1) * GAP_X;
    let height = 2 * PAD + rows * H + rows.saturating_sub(1) * GAP_Y;
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Job graph"
            width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
            @for (from, to) in &l.edges {
                @let (a, b) = (&l.nodes[*from], &l.nodes[*to]);
                @let (x1, y1) = (x(a.column) + W, y(a.row) + H / 2);
                @let (x2, y2) = (x(b.column), y(b.row) + H / 2);
                @let mid = (x1 + x2) / 2;
                path.edge d={ "M" (x1) " " (y1) " C" (mid) " " (y1) " " (mid) " " (y2) " " (x2) " " (y2) } {}
            }
            @for n in &l.nodes {
                a href=(n.anchor.map_or(String::new(), |j| format!("#job-{j}"))) {
                    g class={ "node " (n.state) } data-job=(n.job_id) {
                        title { (n.label) " · " (n.state) }
                        rect x=(x(n.column)) y=(y(n.row)) width=(W) height=(H) rx="6" {}
                        circle cx=(x(n.column) + 14) cy=(y(n.row) + H / 2) r="5" {}
                        text x=(x(n.column) + 26) y=(y(n.row) + H / 2 + 5) { (fit(&n.label)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        id: i64,
        job_id: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) -> store::Job {
        store::Job {
            id: store::JobId::from(id),
            run_id: store::RunId::from(1),
            name: name.to_owned(),
            job_id: job_id.to_owned(),
            status: status.parse().expect("a job status"),
            conclusion: conclusion.map(|c| c.parse().expect("a conclusion")),
            started_at: None,
            finished_at: None,
            labels: "[]".to_owned(),
            runner_id: None,
            attempt: 1,
            reason: None,
            report: None,
            cancel_requested: false,
            log_archived: false,
            log_job: store::JobId::from(id),
        }
    }

    fn workflow(src: &str) -> workflow::Workflow {
        workflow::parse(src).valid().expect("a valid workflow")
    }

    const SEED: &str = "on: push
jobs:
  test:
    runs-on: x
    strategy: { matrix: { py: ['3.10', '3.11'] } }
    steps: [{ run: 'true' }]
  lint:
    runs-on: x
    steps: [{ run: 'true' }]
  build:
    needs: [test, lint]
    runs-on: x
    steps: [{ run: 'true' }]
  deploy:
    needs: build
    runs-on: x
    steps: [{ run: 'true' }]
  notify:
    needs: [test, deploy]
    runs-on: x
    steps: [{ run: 'true' }]
";

    #[test]
    fn columns_follow_the_longest_chain_of_needs_and_a_matrix_is_one_box() {
        let jobs = vec![
            job(1, "test", "test (3.10)", "completed", Some("success")),
            job(2, "test", "test (3.11)", "completed", Some("failure")),
            job(3, "lint", "lint", "completed", Some("success")),
            job(4, "build", "build", "completed", Some("skipped")),
        ];
        let l = layout(&workflow(SEED), &jobs);
        let at: Vec<(&str, &str, &str, usize, usize)> = l
            .nodes
            .iter()
            .map(|n| {
                (
                    n.job_id.as_str(),
                    n.label.as_str(),
                    n.state,
                    n.column,
                    n.row,
                )
            })
            .collect();
        assert_eq!(
            at,
            vec![
                ("test", "test ×2", "failure", 0, 0),
                ("lint", "lint", "success", 0, 1),
                ("build", "build", "skipped", 1, 0),
                ("deploy", "deploy", "pending", 2, 0),
                ("notify", "notify", "pending", 3, 0),
            ]
        );
        assert_eq!(l.edges, vec![(0, 2), (1, 2), (2, 3), (0, 4), (3, 4)]);
        assert_eq!(l.nodes[0].anchor, Some(store::JobId::from(1)));
        assert_eq!(l.nodes[3].anchor, None);
    }

    #[test]
    fn a_group_shows_what_still_moves_before_what_is_done() {
        let running = [
            job(1, "t", "t (a)", "completed", Some("success")),
            job(2, "t", "t (b)", "running", None),
        ];
        assert_eq!(combined(&running.iter().collect::<Vec<_>>()), "running");
        let waiting = [job(1, "d", "d", "waiting", None)];
        assert_eq!(combined(&waiting.iter().collect::<Vec<_>>()), "waiting");
        let cancelled = [
            job(1, "t", "t (a)", "completed", Some("cancelled")),
            job(2, "t", "t (b)", "completed", Some("success")),
        ];
        assert_eq!(combined(&cancelled.iter().collect::<Vec<_>>()), "cancelled");
    }

    #[test]
    fn labels_are_text_and_long_ones_are_cut() {
        let wf = workflow(
            "on: push
jobs:
  x:
    runs-on: x
    steps: [{ run: 'true' }]
",
        );
        let jobs = vec![job(
            7,
            "x",
            "<script>alert(1)</script> and a very long name",
            "queued",
            None,
        )];
        let out = svg(&layout(&wf, &jobs)).into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(
            out.contains(">&lt;script&gt;alert(1)&lt;/scrip…</text>"),
            "{out}"
        );
        assert!(
            out.contains(
                "<title>&lt;script&gt;alert(1)&lt;/script&gt; and a very long name · queued</title>"
            ),
            "{out}"
        );
        assert!(out.contains("href=\"#job-7\""), "{out}");
        assert!(out.contains("class=\"node queued\""), "{out}");
    }
}
