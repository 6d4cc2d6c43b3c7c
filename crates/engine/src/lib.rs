//! The engine: walks a workflow's job graph (its rules, without IO, in `graph`) and runs job
//! instances on the host. It turns a job of the model into processes (shells, the built-in
//! actions, local and offline copies of actions, and the [`Actions`] its driver gives it),
//! handles file and workflow commands, masks secrets, and reports what happens to a [`Sink`].
//!
//! The engine knows nothing of the command line, HTTP or databases, nor of deployments: the
//! binary, the server and the remote runner drive it. Where a job instance runs is the
//! [`JobRunner`] the walk is given ([`Local`]; the server's queue; [`Scripted`] in tests). A
//! single job can run alone ([`run_job`]) given the run's contexts and its needs' results,
//! which is what a remote runner does.

mod actions;
mod call;
pub mod commands;
mod concurrency;
pub mod confine;
pub mod docker;
mod error;
pub mod files;
mod graph;
mod job;
pub mod mask;
pub mod process;
pub mod report;
mod run;
mod run_env;
mod scripted;
mod secrets;
pub mod services;
pub mod sink;

pub use actions::artifact::artifact_name_error;
pub use actions::cache::{
    CacheError, CacheFuture, CacheHit, CacheStore, LocalCache, Saved as CacheSaved,
};
pub use actions::fetch::{ActionSource, availability, prefetch};
pub use actions::is_builtin;
pub use actions::registry::{
    Action, ActionFailed, ActionFuture, ActionOutputs, ActionStep, Actions,
};
pub use concurrency::{ConcurrencyGroups, GroupFuture, GroupGuard, Groups};
pub use error::DefinitionError;
pub use job::{
    HOST_VARIABLES, JobSpec, clear_engine_temp, environment_of, is_engine_temp_file,
    job_environment, make_first_step_files, run_job, runs_on,
};
pub use mask::Masker;
pub use report::{Conclusion, JobReport, RunReport, StepReport, WorkflowReport};
pub use run::{JobFuture, JobRunner, Local, Options, Planned, read_source_file, run, run_with};
pub use run_env::{Host, RunContext, RunEnv, Source};
pub use scripted::Scripted;
pub use secrets::Secrets;
pub use sink::{JobLabel, Level, Line, Sink};
