//! Which kind of server a session needs (`--upstream-target`, libpq's `target_session_attrs`)
//! and what a server said it is at login.
//!
//! PostgreSQL 14 and later report `in_hot_standby` and `default_transaction_read_only` as
//! ParameterStatus during every login, so pgseal learns a host's role from the logins it relays,
//! without credentials of its own. `in_hot_standby` is the host's role (shared by every session
//! on it); `default_transaction_read_only` may be set per role or database, so it is judged per
//! session and never recorded as the host's.

use clap::ValueEnum;
use serde::Deserialize;

/// The kind of server new sessions must reach, as libpq's `target_session_attrs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTarget {
    /// Any server that accepts the login (libpq's default).
    #[default]
    Any,
    /// A server where the session may write: not a standby, and
    /// `default_transaction_read_only` off.
    ReadWrite,
    /// A server where the session is read-only: a standby, or `default_transaction_read_only`
    /// on.
    ReadOnly,
    /// A primary (not in hot standby).
    Primary,
    /// A standby (in hot standby).
    Standby,
    /// A standby when one can be had, else any server.
    PreferStandby,
}

impl UpstreamTarget {
    /// The name as `--upstream-target` spells it.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamTarget::Any => "any",
            UpstreamTarget::ReadWrite => "read-write",
            UpstreamTarget::ReadOnly => "read-only",
            UpstreamTarget::Primary => "primary",
            UpstreamTarget::Standby => "standby",
            UpstreamTarget::PreferStandby => "prefer-standby",
        }
    }

    /// How good a host whose last known role is `role` (`None`: not known) is for this target,
    /// lower first: 0 what the target asks for, 1 not known yet, 2 acceptable but not preferred,
    /// 4 known not to fit. (3 is a host that last refused connections; see `roles`.)
    pub fn rank(self, role: Option<HostRole>) -> u8 {
        use HostRole::{Primary, Standby};
        match (self, role) {
            (UpstreamTarget::Any, _) => 0,
            (_, None) => 1,
            (UpstreamTarget::ReadWrite | UpstreamTarget::Primary, Some(Primary)) => 0,
            (UpstreamTarget::ReadWrite | UpstreamTarget::Primary, Some(Standby)) => 4,
            (UpstreamTarget::Standby, Some(Standby)) => 0,
            (UpstreamTarget::Standby, Some(Primary)) => 4,
            (UpstreamTarget::ReadOnly | UpstreamTarget::PreferStandby, Some(Standby)) => 0,
            // A primary session may still be read-only by its role's settings.
            (UpstreamTarget::ReadOnly | UpstreamTarget::PreferStandby, Some(Primary)) => 2,
        }
    }

    /// Whether a session that logged in with `report` may go on, or why not.
    pub fn admits(self, report: &SessionReport) -> Result<(), Mismatch> {
        if self == UpstreamTarget::Any || self == UpstreamTarget::PreferStandby {
            return Ok(());
        }
        let Some(role) = report.role() else {
            return Err(Mismatch::NotReported);
        };
        let read_only = role == HostRole::Standby || report.default_read_only == Some(true);
        let fits = match self {
            UpstreamTarget::ReadWrite => !read_only,
            UpstreamTarget::ReadOnly => read_only,
            UpstreamTarget::Primary => role == HostRole::Primary,
            UpstreamTarget::Standby => role == HostRole::Standby,
            UpstreamTarget::Any | UpstreamTarget::PreferStandby => true,
        };
        if fits {
            Ok(())
        } else {
            Err(Mismatch::Is(report.describe()))
        }
    }
}

impl std::fmt::Display for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A host's role, from `in_hot_standby`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRole {
    /// `in_hot_standby` off: a primary.
    Primary,
    /// `in_hot_standby` on: a standby replaying WAL.
    Standby,
}

impl HostRole {
    /// `primary` or `standby`.
    pub fn name(self) -> &'static str {
        match self {
            HostRole::Primary => "primary",
            HostRole::Standby => "standby",
        }
    }
}

