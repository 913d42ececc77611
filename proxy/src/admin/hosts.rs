//! What `/healthz` says of several upstream hosts: each one's probe (side by side, so a silent
//! host costs one timeout), its last known role with its age (learned from the logins pgseal
//! relays, `upstream::roles`), and the host new sessions go to (`serving:`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::health::probe_in_time;
use crate::config::UpstreamAddress;
use crate::upstream::roles::HostRoles;
use crate::upstream::target::UpstreamTarget;
use crate::upstream::{Upstream, describe};

/// The hosts `/healthz` reports on.
pub struct HostsView {
    hosts: Vec<UpstreamAddress>,
    roles: Arc<HostRoles>,
    target: UpstreamTarget,
    /// The last probe result of each host.
    probes: Mutex<Vec<Option<Result<(), String>>>>,
}

impl HostsView {
    /// A view of `upstream`, when it has several hosts or a target other than `any`.
    pub fn of(upstream: &Upstream) -> Option<HostsView> {
        let hosts = upstream.addresses();
        (hosts.len() > 1 || upstream.target() != UpstreamTarget::Any).then(|| HostsView {
            probes: Mutex::new(vec![None; hosts.len()]),
            hosts,
            roles: upstream.roles(),
            target: upstream.target(),
        })
    }

    /// Probes every host, each within `timeout`, side by side: `Ok` when one answered, else
    /// every host's reason.
    pub async fn probe_all(&self, timeout: Duration) -> Result<(), String> {
        let mut running = tokio::task::JoinSet::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let host = host.clone();
            running.spawn(async move { (i, probe_in_time(&host.host, host.port, timeout).await) });
        }
        let mut probes = vec![None; self.hosts.len()];
        while let Some(done) = running.join_next().await {
            if let Ok((i, result)) = done {
                probes[i] = Some(result);
            }
        }
        let result = if probes.iter().flatten().any(Result::is_ok) {
            Ok(())
        } else {
            Err(probes
                .iter()
                .flatten()
                .filter_map(|p| p.clone().err())
                .collect::<Vec<_>>()
                .join("; "))
        };
        *self.probes.lock().await = probes;
        result
    }

    /// Per host its probe and last known role, then `serving:` and the target.
    pub async fn lines(&self) -> String {
        let probes = self.probes.lock().await.clone();
        let records = self.roles.snapshot();
        let mut out = String::new();
        for (i, host) in self.hosts.iter().enumerate() {
            let probe = match probes.get(i).cloned().flatten() {
                Some(Ok(())) => "answers".to_string(),
                Some(Err(why)) => format!("does not answer ({why})"),
                None => "not probed".to_string(),
            };
            let role = match records.get(i) {
                Some(record) => {
                    let age = record
                        .at
                        .map(|at| format!(", {}s ago", at.elapsed().as_secs()))
                        .unwrap_or_default();
                    format!("{}{age}", describe(&record.observation))
                }
                None => "not tried yet".into(),
            };
            out.push_str(&format!("host {host}: {probe}; last seen: {role}\n"));
        }
        match self.roles.serving(self.target) {
            Some(i) => out.push_str(&format!(
                "serving: {} (target {})\n",
                self.hosts[i], self.target
            )),
            None => out.push_str(&format!(
                "serving: not known yet (target {}; no login has found a fitting host)\n",
                self.target
            )),
        }
        out
    }
}
