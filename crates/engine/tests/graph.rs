//! The job graph walked with a scripted runner: no process starts, each job instance ends as
//! the script says, so needs, `if`s, matrices, `fail-fast`, `max-parallel` and outputs are
//! checked on their own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::{
    Conclusion, JobLabel, Line, Options, Planned, RunEnv, RunReport, Scripted, Sink, Source,
};
use tokio_util::sync::CancellationToken;

/// Collects the annotations the graph writes.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Sink for Lines {
    fn job_started(&self, _: &JobLabel) {}
    fn step_started(&self, _: &JobLabel, _: &str) {}
    fn line(&self, _: &JobLabel, line: Line) {
        if let Line::Annotation { message, .. } = line {
            self.0.lock().unwrap().push(message);
        }
    }
    fn step_finished(&self, _: &JobLabel, _: &str, _: Conclusion, _: Duration) {}
    fn job_finished(&self, _: &JobLabel, _: Conclusion, _: Duration) {}
}

fn env(dir: &std::path::Path) -> Arc<RunEnv> {
    let mut github = expr::Map::new();
    github.insert("ref".into(), expr::Value::from("refs/heads/main"));
    Arc::new(RunEnv {
        context: engine::RunContext {
            github,
            secrets: engine::Secrets::new(),
            vars: expr::Map::new(),
            inputs: expr::Map::new(),
        },
        host: engine::Host {
            run_dir: dir.to_owned(),
            job_dir: None,
            source: Source::WorkingTree(dir.to_owned()),
            base_env: Vec::new(),
            action_dirs: Vec::new(),
            cache_dir: dir.join("cache"),
            cache_store: None,
            event_path: dir.join("event.json"),
            actions: engine::Actions::default(),
            this_machine_only: false,
            images: Vec::new(),
            action_source: None,
            docker_host: None,
        },
    })
}

/// Runs `yaml` with `script`: the report, the annotations.
async fn walk(yaml: &str, script: Arc<Scripted>) -> (RunReport, Vec<String>) {
    let parsed = workflow::parse(yaml);
    let wf = parsed.workflow.expect("a workflow");
    let dir = tempfile::tempdir().unwrap();
    let planned = Planned {
        file: ".github/workflows/ci.yml".into(),
        workflow: Arc::new(wf),
        text: None,
    };
    let lines = Arc::new(Lines::default());
    let options = Options {
        parallel: 8,
        only_job: None,
        groups: None,
    };
    let report = engine::run_with(
        vec![(planned, env(dir.path()))],
        lines.clone(),
        CancellationToken::new(),
        options,
        Arc::new(script),
    )
    .await;
    let annotations = lines.0.lock().unwrap().clone();
    (report, annotations)
}

/// (name, conclusion) of each job instance, in report order.
fn outcomes(r: &RunReport) -> Vec<(String, Conclusion)> {
    r.workflows[0]
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.conclusion))
        .collect()
}

