//! The in-process runner's own calls of the runner protocol, answered in place
//! ([`runner::InPlace`]): the next job, heartbeats, lines and reports go through the same
//! code as their routes (`runners`), for the runner whose credential the server made at its
//! start, without the loopback connection, the HTTP and the JSON each way. What a job's own
//! process asks (artifacts, caches, its source) still comes over HTTP with the job's token.

use runner::protocol::{self, Lease};
use runner::{Answer, Refused};

use super::error::ApiError;
use super::runners::{finish_for, heartbeat_for, logs_for, next_for, runner_by_hash};
use super::state::AppStateRef;

/// The server, as its in-process runner calls it.
pub(crate) struct InPlace {
    state: AppStateRef,
    /// The hash of the in-process runner's credential: the runner is looked up by it as
    /// a request would be (a runner removed by an admin is refused the same way).
    credential_hash: String,
}

impl InPlace {
    pub(crate) fn new(state: AppStateRef, credential: &str) -> InPlace {
        InPlace {
            state,
            credential_hash: super::token_hash(credential),
        }
    }

    async fn runner(&self) -> Result<std::sync::Arc<store::Runner>, ApiError> {
        runner_by_hash(&self.state, self.credential_hash.clone()).await
    }
}

/// An error of a route as the runner would have read it from the route's answer.
fn refused(e: ApiError) -> Refused {
    Refused {
        status: e.status(),
        message: e.message().to_owned(),
    }
}

impl runner::InPlace for InPlace {
    fn next(&self, wait_ms: u64) -> Answer<'_, Option<Lease>> {
        Box::pin(async move {
            let runner = self.runner().await.map_err(refused)?;
            next_for(&self.state, &runner, wait_ms)
                .await
                .map_err(refused)
        })
    }

    fn heartbeat<'a>(&'a self, job: i64, lease: &'a str) -> Answer<'a, protocol::HeartbeatReply> {
        Box::pin(async move {
            let runner = self.runner().await.map_err(refused)?;
            heartbeat_for(&self.state, &runner, job.into(), lease.to_owned())
                .await
                .map_err(refused)
        })
    }

    fn logs<'a>(
        &'a self,
        job: i64,
        lease: &'a str,
        batch: &'a protocol::LogBatch,
    ) -> Answer<'a, ()> {
        Box::pin(async move {
            let runner = self.runner().await.map_err(refused)?;
            logs_for(
                &self.state,
                &runner,
                job.into(),
                lease.to_owned(),
                batch.lines.clone(),
            )
            .await
            .map_err(refused)
        })
    }

    fn finish<'a>(
        &'a self,
        job: i64,
        lease: &'a str,
        finish: &'a protocol::Finish,
    ) -> Answer<'a, protocol::Finished> {
        Box::pin(async move {
            let runner = self.runner().await.map_err(refused)?;
            finish_for(
                &self.state,
                &runner,
                job.into(),
                lease.to_owned(),
                &finish.report,
                finish.lines.clone(),
                finish.next,
            )
            .await
            .map_err(refused)
        })
    }
}
