//! What pgseal last observed of each upstream host, shared by every session of the process:
//! its role as a login reported it, or that it refused connections, with when.
//!
//! New sessions try the hosts in the order [`HostRoles::order`] gives for the target: the hosts
//! known to fit first, then the ones not known yet, then the acceptable ones, then those that
//! last refused connections, and the hosts known not to fit last; the listed order breaks ties.
//! Every attempt updates the record, so a failover is learned by the first session that reaches
//! the promoted host (or is refused by the old one), and the sessions after it go straight there.

use std::sync::Mutex;
use std::time::Instant;

use super::target::{HostRole, UpstreamTarget};

/// The last thing learned of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Nothing yet (no session has tried it since pgseal started).
    Unknown,
    /// A login on it reported this role; `None` when the server reports no `in_hot_standby`.
    Answered(Option<HostRole>),
    /// The last connection to it failed, for this reason.
    Unreachable(String),
}

/// One host's record.
#[derive(Clone, Debug)]
pub struct HostRecord {
    /// What was last observed.
    pub observation: Observation,
    /// When (`None` for [`Observation::Unknown`]).
    pub at: Option<Instant>,
}

/// Records of every host, in the listed order. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct HostRoles {
    records: Mutex<Vec<HostRecord>>,
}

impl HostRoles {
    /// `hosts` records, all unknown.
    pub fn new(hosts: usize) -> HostRoles {
        let unknown = HostRecord {
            observation: Observation::Unknown,
            at: None,
        };
        HostRoles {
            records: Mutex::new(vec![unknown; hosts]),
        }
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> Vec<HostRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records what was observed of host `index` (ignored when out of range), and returns what
    /// was known before.
    pub fn record(&self, index: usize, observation: Observation) -> Option<Observation> {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let record = records.get_mut(index)?;
        let before = std::mem::replace(
            record,
            HostRecord {
                observation,
                at: Some(Instant::now()),
            },
        );
        Some(before.observation)
    }

    /// The hosts' indexes in the order new sessions try them for `target`.
    pub fn order(&self, target: UpstreamTarget) -> Vec<usize> {
        let records = self.snapshot();
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by_key(|&i| rank(target, &records[i].observation));
        order
    }

    /// The host new sessions go to first, when it is known to fit `target` (a login on it
    /// reported a fitting role, or, for `any`, it answered).
    pub fn serving(&self, target: UpstreamTarget) -> Option<usize> {
        let records = self.snapshot();
        let first = *self.order(target).first()?;
        match &records[first].observation {
            Observation::Answered(role) if target.rank(*role) == 0 => Some(first),
            _ => None,
        }
    }
}

/// A host's place for `target`: see [`UpstreamTarget::rank`]; 3 for a host that last refused.
fn rank(target: UpstreamTarget, observation: &Observation) -> u8 {
    match observation {
        Observation::Unknown => target.rank(None).min(1),
        Observation::Answered(None) => 1,
        Observation::Answered(role) => target.rank(*role),
        Observation::Unreachable(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failover_is_learned_and_reorders_the_hosts() {
        let roles = HostRoles::new(2);
        let target = UpstreamTarget::ReadWrite;
        assert_eq!(roles.order(target), vec![0, 1]);
        assert_eq!(roles.serving(target), None);
        roles.record(0, Observation::Answered(Some(HostRole::Primary)));
        roles.record(1, Observation::Answered(Some(HostRole::Standby)));
        assert_eq!(roles.order(target), vec![0, 1]);
        assert_eq!(roles.serving(target), Some(0));
        // The primary goes away: it is tried after hosts not known to refuse, before the
        // standby (which may come back as a primary… or the old one may).
        roles.record(0, Observation::Unreachable("connection refused".into()));
        assert_eq!(roles.order(target), vec![0, 1]);
        assert_eq!(roles.serving(target), None);
        roles.record(1, Observation::Answered(Some(HostRole::Primary)));
        assert_eq!(roles.order(target), vec![1, 0]);
        assert_eq!(roles.serving(target), Some(1));
        // prefer-standby: the standby first, once known.
        roles.record(0, Observation::Answered(Some(HostRole::Standby)));
        assert_eq!(roles.order(UpstreamTarget::PreferStandby), vec![0, 1]);
        assert_eq!(roles.order(target), vec![1, 0]);
        // Out of range is ignored.
        roles.record(7, Observation::Unknown);
    }

    #[test]
    fn any_keeps_the_listed_order_among_reachable_hosts() {
        let roles = HostRoles::new(3);
        roles.record(0, Observation::Unreachable("refused".into()));
        roles.record(2, Observation::Answered(Some(HostRole::Standby)));
        assert_eq!(roles.order(UpstreamTarget::Any), vec![1, 2, 0]);
        assert_eq!(roles.serving(UpstreamTarget::Any), None);
        roles.record(1, Observation::Answered(Some(HostRole::Primary)));
        assert_eq!(roles.serving(UpstreamTarget::Any), Some(1));
    }
}
