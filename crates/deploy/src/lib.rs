//! Deployments over SSH: the `.pipewright/deploy.yml` model ([`config`]), the local deployer
//! ([`deployer`], driving the system `ssh` through one multiplexed connection per host) and
//! the host-side agent ([`agent`], the same `pipewright` binary run on the host) that holds the
//! lock, keeps the journal and runs LOCK, UPLOAD, PREPARE, BACKUP, MIGRATE, SWITCH, RESTART,
//! HEALTHCHECK, FINALIZE, rolling back when a step after the switch fails.
//!
//! `config`, `manifest` and `protocol` do no IO beyond what their callers hand them; this
//! crate knows nothing of workflows' execution, tokio or the command line.

pub mod agent;
pub mod compose;
pub mod config;
pub mod deployer;
pub mod dotenv;
pub mod error;
pub mod health;
pub mod manifest;
pub mod protocol;
pub mod record;
pub mod release;
pub mod ssh;
pub mod workflow_action;

pub use config::{DeployConfig, Environment, Settings, parse};
pub use deployer::{DeployOptions, Summary, Target, artifact_dir};
pub use error::Error;
pub use protocol::{Event, Holder, Outcome};
pub use release::ReleaseInfo;
