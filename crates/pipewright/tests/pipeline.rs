//! The seed's pipeline (test, build, deploy to staging or production) run end to end on the
//! example project, for each of its triggers.

mod common;

use std::path::Path;

use common::Repo;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == ".github" {
                continue;
            }
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn project() -> Repo {
    let r = Repo::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("../../examples/inner-architect"), r.path());
    let data = root.join("tests/data/pipelines");
    r.file(
        "tools/coverage_xml.py",
        &std::fs::read_to_string(data.join("coverage_xml.py")).unwrap(),
    );
    r.workflow(
        "ci-cd.yml",
        &std::fs::read_to_string(data.join("inner-architect-offline.yml")).unwrap(),
    );
    r.commit("The Inner Architect");
    r
}

const SECRETS: [&str; 6] = [
    "--secret",
    "STAGING_SERVER_IP=10.0.0.5",
    "--secret",
    "PRODUCTION_SERVER_IP=10.0.0.9",
    "--secret",
    "SSH_PRIVATE_KEY=very-private-key",
];

#[test]
fn push_to_development_tests_builds_and_deploys_to_staging() {
    let r = project();
    common::git(r.path(), &["checkout", "-q", "-b", "development"]);
    let run = r.run(&SECRETS);
    run.assert_code(0);
    assert_eq!(run.conclusion("test"), "success");
    assert_eq!(run.conclusion("build"), "success");
    assert_eq!(run.conclusion("deploy-staging"), "success");
    assert_eq!(run.conclusion("deploy-production"), "skipped");
    assert_eq!(run.job("deploy-staging")["environment"]["name"], "staging");
    let coverage = run.job("test")["coverage"]
        .as_f64()
        .expect("coverage recorded");
    assert!(coverage > 0.0 && coverage <= 100.0, "{coverage}");
    let lines = run.lines_of("deploy-staging");
    assert!(
        lines.contains(&"deploying to *** with key ***".to_owned()),
        "{}",
        run.all()
    );
    assert!(
        lines.iter().any(|l| l.starts_with("package has")),
        "{}",
        run.all()
    );
    assert!(!run.stdout.contains("very-private-key"));
}

#[test]
fn push_to_main_deploys_to_production() {
    let r = project();
    let run = r.run(&SECRETS);
    run.assert_code(0);
    assert_eq!(run.conclusion("deploy-staging"), "skipped");
    assert_eq!(run.conclusion("deploy-production"), "success");
}

#[test]
fn pull_request_only_tests() {
    let r = project();
    common::git(r.path(), &["checkout", "-q", "-b", "feature"]);
    let run = r.run(&["pull_request", "--base-ref", "development"]);
    run.assert_code(0);
    assert_eq!(run.conclusion("test"), "success");
    for skipped in ["build", "deploy-staging", "deploy-production"] {
        assert_eq!(run.conclusion(skipped), "skipped", "{skipped}");
    }
    // A push to a feature branch fires nothing.
    let run = r.run(&["push"]);
    run.assert_code(0);
    assert!(run.stdout.contains("fires no workflow"), "{}", run.all());
}

#[test]
fn a_failing_test_stops_the_pipeline() {
    let r = project();
    r.file(
        "tests/test_broken.py",
        "import unittest\n\nclass T(unittest.TestCase):\n    def test_fails(self):\n        self.assertEqual(1, 2)\n",
    );
    r.commit("break");
    let run = r.run(&SECRETS);
    run.assert_code(1);
    assert_eq!(run.conclusion("test"), "failure");
    assert_eq!(run.conclusion("build"), "skipped");
    assert_eq!(run.conclusion("deploy-production"), "skipped");
}
