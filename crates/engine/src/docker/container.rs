//! A container made for a job, in the engine's terms, and the Docker API's body for it.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
};

/// The settings of a container made for a job, in the engine's terms.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub image: String,
    pub env: Vec<(String, String)>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub workdir: Option<String>,
    /// `host path:container path[:ro]`, of the job's own directories only.
    pub binds: Vec<String>,
    /// Anonymous volumes: their paths in the container.
    pub volumes: Vec<String>,
    /// Container ports published on 127.0.0.1: (container port/protocol, host port or 0).
    pub publish: Vec<(String, u16)>,
    pub network: Option<String>,
    pub aliases: Vec<String>,
    pub labels: HashMap<String, String>,
    pub health: Option<workflow::container::HealthCheck>,
    pub options: workflow::container::CreateOptions,
}

impl Container {
    pub fn body(self) -> ContainerCreateBody {
        let o = self.options;
        let mut env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(o.env.iter().map(|(k, v)| format!("{k}={v}")));
        let mut labels = self.labels;
        labels.extend(o.labels);
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let healthcheck = self.health.map(|h| HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), h.cmd]),
            interval: Some(nanos(h.interval)),
            timeout: Some(nanos(h.timeout)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(nanos(h.start_period)),
            ..Default::default()
        });
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .publish
            .iter()
            .map(|(port, host)| {
                (
                    port.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(if *host == 0 {
                            String::new()
                        } else {
                            host.to_string()
                        }),
                    }]),
                )
            })
            .collect();
        let entrypoint = match o.entrypoint {
            Some(e) => Some(vec![e]),
            None => self.entrypoint,
        };
        let mut aliases = self.aliases;
        aliases.extend(o.aliases);
        let networking_config = self.network.as_ref().map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                n.clone(),
                EndpointSettings {
                    aliases: Some(aliases),
                    ..Default::default()
                },
            )])),
        });
        let tmpfs: HashMap<String, String> = o
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((p, opts)) => (p.to_owned(), opts.to_owned()),
                None => (t.clone(), String::new()),
            })
            .collect();
        ContainerCreateBody {
            image: Some(self.image),
            env: Some(env),
            entrypoint,
            cmd: self.cmd,
            working_dir: o.workdir.or(self.workdir),
            user: o.user,
            hostname: o.hostname,
            labels: Some(labels),
            healthcheck,
            volumes: (!self.volumes.is_empty()).then_some(self.volumes),
            exposed_ports: Some(self.publish.iter().map(|(p, _)| p.clone()).collect()),
            stop_signal: o.stop_signal,
            networking_config,
            host_config: Some(HostConfig {
                binds: Some(self.binds),
                port_bindings: Some(port_bindings),
                network_mode: self.network,
                memory: o.memory,
                nano_cpus: o.nano_cpus,
                shm_size: o.shm_size,
                init: o.init.then_some(true),
                readonly_rootfs: o.read_only.then_some(true),
                tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
                // Nothing a job starts gains privileges through set-user-ID binaries.
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
