//! What pgseal last observed of each upstream host, shared by every session of the process:
//! its role as a login reported it, or that it refused connections, with when.
//!
//! New sessions try the hosts in the order [`HostRoles::order`] gives for the target: the hosts
//! known to fit first, then the ones not known yet, then the acceptable ones, then those that
//! last refused connections, and the hosts known not to fit last. The listed order breaks ties,
//! except among hosts that refused or did not fit, where the one observed longest ago comes
//! first (it is the likeliest to have changed: after a switchover, the demoted primary was seen
//! as a standby just now, the promoted one long ago). A refusal is forgotten after
//! [`RETRY_AFTER`] (the host is not known again), so a standby back from an outage is found
//! again by `prefer-standby` even while the primary answers.
//!
//! Every attempt updates the record, so a failover is learned by the first session that reaches
//! the promoted host (or is refused by the old one), and the sessions after it go straight there.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::target::{HostRole, UpstreamTarget};

/// How long a host that refused connections is tried after the others; then it is not known
/// again (one session tries it first, and records what it finds).
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

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
        order_at(&self.snapshot(), target, Instant::now())
    }

    /// The host new sessions go to first, when it is known to fit `target` (a login on it
    /// reported a fitting role, or, for `any`, it answered).
    pub fn serving(&self, target: UpstreamTarget) -> Option<usize> {
        let records = self.snapshot();
        let first = *order_at(&records, target, Instant::now()).first()?;
        match &records[first].observation {
            Observation::Answered(role) if target.rank(*role) == 0 => Some(first),
            _ => None,
        }
    }
}

/// The order of `records` for `target` at `now`.
fn order_at(records: &[HostRecord], target: UpstreamTarget, now: Instant) -> Vec<usize> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| {
        let record = &records[i];
        let rank = rank(target, record, now);
        // Among refused and unfit hosts, the oldest observation first; else the listed order
        // (the sort is stable).
        let age = if rank >= 3 {
            record
                .at
                .map_or(Duration::MAX, |at| now.saturating_duration_since(at))
        } else {
            Duration::ZERO
        };
        (rank, std::cmp::Reverse(age))
    });
    order
}

/// A host's place for `target`: see [`UpstreamTarget::rank`]; 3 for a host that refused
/// connections within [`RETRY_AFTER`].
fn rank(target: UpstreamTarget, record: &HostRecord, now: Instant) -> u8 {
    match &record.observation {
        Observation::Unknown | Observation::Answered(None) => target.rank(None),
        Observation::Answered(role) => target.rank(*role),
        Observation::Unreachable(_) => {
            let recent = record
                .at
                .is_some_and(|at| now.saturating_duration_since(at) < RETRY_AFTER);
            if recent { 3 } else { target.rank(None) }
        }
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
        // The primary goes away: it is tried before the standby (which may come back as a
        // primary… or the old one may).
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
        assert_eq!(roles.record(7, Observation::Unknown), None);
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
        assert_eq!(roles.order(UpstreamTarget::Any), vec![1, 2, 0]);
    }

    fn seen(observation: Observation, at: Instant) -> HostRecord {
        HostRecord {
            observation,
            at: Some(at),
        }
    }

    #[test]
    fn a_switchover_tries_the_host_seen_longest_ago_first() {
        // a was the primary, is now seen as a standby; b was seen as a standby long ago.
        let start = Instant::now();
        let later = start + Duration::from_secs(30);
        let records = [
            seen(Observation::Answered(Some(HostRole::Standby)), later),
            seen(Observation::Answered(Some(HostRole::Standby)), start),
        ];
        assert_eq!(order_at(&records, UpstreamTarget::ReadWrite, later), [1, 0]);
        assert_eq!(order_at(&records, UpstreamTarget::Primary, later), [1, 0]);
    }

    #[test]
    fn a_refusal_is_forgotten_after_a_while() {
        // prefer-standby: the standby refused, the primary answers.
        let start = Instant::now();
        let records = [
            seen(Observation::Answered(Some(HostRole::Primary)), start),
            seen(Observation::Unreachable("refused".into()), start),
        ];
        let target = UpstreamTarget::PreferStandby;
        assert_eq!(order_at(&records, target, start), [0, 1]);
        assert_eq!(order_at(&records, target, start + RETRY_AFTER), [1, 0]);
        // read-write: the primary that answers stays first.
        let records = [
            seen(Observation::Unreachable("refused".into()), start),
            seen(Observation::Answered(Some(HostRole::Primary)), start),
        ];
        let target = UpstreamTarget::ReadWrite;
        assert_eq!(order_at(&records, target, start + RETRY_AFTER), [1, 0]);
    }
}
