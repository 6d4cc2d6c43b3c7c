//! Deployments the server knows of: started by a job's `pipewright/deploy` step (for the
//! job's own environment), finished with each host's phases and how it ended; the alerts
//! of a failed or rolled-back deployment are queued with its end.

use serde::Serialize;

use crate::alerts::{NewAlert, insert_alerts};
use crate::db::{Row, params};
use crate::{JobId, Result, RunId, Store, StoreError, now_ms, rows};

/// A deployment as it starts.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub repo: String,
    pub environment: String,
    pub version: String,
    pub sha: String,
    pub run_id: Option<RunId>,
    pub job_id: Option<JobId>,
    pub who: String,
    /// JSON list of host names.
    pub hosts: String,
    /// What the server watches once it has deployed.
    pub monitors: Vec<WatchedUrl>,
}

/// A URL an environment is watched at once a deployment to it has deployed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchedUrl {
    /// The monitor's name (`repo/environment`, with the host when there are several).
    pub name: String,
    pub url: String,
    pub expect_status: i64,
    pub interval_ms: i64,
}

/// A monitor an environment's last deployment asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentMonitor {
    pub repo: String,
    pub environment: String,
    #[serde(flatten)]
    pub watched: WatchedUrl,
}

/// How a deployment ended.
#[derive(Debug, Clone)]
pub struct DeploymentEnd {
    /// `deployed`, `failed`, `rolled_back`, `rollback_failed` or `locked`.
    pub status: String,
    pub release: Option<String>,
    pub message: String,
    /// JSON list of `{host, phase, status, ms, message}`.
    pub phases: String,
}

/// The statuses a deployment may end with.
pub const DEPLOYMENT_ENDS: [&str; 5] = [
    "deployed",
    "failed",
    "rolled_back",
    "rollback_failed",
    "locked",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub repo: String,
    pub environment: String,
    pub release: Option<String>,
    pub version: String,
    pub sha: String,
    pub run_id: Option<RunId>,
    pub job_id: Option<JobId>,
    pub who: String,
    /// `running`, then one of [`DEPLOYMENT_ENDS`].
    pub status: String,
    pub message: Option<String>,
    pub hosts: serde_json::Value,
    pub phases: serde_json::Value,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// An environment of a repository: its last deployment, and the one that serves (the last
/// that deployed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentState {
    pub repo: String,
    pub environment: String,
    pub current: Option<Deployment>,
    pub last: Deployment,
}

fn deployment_from_row(r: &Row) -> Result<Deployment> {
    let json = |name: &str| -> Result<serde_json::Value> {
        serde_json::from_str(&r.string(name)?).map_err(|_| StoreError::Column(name.to_owned()))
    };
    Ok(Deployment {
        id: r.i64("id")?,
        repo: r.string("repo")?,
        environment: r.string("environment")?,
        release: r.opt_string("release")?,
        version: r.string("version")?,
        sha: r.string("sha")?,
        run_id: r.opt_i64("run_id")?.map(RunId::from),
        job_id: r.opt_i64("job_id")?.map(JobId::from),
        who: r.string("who")?,
        status: r.string("status")?,
        message: r.opt_string("message")?,
        hosts: json("hosts")?,
        phases: json("phases")?,
        started_at: r.i64("started_at")?,
        finished_at: r.opt_i64("finished_at")?,
    })
}

impl Store {
    /// Records a deployment that starts now (`running`); its id.
    pub fn start_deployment(&self, new: &NewDeployment) -> Result<i64> {
        self.db.tx(|c| {
            let id = c
                .query_one(
                    "INSERT INTO deployments (repo, environment, version, sha, run_id, job_id, who,
                     status, hosts, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9) RETURNING id",
                    params![
                        &new.repo,
                        &new.environment,
                        &new.version,
                        &new.sha,
                        new.run_id.map(RunId::get),
                        new.job_id.map(JobId::get),
                        &new.who,
                        &new.hosts,
                        now_ms()
                    ],
                )?
                .first_i64()?;
            for w in &new.monitors {
                c.execute(
                    "INSERT INTO deployment_monitors
                         (deployment_id, name, url, expect_status, interval_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (deployment_id, name) DO NOTHING",
                    params![id, &w.name, &w.url, w.expect_status, w.interval_ms],
                )?;
            }
            Ok(id)
        })
    }

    /// Deployment `id`.
    pub fn deployment(&self, id: i64) -> Result<Deployment> {
        self.db.with(|c| {
            c.query_opt("SELECT * FROM deployments WHERE id = ?1", params![id])?
                .ok_or(StoreError::NoDeployment(id))
                .and_then(|r| deployment_from_row(&r))
        })
    }