/// Why a session's server is not of the kind asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The server did not report `in_hot_standby` (PostgreSQL before 14).
    NotReported,
    /// What the server is, e.g. `a standby (in_hot_standby=on)`.
    Is(String),
}

/// What the server reported at a session's login about its role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionReport {
    /// `in_hot_standby`, when reported.
    pub in_hot_standby: Option<bool>,
    /// `default_transaction_read_only`, when reported.
    pub default_read_only: Option<bool>,
}

impl SessionReport {
    /// Applies one ParameterStatus (name, value), if it is one of the two settings.
    pub fn apply(&mut self, name: &[u8], value: &[u8]) {
        let on = value.eq_ignore_ascii_case(b"on");
        match name {
            b"in_hot_standby" => self.in_hot_standby = Some(on),
            b"default_transaction_read_only" => self.default_read_only = Some(on),
            _ => {}
        }
    }

    /// The host's role, when `in_hot_standby` was reported.
    pub fn role(&self) -> Option<HostRole> {
        self.in_hot_standby.map(|standby| {
            if standby {
                HostRole::Standby
            } else {
                HostRole::Primary
            }
        })
    }

    /// What the server is, in words.
    pub fn describe(&self) -> String {
        match (self.role(), self.default_read_only) {
            (Some(HostRole::Standby), _) => "a standby (in_hot_standby=on)".into(),
            (Some(HostRole::Primary), Some(true)) => {
                "a primary where this session is read-only (default_transaction_read_only=on)"
                    .into()
            }
            (Some(HostRole::Primary), _) => "a primary (in_hot_standby=off)".into(),
            (None, _) => "of unknown role (it reports no in_hot_standby)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(standby: Option<bool>, read_only: Option<bool>) -> SessionReport {
        SessionReport {
            in_hot_standby: standby,
            default_read_only: read_only,
        }
    }

    #[test]
    fn targets_admit_what_libpq_would() {
        use UpstreamTarget::*;
        let primary = report(Some(false), Some(false));
        let read_only_primary = report(Some(false), Some(true));
        let standby = report(Some(true), Some(false));
        let old = report(None, None);
        for target in [Any, PreferStandby] {
            for r in [primary, read_only_primary, standby, old] {
                assert!(target.admits(&r).is_ok(), "{target} {r:?}");
            }
        }
        assert!(ReadWrite.admits(&primary).is_ok());
        assert!(ReadWrite.admits(&read_only_primary).is_err());
        assert!(ReadWrite.admits(&standby).is_err());
        assert_eq!(ReadWrite.admits(&old), Err(Mismatch::NotReported));
        assert!(Primary.admits(&read_only_primary).is_ok());
        assert!(Primary.admits(&standby).is_err());
        assert!(Standby.admits(&standby).is_ok());
        assert!(Standby.admits(&primary).is_err());
        assert!(ReadOnly.admits(&read_only_primary).is_ok());
        assert!(ReadOnly.admits(&standby).is_ok());
        assert!(ReadOnly.admits(&primary).is_err());
    }

    #[test]
    fn ranks_put_the_asked_for_role_first() {
        use HostRole::*;
        assert_eq!(UpstreamTarget::ReadWrite.rank(Some(Primary)), 0);
        assert_eq!(UpstreamTarget::ReadWrite.rank(None), 1);
        assert_eq!(UpstreamTarget::ReadWrite.rank(Some(Standby)), 4);
        assert_eq!(UpstreamTarget::PreferStandby.rank(Some(Standby)), 0);
        assert_eq!(UpstreamTarget::PreferStandby.rank(Some(Primary)), 2);
        assert_eq!(UpstreamTarget::Any.rank(None), 0);
    }

    #[test]
    fn parameter_status_is_read() {
        let mut r = SessionReport::default();
        r.apply(b"in_hot_standby", b"on");
        r.apply(b"default_transaction_read_only", b"off");
        r.apply(b"TimeZone", b"UTC");
        assert_eq!(r.role(), Some(HostRole::Standby));
        assert_eq!(r.default_read_only, Some(false));
    }
}
