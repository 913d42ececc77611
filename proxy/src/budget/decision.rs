//! What an account is told when it asks for rows: [`Decision`], and the reasons that go with it.
//!
//! A decision is made for `n` rows at once, all or nothing. `Allow` and `Alert` let the rows go
//! (`Alert` when the account is past a limit whose action is `alert`); `Wait` asks the caller to
//! hold the rows and ask again after the given time (the `throttle` action, and, with the shared
//! store, a lease on its way); `Block` refuses them (the `block` action, a cap with
//! `on_cap = "block"`, a missing end user, or a state store that cannot be reached).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pgseal_policies::{Budget, BudgetScope};

/// SQLSTATE of a statement ended because a budget is exhausted: `53400`
/// (configuration_limit_exceeded — a limit the configuration sets has been reached).
pub const SQLSTATE_BUDGET_EXCEEDED: &str = "53400";
/// SQLSTATE of a statement refused because the class requires an end user and none was
/// declared: `42501` (insufficient_privilege).
pub const SQLSTATE_END_USER_REQUIRED: &str = "42501";
/// SQLSTATE of a statement refused because the shared budget state cannot be reached and the
/// budget fails closed: `58000` (system_error).
pub const SQLSTATE_BUDGET_STORE_UNAVAILABLE: &str = "58000";

/// Which limit of a budget is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The token bucket: `rate` and `burst`.
    Rate,
    /// The cap per rolling hour.
    PerHour,
    /// The cap per rolling day.
    PerDay,
    /// The class requires an end user and the session declared none.
    EndUserRequired,
    /// The shared state store could not be reached (fail-closed).
    StoreUnavailable,
}

impl Limit {
    /// The limit's name, as in the policy (`rate`, `per_hour`, `per_day`) or a fixed word.
    pub fn name(&self) -> &'static str {
        match self {
            Limit::Rate => "rate",
            Limit::PerHour => "per_hour",
            Limit::PerDay => "per_day",
            Limit::EndUserRequired => "end_user_required",
            Limit::StoreUnavailable => "store_unavailable",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whose budget an account is: a role, or one end user of a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    /// The database role the session authenticated as.
    pub role: Arc<str>,
    /// The end user the application declared, for end-user budgets.
    pub end_user: Option<Arc<str>>,
}

impl AccountKey {
    /// The account of a role.
    pub fn role(role: &str) -> Self {
        AccountKey {
            role: role.into(),
            end_user: None,
        }
    }

    /// The account of one end user of a role.
    pub fn end_user(role: &str, end_user: &str) -> Self {
        AccountKey {
            role: role.into(),
            end_user: Some(end_user.into()),
        }
    }

    /// [`BudgetScope::EndUser`] when the account is an end user's, else [`BudgetScope::Role`].
    pub fn scope(&self) -> BudgetScope {
        if self.end_user.is_some() {
            BudgetScope::EndUser
        } else {
            BudgetScope::Role
        }
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.end_user {
            None => write!(f, "role {}", self.role),
            Some(user) => write!(f, "end user {user:?} of role {}", self.role),
        }
    }
}

/// A limit that was exceeded, and whose budget it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Exceeded {
    /// The role's budget or the end user's.
    pub scope: BudgetScope,
    /// Which limit.
    pub limit: Limit,
}

/// Why rows were refused: which account's budget, which limit, and the parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockReason {
    /// The account whose budget refused.
    pub account: AccountKey,
    /// The class the role belongs to (`default` for roles the policy does not name).
    pub class: Arc<str>,
    /// Which limit refused.
    pub limit: Limit,
    /// The budget as the policy compiled it (absent for a missing end user).
    pub budget: Option<Budget>,
    /// How long until the limit would let the rows through, when known.
    pub frees_in: Option<Duration>,
}