    /// Ends running deployment `id` as `end` says and queues the alerts `alerts` makes of
    /// it, in one transaction; `None` if it was not running (ended before: nothing changes,
    /// nothing is told twice).
    pub fn finish_deployment(
        &self,
        id: i64,
        end: &DeploymentEnd,
        alerts: impl FnOnce(&Deployment) -> Vec<NewAlert>,
    ) -> Result<Option<Deployment>> {
        let now = now_ms();
        self.db.tx(|c| {
            let Some(row) = c.query_opt(
                "UPDATE deployments SET status = ?2, release = COALESCE(?3, release),
                     message = ?4, phases = ?5, finished_at = ?6
                 WHERE id = ?1 AND status = 'running' RETURNING *",
                params![
                    id,
                    &end.status,
                    end.release.as_deref(),
                    &end.message,
                    &end.phases,
                    now
                ],
            )?
            else {
                return Ok(None);
            };
            let d = deployment_from_row(&row)?;
            insert_alerts(c, &alerts(&d), now)?;
            Ok(Some(d))
        })
    }

    /// The `limit` latest deployments of `repo`'s `environment`, newest first.
    pub fn deployments(
        &self,
        repo: &str,
        environment: &str,
        limit: i64,
    ) -> Result<Vec<Deployment>> {
        self.db.with(|c| {
            rows(
                c.query(
                    "SELECT * FROM deployments WHERE repo = ?1 AND environment = ?2
                     ORDER BY id DESC LIMIT ?3",
                    params![repo, environment, limit],
                )?,
                deployment_from_row,
            )
        })
    }