fn pairs(v: &[(&str, Conclusion)]) -> Vec<(String, Conclusion)> {
    v.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

#[tokio::test]
async fn a_failure_skips_what_needs_it_unless_its_if_says_otherwise() {
    use Conclusion::*;
    let script = Arc::new(Scripted::new().ends("build", Failure));
    let (report, _) = walk(
        "on: push
jobs:
  lint: {runs-on: x, steps: [{run: 'true'}]}
  build: {runs-on: x, needs: lint, steps: [{run: 'true'}]}
  deploy: {runs-on: x, needs: [lint, build], steps: [{run: 'true'}]}
  notify: {runs-on: x, needs: deploy, if: failure(), steps: [{run: 'true'}]}
  report: {runs-on: x, needs: deploy, if: always(), steps: [{run: 'true'}]}
  after-deploy: {runs-on: x, needs: deploy, steps: [{run: 'true'}]}
",
        script.clone(),
    )
    .await;
    assert_eq!(
        outcomes(&report),
        pairs(&[
            ("lint", Success),
            ("build", Failure),
            ("deploy", Skipped),
            ("notify", Success),
            ("report", Success),
            ("after-deploy", Skipped),
        ])
    );
    assert_eq!(report.conclusion, Failure);
    let started = script.started();
    assert_eq!(started[..2], ["lint", "build"]);
    assert!(!started.contains(&"deploy".to_owned()));
}

#[tokio::test]
async fn fail_fast_cancels_the_instances_not_started_and_off_runs_them_all() {
    use Conclusion::*;
    let job = |fail_fast: bool| {
        format!(
            "on: push
jobs:
  test:
    runs-on: x
    strategy:
      fail-fast: {fail_fast}
      max-parallel: 1
      matrix:
        v: [1, 2, 3, 4]
    steps: [{{run: 'true'}}]
"
        )
    };
    let script = || Arc::new(Scripted::new().ends("test (2)", Failure));
    let s = script();
    let (report, _) = walk(&job(true), s.clone()).await;
    assert_eq!(
        outcomes(&report),
        pairs(&[
            ("test (1)", Success),
            ("test (2)", Failure),
            ("test (3)", Cancelled),
            ("test (4)", Cancelled),
        ])
    );
    assert_eq!(s.started(), ["test (1)", "test (2)"]);
    let s = script();
    let (report, _) = walk(&job(false), s.clone()).await;
    assert_eq!(
        outcomes(&report),
        pairs(&[
            ("test (1)", Success),
            ("test (2)", Failure),
            ("test (3)", Success),
            ("test (4)", Success),
        ])
    );
    assert_eq!(s.started().len(), 4);
    assert_eq!(report.conclusion, Failure);
}

#[tokio::test]
async fn max_parallel_bounds_the_instances_running_at_once() {
    let script = Arc::new(Scripted::new().taking(Duration::from_millis(30)));
    let (report, _) = walk(
        "on: push
jobs:
  test:
    runs-on: x
    strategy:
      max-parallel: 2
      matrix:
        v: [1, 2, 3, 4, 5, 6]
    steps: [{run: 'true'}]
",
        script.clone(),
    )
    .await;
    assert_eq!(report.conclusion, Conclusion::Success);
    assert_eq!(script.started().len(), 6);
    assert_eq!(script.most_running(), 2);
}

#[tokio::test]
async fn outputs_flow_through_needs_into_ifs() {
    use Conclusion::*;
    let script = Arc::new(Scripted::new().outputs("plan", &[("changed", "yes")]));
    let (report, _) = walk(
        "on: push
jobs:
  plan: {runs-on: x, steps: [{run: 'true'}]}
  apply: {runs-on: x, needs: plan, if: needs.plan.outputs.changed == 'yes', steps: [{run: 'true'}]}
  skip: {runs-on: x, needs: plan, if: needs.plan.outputs.changed == 'no', steps: [{run: 'true'}]}
",
        script,
    )
    .await;
    assert_eq!(
        outcomes(&report),
        pairs(&[("plan", Success), ("apply", Success), ("skip", Skipped)])
    );
}

#[tokio::test]
async fn a_concurrency_group_that_cannot_be_evaluated_fails_its_job_with_the_reason() {
    use Conclusion::*;
    let script = Arc::new(Scripted::new());
    let (report, annotations) = walk(
        "on: push
jobs:
  fine: {runs-on: x, steps: [{run: 'true'}]}
  deploy:
    runs-on: x
    concurrency: ${{ github.no_such_key }}
    steps: [{run: 'true'}]
",
        script.clone(),
    )
    .await;
    assert_eq!(
        outcomes(&report),
        pairs(&[("fine", Success), ("deploy", Failure)])
    );
    assert_eq!(script.started(), ["fine"]);
    assert!(
        annotations
            .iter()
            .any(|a| a.contains("job `deploy`") && a.contains("concurrency.group")),
        "{annotations:?}"
    );
}
