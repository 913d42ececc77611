//! The audit events: one per statement that touches sealed data ([`AuditEvent`]), and one per
//! operation on the keyring ([`KeyEvent`]: its unwrap through an HSM at start, and what
//! `pgseal keys` does to it).

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

/// The HSM a keyring is wrapped by, as the audit trail names it: labels only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditHsm {
    /// The PKCS#11 module loaded.
    pub module: String,
    /// The token's label.
    pub token: String,
    /// The key-encryption key's label.
    pub key: String,
}

impl From<&pgseal_keys::HsmBinding> for AuditHsm {
    fn from(binding: &pgseal_keys::HsmBinding) -> Self {
        AuditHsm {
            module: binding.module.display().to_string(),
            token: binding.token.clone(),
            key: binding.key.clone(),
        }
    }
}

/// One operation on the keyring: `"type":"keys"` in the trail. It names the operation, the
/// keyring (file, id, versions) and the HSM's module, token and key labels — never key
/// material, never a PIN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyEvent {
    /// When, RFC 3339 UTC with microseconds.
    pub time: String,
    /// The pgseal command: `serve`, `keys rotate`, `keys rewrap`…
    pub command: String,
    /// `unwrap` (a wrapped keyring opened at start or at a reload), `wrap`, `unwrap-to-plain`,
    /// `rewrap`, `rotate`, `retire`, `reload` (policies and keyring put in force without a
    /// restart), `reload-refused` (a reload asked for and refused: the set in force stayed).
    pub operation: &'static str,
    /// The operating-system user who ran the command (`USER` or `LOGNAME`).
    pub user: Option<String>,
    /// The keyring file operated on.
    pub keyring: Option<String>,
    /// The file written, when the operation writes a new one (`wrap`, `unwrap-to-plain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
    /// The wrapped keyring's id (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyring_id: Option<String>,
    /// The readable (active and decrypt-only) versions, after the operation.
    pub versions: Vec<u32>,
    /// The active version, after the operation.
    pub active_version: u32,
    /// The version the operation created (`rotate`) or retired (`retire`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The HSM the keyring is wrapped by after the operation (or was unwrapped with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hsm: Option<AuditHsm>,
    /// For `rewrap`: the HSM key it was wrapped by before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_hsm: Option<AuditHsm>,
    /// Whether the operation generated the key-encryption key on the token.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key_created: bool,
    /// For `reload`: the policy files put in force with the keyring.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// For `reload`: the generation put in force (for `reload-refused`: the one that stays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// For `reload-refused`: why (files and lines of the policy or keyring problems; never a
    /// value or a key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl KeyEvent {
    /// An event for `operation` by `command` on a keyring whose versions and HSM origin are
    /// given (the state after the operation).
    pub fn new<'a>(
        command: &str,
        operation: &'static str,
        keyring: Option<&std::path::Path>,
        versions: impl IntoIterator<Item = &'a pgseal_keys::VersionInfo>,
        origin: Option<&pgseal_keys::HsmOrigin>,
    ) -> KeyEvent {
        let mut readable = Vec::new();
        let mut active_version = 0;
        for v in versions {
            match v.state() {
                pgseal_keys::KeyState::Retired => {}
                pgseal_keys::KeyState::Active => {
                    active_version = v.number();
                    readable.push(v.number());
                }
                _ => readable.push(v.number()),
            }
        }
        KeyEvent {
            time: AuditEvent::now(),
            command: command.to_owned(),
            operation,
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|u| !u.is_empty()),
            keyring: keyring.map(|p| p.display().to_string()),
            keyring_id: origin.map(pgseal_keys::HsmOrigin::keyring_id_hex),
            versions: readable,
            active_version,
            hsm: origin.map(|o| AuditHsm::from(&o.binding)),
            ..KeyEvent::default()
        }
    }
}
