//! Actions the engine does not know itself: given to it by whoever drives it (the binary
//! registers `pipewright/deploy` and the Slack action), each under its `owner/repo` name.
//! Such an action sees only what [`ActionStep`] holds: its inputs, the step's environment,
//! the workspace and the `github` context; it writes log lines and sets outputs, nothing
//! else of the job.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use expr::Map;

/// What an action is given to run one step.
#[derive(Debug)]
pub struct ActionStep {
    /// The `uses:` value as written.
    pub uses: String,
    /// The step's `with:`, evaluated.
    pub inputs: Map,
    /// The step's process environment (the host's, GitHub's variables, the job's and the
    /// step's `env`).
    pub env: Vec<(String, String)>,
    pub workspace: PathBuf,
    /// The `github` context.
    pub github: Map,
    /// Log lines of the step (masked by the engine before anyone sees them).
    pub log: tokio::sync::mpsc::UnboundedSender<String>,
}

impl ActionStep {
    /// An input as a string (empty when absent), GitHub's coercion.
    pub fn input(&self, name: &str) -> String {
        expr::map_get(&self.inputs, name)
            .map(expr::Value::to_expr_string)
            .unwrap_or_default()
    }

    /// A required input: [`ActionFailed`] naming it when it is absent or empty.
    pub fn required(&self, name: &str) -> Result<String, ActionFailed> {
        let v = self.input(name);
        if v.is_empty() {
            return Err(ActionFailed(format!(
                "`{}`: input `{name}` is required",
                self.uses
            )));
        }
        Ok(v)
    }

    /// A variable of the step's environment.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Writes a line to the step's log.
    pub fn say(&self, line: impl Into<String>) {
        let _ = self.log.send(line.into());
    }
}

/// Why an action failed: the step fails with this message (masked).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionFailed(pub String);

/// The outputs an action set (`steps.<id>.outputs`).
pub type ActionOutputs = Vec<(String, String)>;

/// A running action step.
pub type ActionFuture = Pin<Box<dyn Future<Output = Result<ActionOutputs, ActionFailed>> + Send>>;

/// An action the engine runs by name.
pub trait Action: Send + Sync {
    fn run(&self, step: ActionStep) -> ActionFuture;
}

/// The actions given to the engine, by lowercase `owner/repo` name.
#[derive(Clone, Default)]
pub struct Actions(Arc<BTreeMap<String, Arc<dyn Action>>>);

impl Actions {
    /// Adds `action` under `name` (`owner/repo`, compared without case).
    pub fn register(&mut self, name: &str, action: impl Action + 'static) {
        Arc::make_mut(&mut self.0).insert(name.to_ascii_lowercase(), Arc::new(action));
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn Action>> {
        self.0.get(name).cloned()
    }

    /// The names registered.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