impl BlockReason {
    /// The SQLSTATE the session should end the statement with (see the `SQLSTATE_*` constants).
    pub fn sqlstate(&self) -> &'static str {
        match self.limit {
            Limit::EndUserRequired => SQLSTATE_END_USER_REQUIRED,
            Limit::StoreUnavailable => SQLSTATE_BUDGET_STORE_UNAVAILABLE,
            Limit::Rate | Limit::PerHour | Limit::PerDay => SQLSTATE_BUDGET_EXCEEDED,
        }
    }

    /// The error message: which budget, which limit. Never contains data.
    pub fn message(&self) -> String {
        let whose = match &self.account.end_user {
            None => format!("role {} (class {})", self.account.role, self.class),
            Some(user) => format!(
                "end user {user:?} of role {} (class {})",
                self.account.role, self.class
            ),
        };
        match (self.limit, &self.budget) {
            (Limit::EndUserRequired, _) => format!(
                "role {} (class {}) must declare its end user to read sealed tables",
                self.account.role, self.class
            ),
            (Limit::StoreUnavailable, _) => format!(
                "export budget of {whose} cannot be checked: the budget state store is \
                 unreachable"
            ),
            (Limit::Rate, Some(b)) => format!(
                "export budget of {whose} exceeded: rate {} (burst {})",
                b.rate, b.burst
            ),
            (Limit::PerHour, Some(b)) => format!(
                "export budget of {whose} exceeded: {} rows per hour",
                b.per_hour.unwrap_or_default()
            ),
            (Limit::PerDay, Some(b)) => format!(
                "export budget of {whose} exceeded: {} rows per day",
                b.per_day.unwrap_or_default()
            ),
            (limit, None) => format!("export budget of {whose} exceeded: {limit}"),
        }
    }

    /// A hint for the ErrorResponse: when the budget frees up, or what to do.
    pub fn hint(&self) -> Option<String> {
        match self.limit {
            Limit::EndUserRequired => Some(
                "add /* pgseal_user='NAME' */ to the statement, or run SET pgseal.end_user = \
                 'NAME' first"
                    .to_owned(),
            ),
            Limit::StoreUnavailable => {
                Some("retry when pgseal's --state-url database answers again".to_owned())
            }
            _ => self.frees_in.map(|d| {
                format!(
                    "the rows already sent were delivered; the budget lets more through in about \
                     {}",
                    humanize(d)
                )
            }),
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// A duration rounded for people: `45s`, `12min`, `3h`.
pub(crate) fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64().ceil() as u64;
    if secs < 120 {
        format!("{}s", secs.max(1))
    } else if secs < 2 * 3600 {
        format!("{}min", secs.div_ceil(60))
    } else {
        format!("{}h", secs.div_ceil(3600))
    }
}

/// The answer to a request for rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The rows may go.
    Allow,
    /// The rows may go, but the account is past a limit whose action is `alert`.
    Alert(Exceeded),
    /// Hold the rows and ask again after this long (stop reading from PostgreSQL meanwhile).
    Wait(Duration),
    /// The rows may not go: end the statement with an error (see [`BlockReason::sqlstate`]).
    Block(Box<BlockReason>),
}

impl Decision {
    /// True for `Allow` and `Alert`: the rows may be sent.
    pub fn allows(&self) -> bool {
        matches!(self, Decision::Allow | Decision::Alert(_))
    }
}

/// The outcome of [`crate::budget::Account::acquire`]: the rows were let through (after
/// waiting as long as the budget required) or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The rows may go.
    Allowed {
        /// How long the caller was held back (throttling), zero when it was not.
        waited: Duration,
        /// Set when the rows went past a limit whose action is `alert`.
        alert: Option<Exceeded>,
    },
    /// The rows may not go.
    Blocked {
        /// How long the caller was held back before the refusal.
        waited: Duration,
        /// Why.
        reason: Box<BlockReason>,
    },
}

/// What happened to one statement's rows, for the audit event and metrics: feed it every
/// decision or acquisition of the statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows let through.
    pub rows_allowed: u64,
    /// Rows that had to wait before going.
    pub rows_throttled: u64,
    /// Total time spent waiting.
    pub waited: Duration,
    /// The first alert-action limit the rows went past.
    pub alert: Option<Exceeded>,
    /// The refusal that ended the statement, if any.
    pub blocked: Option<Box<BlockReason>>,
}

impl Tally {
    /// Records an acquisition of `rows` rows.
    pub fn record(&mut self, rows: u64, acquired: &Acquired) {
        match acquired {
            Acquired::Allowed { waited, alert } => {
                self.rows_allowed += rows;
                if !waited.is_zero() {
                    self.rows_throttled += rows;
                    self.waited += *waited;
                }
                if self.alert.is_none() {
                    self.alert = *alert;
                }
            }
            Acquired::Blocked { waited, reason } => {
                self.waited += *waited;
                if self.blocked.is_none() {
                    self.blocked = Some(reason.clone());
                }
            }
        }
    }

    /// The statement's budget outcome in one word: `block`, `alert`, `throttle` or `allow`
    /// (the most severe that happened).
    pub fn outcome(&self) -> &'static str {
        if self.blocked.is_some() {
            "block"
        } else if self.alert.is_some() {
            "alert"
        } else if self.rows_throttled > 0 {
            "throttle"
        } else {
            "allow"
        }
    }
}