    /// How many deployments ended each way, by repository and environment (for `/metrics`):
    /// (repo, environment, status, count), running ones left out.
    pub fn deployment_counts(&self) -> Result<Vec<(String, String, String, i64)>> {
        self.db.with(|c| {
            c.query(
                "SELECT repo, environment, status, COUNT(*) AS n FROM deployments
                 WHERE status <> 'running'
                 GROUP BY repo, environment, status ORDER BY repo, environment, status",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.string("repo")?,
                    r.string("environment")?,
                    r.string("status")?,
                    r.i64("n")?,
                ))
            })
            .collect()
        })
    }

    /// The monitors environments' last deployments that deployed asked for, by name (a
    /// name two environments ask for is the first's).
    pub fn environment_monitors(&self) -> Result<Vec<EnvironmentMonitor>> {
        let list = self.db.with(|c| {
            rows(
                c.query(
                    "SELECT d.repo, d.environment, m.name, m.url, m.expect_status, m.interval_ms
                     FROM deployment_monitors m
                     JOIN (SELECT MAX(id) AS id FROM deployments WHERE status = 'deployed'
                           GROUP BY repo, environment) l ON l.id = m.deployment_id
                     JOIN deployments d ON d.id = m.deployment_id
                     ORDER BY m.name, d.id",
                    &[],
                )?,
                |r| {
                    Ok(EnvironmentMonitor {
                        repo: r.string("repo")?,
                        environment: r.string("environment")?,
                        watched: WatchedUrl {
                            name: r.string("name")?,
                            url: r.string("url")?,
                            expect_status: r.i64("expect_status")?,
                            interval_ms: r.i64("interval_ms")?,
                        },
                    })
                },
            )
        })?;
        let mut out: Vec<EnvironmentMonitor> = Vec::with_capacity(list.len());
        for m in list {
            if !out.iter().any(|o| o.watched.name == m.watched.name) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every environment deployed to, by repository and name: its last deployment and the
    /// last one that deployed (what serves).
    pub fn environments(&self) -> Result<Vec<EnvironmentState>> {
        self.db.with(|c| {
            let last = rows(
                c.query(
                    "SELECT d.* FROM deployments d
                     JOIN (SELECT MAX(id) AS id FROM deployments GROUP BY repo, environment) m
                       ON m.id = d.id
                     ORDER BY d.repo, d.environment",
                    &[],
                )?,
                deployment_from_row,
            )?;
            let current = rows(
                c.query(
                    "SELECT d.* FROM deployments d
                     JOIN (SELECT MAX(id) AS id FROM deployments WHERE status = 'deployed'
                           GROUP BY repo, environment) m
                       ON m.id = d.id",
                    &[],
                )?,
                deployment_from_row,
            )?;
            Ok(last
                .into_iter()
                .map(|l| EnvironmentState {
                    repo: l.repo.clone(),
                    environment: l.environment.clone(),
                    current: current
                        .iter()
                        .find(|c| c.repo == l.repo && c.environment == l.environment)
                        .cloned(),
                    last: l,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::stores;

    fn new(env: &str, version: &str) -> NewDeployment {
        NewDeployment {
            repo: "acme/app".into(),
            environment: env.into(),
            version: version.into(),
            sha: "abc".into(),
            run_id: None,
            job_id: None,
            who: "ops".into(),
            hosts: "[\"web-1\"]".into(),
            monitors: vec![watched("acme/app/production", "http://web-1:8000/health")],
        }
    }

    fn watched(name: &str, url: &str) -> WatchedUrl {
        WatchedUrl {
            name: name.into(),
            url: url.into(),
            expect_status: 200,
            interval_ms: 60_000,
        }
    }

    fn end(status: &str) -> DeploymentEnd {
        DeploymentEnd {
            status: status.into(),
            release: Some("20261204-1".into()),
            message: "done".into(),
            phases: "[{\"host\":\"web-1\",\"phase\":\"migrate\",\"status\":\"ok\",\"ms\":12}]"
                .into(),
        }
    }

    #[test]
    fn environments_show_what_serves_and_what_happened_last() {
        for s in stores() {
            let backend = s.backend();
            let a = s.start_deployment(&new("production", "1.0")).unwrap();
            s.finish_deployment(a, &end("deployed"), |_| Vec::new())
                .unwrap()
                .unwrap();
            let b = s.start_deployment(&new("production", "2.0")).unwrap();
            let told = s
                .finish_deployment(b, &end("rolled_back"), |d| {
                    vec![NewAlert {
                        channel: "ops".into(),
                        event: "rolled_back".into(),
                        subject: format!("{} {}", d.environment, d.version),
                        body: "{}".into(),
                    }]
                })
                .unwrap()
                .unwrap();
            assert_eq!(told.status, "rolled_back", "{backend}");
            // Ended once: a second end changes and tells nothing.
            assert!(
                s.finish_deployment(b, &end("deployed"), |_| panic!("told twice"))
                    .unwrap()
                    .is_none(),
                "{backend}"
            );
            s.start_deployment(&new("staging", "2.1")).unwrap();
            let envs = s.environments().unwrap();
            assert_eq!(envs.len(), 2, "{backend}");
            let prod = &envs[0];
            assert_eq!(
                (
                    prod.environment.as_str(),
                    prod.last.status.as_str(),
                    prod.current.as_ref().map(|c| c.version.as_str())
                ),
                ("production", "rolled_back", Some("1.0")),
                "{backend}"
            );
            assert_eq!(prod.last.phases[0]["phase"], "migrate", "{backend}");
            assert_eq!(envs[1].last.status, "running", "{backend}");
            assert!(envs[1].current.is_none(), "{backend}");
            let list = s.deployments("acme/app", "production", 10).unwrap();
            assert_eq!(list.iter().map(|d| d.id).collect::<Vec<_>>(), [b, a]);
            assert_eq!(s.alerts(10).unwrap()[0].subject, "production 2.0");
            // The deployment that deployed gave production its monitor; the one rolled back
            // changed nothing, and staging (still running) has none yet.
            let watched_now = s.environment_monitors().unwrap();
            assert_eq!(watched_now.len(), 1, "{backend}");
            assert_eq!(
                (
                    watched_now[0].environment.as_str(),
                    watched_now[0].watched.url.as_str()
                ),
                ("production", "http://web-1:8000/health"),
                "{backend}"
            );
            // A later deployment's monitors replace the earlier ones.
            let mut later = new("production", "3.0");
            later.monitors = vec![
                watched("acme/app/production (web-1)", "http://web-1:8000/health"),
                watched("acme/app/production (web-2)", "http://web-2:8000/health"),
            ];
            let c = s.start_deployment(&later).unwrap();
            s.finish_deployment(c, &end("deployed"), |_| Vec::new())
                .unwrap();
            let names: Vec<String> = s
                .environment_monitors()
                .unwrap()
                .into_iter()
                .map(|m| m.watched.name)
                .collect();
            assert_eq!(
                names,
                ["acme/app/production (web-1)", "acme/app/production (web-2)"],
                "{backend}"
            );
            // Counted by result, the running one left out.
            let pair = |st: &str| {
                (
                    "acme/app".to_owned(),
                    "production".to_owned(),
                    st.to_owned(),
                )
            };
            let counts: Vec<_> = s.deployment_counts().unwrap();
            assert_eq!(
                counts,
                [(pair("deployed"), 2), (pair("rolled_back"), 1)]
                    .into_iter()
                    .map(|((r, e, st), n)| (r, e, st, n))
                    .collect::<Vec<_>>(),
                "{backend}"
            );
        }
    }
}
