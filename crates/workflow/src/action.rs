//! `action.yml` of local actions (`uses: ./path`) and offline copies of remote actions.

use indexmap::IndexMap;

use crate::diag::Diagnostic;
use crate::model::Step;
use crate::parse::Parser;
use crate::yaml::{self, Node};

/// How an action runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Runs {
    Composite(Vec<Step>),
    /// `node12`..`node24`: scripts run with the host's `node`.
    Node {
        using: String,
        main: String,
        pre: Option<String>,
        post: Option<String>,
        /// When `pre` runs (a condition; default `always()`).
        pre_if: Option<String>,
        /// When `post` runs (a condition; default `always()`).
        post_if: Option<String>,
    },
    /// `image`: `docker://NAME`, or a Dockerfile in the action's directory.
    Docker {
        image: String,
        entrypoint: Option<String>,
        /// The command's arguments, templates (they may use `inputs`).
        args: Vec<Node>,
        /// More variables, a mapping of templates.
        env: Option<Node>,
    },
}

/// An action's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    /// Input name -> default (a template), if any.
    pub inputs: IndexMap<String, Option<Node>>,
    /// Composite outputs: name -> value template.
    pub outputs: IndexMap<String, Node>,
    pub runs: Runs,
}

/// Parses an `action.yml`. Errors are diagnostics pointing into the file.
pub fn parse_action(src: &str) -> Result<Action, Vec<Diagnostic>> {
    let root = yaml::load(src).map_err(|d| vec![d])?;
    let mut p = Parser { diags: Vec::new() };
    let name = root
        .get("name")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut inputs = IndexMap::new();
    if let Some(m) = root.get("inputs").and_then(Node::as_map) {
        for (k, v) in m {
            inputs.insert(
                k.as_str().unwrap_or_default().to_owned(),
                v.get("default").cloned(),
            );
        }
    }
    let mut outputs = IndexMap::new();
    if let Some(m) = root.get("outputs").and_then(Node::as_map) {
        for (k, v) in m {
            if let Some(val) = v.get("value") {
                outputs.insert(k.as_str().unwrap_or_default().to_owned(), val.clone());
            }
        }
    }
    let Some(runs) = root.get("runs") else {
        return Err(vec![Diagnostic::error(
            "action.yml has no `runs` key",
            root.span,
        )]);
    };
    let using = runs
        .get("using")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_owned();
    let runs = match using.as_str() {
        "composite" => {
            let steps = match runs.get("steps").and_then(Node::as_seq) {
                Some(items) => items
                    .iter()
                    .filter_map(|s| p.step(s, crate::parse::Place::Action))
                    .collect(),
                None => {
                    return Err(vec![Diagnostic::error(
                        "a composite action needs `runs.steps`",
                        runs.span,
                    )]);
                }
            };
            Runs::Composite(steps)
        }
        u if u.starts_with("node") => {
            let get = |k: &str| runs.get(k).and_then(Node::as_str).map(str::to_owned);
            match get("main") {
                Some(main) => Runs::Node {
                    using: u.to_owned(),
                    main,
                    pre: get("pre"),
                    post: get("post"),
                    pre_if: get("pre-if"),
                    post_if: get("post-if"),
                },
                None => {
                    return Err(vec![Diagnostic::error(
                        "a node action needs `runs.main`",
                        runs.span,
                    )]);
                }
            }
        }
        "docker" => {
            let image = runs
                .get("image")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_owned();
            if image.is_empty() {
                return Err(vec![Diagnostic::error(
                    "a docker action needs `runs.image` (docker://NAME, or a Dockerfile)",
                    runs.span,
                )]);
            }
            Runs::Docker {
                image,
                entrypoint: runs
                    .get("entrypoint")
                    .and_then(Node::as_str)
                    .map(str::to_owned),
                args: runs
                    .get("args")
                    .and_then(Node::as_seq)
                    .map(<[Node]>::to_vec)
                    .unwrap_or_default(),
                env: runs.get("env").cloned(),
            }
        }
        other => {
            return Err(vec![Diagnostic::error(
                format!("unknown `runs.using`: `{other}` (expected composite, node20 or docker)"),
                runs.span,
            )]);
        }
    };
    if p.diags.iter().any(Diagnostic::is_error) {
        return Err(p.diags);
    }
    Ok(Action {
        name,
        inputs,
        outputs,
        runs,
    })
}
