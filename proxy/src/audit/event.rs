//! The audit event: one per statement that touches sealed data.

use serde::Serialize;

use crate::budget::Tally;

/// A sealed column a statement read or wrote, and the view the role got of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditColumn {
    /// `schema.table.column`.
    pub column: String,
    /// The view: `plaintext`, `masked`, `pseudonym`, `ciphertext`, `denied` (or `write` for a
    /// column written).
    pub view: String,
}

/// The statement's budget decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditBudget {
    /// `allow`, `throttle`, `alert` or `block` (the most severe that happened).
    pub decision: &'static str,
    /// The limit concerned (`rate`, `per_hour`, `per_day`, `end_user_required`,
    /// `store_unavailable`), for `alert` and `block`.
    pub limit: Option<&'static str>,
    /// Whose budget: `role` or `end_user`, for `alert` and `block`.
    pub scope: Option<&'static str>,
    /// Rows held back before they went.
    pub rows_throttled: u64,
    /// Time spent waiting for the budget, in milliseconds.
    pub waited_ms: u64,
}

impl From<&Tally> for AuditBudget {
    fn from(tally: &Tally) -> Self {
        let scope_name = |scope| match scope {
            pgseal_policies::BudgetScope::EndUser => "end_user",
            _ => "role",
        };
        let (limit, scope) = match (&tally.blocked, &tally.alert) {
            (Some(reason), _) => (
                Some(reason.limit.name()),
                Some(scope_name(reason.account.scope())),
            ),
            (None, Some(alert)) => (Some(alert.limit.name()), Some(scope_name(alert.scope))),
            (None, None) => (None, None),
        };
        AuditBudget {
            decision: tally.outcome(),
            limit,
            scope,
            rows_throttled: tally.rows_throttled,
            waited_ms: u64::try_from(tally.waited.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// One statement that touched sealed data. Build it when the statement ends and hand it to
/// [`crate::audit::AuditLog::record`]; the log adds `seq`, `type` and the chain's `mac`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// When the statement ended, RFC 3339 UTC with microseconds ([`AuditEvent::now`]).
    pub time: String,
    /// The role the session authenticated as.
    pub role: String,
    /// The end user the application declared, if any.
    pub end_user: Option<String>,
    /// The client's address (`ip:port`).
    pub client: Option<String>,
    /// The client's `application_name`.
    pub application_name: Option<String>,
    /// The database.
    pub database: Option<String>,
    /// The statement's fingerprint: no literal value ([`crate::audit::Fingerprint`]).
    pub fingerprint: String,
    /// The fingerprint's id, to group by.
    pub fingerprint_id: String,
    /// Sealed tables the statement touched, `schema.table`.
    pub tables: Vec<String>,
    /// Sealed columns it read or wrote, with the view given.
    pub columns: Vec<AuditColumn>,
    /// Rows returned to the client (or written, for a write).
    pub rows: u64,
    /// For a statement pgseal filtered or sorted itself on sealed columns: the rows it read
    /// from PostgreSQL to do so (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_scanned: Option<u64>,
    /// The budget decision.
    pub budget: AuditBudget,
    /// The SQLSTATE the statement ended with, when it failed or was refused.
    pub sqlstate: Option<String>,
}

impl AuditEvent {
    /// The current time in the events' format.
    pub fn now() -> String {
        humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
    }
}
