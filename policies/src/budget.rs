//! Export budgets: how many rows an account may take out, and what happens past that.
//!
//! A budget is a token bucket in rows, `burst` deep and refilled at `rate`, plus optional caps
//! per rolling hour and per rolling day. Each row sent to a client for a result that touches a
//! sealed table takes one token (or every result row, with `counts = "all"`). When the bucket is
//! empty, `action` applies (`throttle` by default: the proxy stops reading from PostgreSQL until
//! tokens come back); past a cap, `on_cap` applies (`block` by default: an error after the rows
//! already sent). Every throttle, block or alert decision is audited; `alert` lets the rows
//! through and raises an alert.
//!
//! "Throttle then block" — the shape of a privileged account's budget — is `action = "throttle"`
//! with a daily cap and `on_cap = "block"`.
//!
//! The budget belongs to the account: the role ([`BudgetScope::Role`]), and, when the
//! application declares who its user is, each end user of the role ([`BudgetScope::EndUser`]):
//! a class's `end_user_budget` holds every end user to their own bucket and caps, on top of the
//! role's total.

use std::cmp::Ordering;
use std::fmt;
use std::time::Duration;

/// The unit of time of a [`Rate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
}

impl Period {
    /// The period's length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds())
    }

    fn seconds(&self) -> u64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
        }
    }
}

/// A refill rate: `rows` tokens every `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Rows per period, at least 1.
    pub rows: u64,
    /// The period.
    pub per: Period,
}

/// Why a written rate was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Not of the form `N/unit`.
    #[error("rate {0:?} is not of the form \"ROWS/UNIT\" with UNIT second, minute or hour")]
    Syntax(String),
    /// A rate of zero rows: nothing could ever be read.
    #[error("rate {0:?} lets no row through: to forbid a column, give it the view \"denied\"")]
    Zero(String),
}

impl Rate {
    /// Parses `100/minute` (units: `second`/`s`/`sec`, `minute`/`min`, `hour`/`h`; `_` may
    /// separate digits).
    pub fn parse(written: &str) -> Result<Self, RateError> {
        let syntax = || RateError::Syntax(written.to_owned());
        let (rows, unit) = written.split_once('/').ok_or_else(syntax)?;
        let rows = rows.trim().replace('_', "");
        if rows.is_empty() || !rows.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let rows: u64 = rows.parse().map_err(|_| syntax())?;
        let per = match unit.trim() {
            "second" | "s" | "sec" => Period::Second,
            "minute" | "min" => Period::Minute,
            "hour" | "h" => Period::Hour,
            _ => return Err(syntax()),
        };
        if rows == 0 {
            return Err(RateError::Zero(written.to_owned()));
        }
        Ok(Rate { rows, per })
    }

    /// The refill rate in rows per second.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.per.seconds() as f64
    }

    /// The time one token takes to come back.
    pub fn interval(&self) -> Duration {
        self.per.duration() / u32::try_from(self.rows).unwrap_or(u32::MAX)
    }

    /// Compares two rates exactly (whatever their periods).
    pub fn compare(&self, other: &Rate) -> Ordering {
        let a = u128::from(self.rows) * u128::from(other.per.seconds());
        let b = u128::from(other.rows) * u128::from(self.per.seconds());
        a.cmp(&b)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.rows, self.per.name())
    }
}

/// What happens when the bucket is empty or a cap is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Hold the rows back until tokens come back (backpressure; only for the rate).
    Throttle,
    /// Refuse with an error after the rows already sent; the session stays usable.
    Block,
    /// Let the rows through and raise an alert.
    Alert,
}

impl Action {
    /// Parses `throttle`, `block` or `alert`.
    pub fn parse(written: &str) -> Option<Self> {
        match written {
            "throttle" => Some(Action::Throttle),
            "block" => Some(Action::Block),
            "alert" => Some(Action::Alert),
            _ => None,
        }
    }

    /// 0 for the strictest (`block`), 2 for the most lenient (`alert`).
    fn leniency(&self) -> u8 {
        match self {
            Action::Block => 0,
            Action::Throttle => 1,
            Action::Alert => 2,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Action::Throttle => "throttle",
            Action::Block => "block",
            Action::Alert => "alert",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which result rows take tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counting {
    /// `counts = "sealed"` (the default): rows of results that touch a sealed table, whether or
    /// not the sealed columns are selected.
    SealedTables,
    /// `counts = "all"`: every result row.
    AllRows,
}

/// Whose budget it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetScope {
    /// One budget for the database role, shared by all its sessions.
    Role,
    /// One budget per end user the application declares (`pgseal_user` comment or
    /// `SET pgseal.end_user`), for each role of the class, on top of the role's own budget.
    EndUser,
}

/// An export budget, compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// The bucket's refill rate.
    pub rate: Rate,
    /// The bucket's depth in rows (defaults to the rate's rows per period).
    pub burst: u64,
    /// Rows allowed in any rolling hour, if capped.
    pub per_hour: Option<u64>,
    /// Rows allowed in any rolling day, if capped.
    pub per_day: Option<u64>,
    /// What happens when the bucket is empty.
    pub action: Action,
    /// What happens past a cap (`block` or `alert`).
    pub on_cap: Action,
    /// Which rows count.
    pub counts: Counting,
    /// Whose budget it is.
    pub scope: BudgetScope,
}

impl Budget {
    /// The budget of roles in no class when the policy has no `[default.budget]`, tightened by
    /// every class's budget: 10 rows/minute, burst 20, 100 per hour, 500 per day, block.
    pub const BUILT_IN_DEFAULT: Budget = Budget {
        rate: Rate {
            rows: 10,
            per: Period::Minute,
        },
        burst: 20,
        per_hour: Some(100),
        per_day: Some(500),
        action: Action::Block,
        on_cap: Action::Block,
        counts: Counting::SealedTables,
        scope: BudgetScope::Role,
    };

    /// The strictest of two budgets, dimension by dimension.
    pub fn tightened_by(&self, other: &Budget) -> Budget {
        let min_cap = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let stricter = |a: Action, b: Action| if b.leniency() < a.leniency() { b } else { a };
        Budget {
            rate: if other.rate.compare(&self.rate) == Ordering::Less {
                other.rate
            } else {
                self.rate
            },
            burst: self.burst.min(other.burst),
            per_hour: min_cap(self.per_hour, other.per_hour),
            per_day: min_cap(self.per_day, other.per_day),
            action: stricter(self.action, other.action),
            on_cap: stricter(self.on_cap, other.on_cap),
            counts: if self.counts == Counting::AllRows || other.counts == Counting::AllRows {
                Counting::AllRows
            } else {
                Counting::SealedTables
            },
            scope: self.scope,
        }
    }

    /// The first way in which this budget allows more than `other`, described for a message
    /// (`per_day 5000 is above 2000`), or `None` when it is at least as strict everywhere.
    pub fn looser_than(&self, other: &Budget) -> Option<String> {
        if self.rate.compare(&other.rate) == Ordering::Greater {
            return Some(format!("rate {} is above {}", self.rate, other.rate));
        }
        if self.burst > other.burst {
            return Some(format!("burst {} is above {}", self.burst, other.burst));
        }
        let cap = |name: &str, mine: Option<u64>, theirs: Option<u64>| match (mine, theirs) {
            (None, Some(t)) => Some(format!("{name} is unlimited where the other is {t}")),
            (Some(m), Some(t)) if m > t => Some(format!("{name} {m} is above {t}")),
            _ => None,
        };
        if let Some(why) = cap("per_hour", self.per_hour, other.per_hour) {
            return Some(why);
        }
        if let Some(why) = cap("per_day", self.per_day, other.per_day) {
            return Some(why);
        }
        if self.action.leniency() > other.action.leniency() {
            return Some(format!(
                "action {} is more lenient than {}",
                self.action, other.action
            ));
        }
        if self.on_cap.leniency() > other.on_cap.leniency() {
            return Some(format!(
                "on_cap {} is more lenient than {}",
                self.on_cap, other.on_cap
            ));
        }
        if self.counts == Counting::SealedTables && other.counts == Counting::AllRows {
            return Some("counts \"sealed\" counts fewer rows than \"all\"".to_owned());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: &str, burst: u64, hour: Option<u64>, day: Option<u64>) -> Budget {
        Budget {
            rate: Rate::parse(rate).unwrap(),
            burst,
            per_hour: hour,
            per_day: day,
            action: Action::Throttle,
            on_cap: Action::Block,
            counts: Counting::SealedTables,
            scope: BudgetScope::Role,
        }
    }

    #[test]
    fn rates_parse_and_compare() {
        let r = Rate::parse("100/minute").unwrap();
        assert_eq!(
            r,
            Rate {
                rows: 100,
                per: Period::Minute
            }
        );
        assert_eq!(r.to_string(), "100/minute");
        assert_eq!(Rate::parse(" 2_000 / s ").unwrap().rows, 2000);
        assert_eq!(Rate::parse("5/h").unwrap().per, Period::Hour);
        assert_eq!(r.interval(), Duration::from_millis(600));
        assert!((r.rows_per_second() - 100.0 / 60.0).abs() < 1e-9);
        assert_eq!(
            Rate::parse("60/minute")
                .unwrap()
                .compare(&Rate::parse("1/second").unwrap()),
            Ordering::Equal
        );
        assert_eq!(
            Rate::parse("61/minute")
                .unwrap()
                .compare(&Rate::parse("1/s").unwrap()),
            Ordering::Greater
        );
        for bad in ["100", "/minute", "x/minute", "100/day", "-1/s", "1.5/s", ""] {
            assert_eq!(
                Rate::parse(bad),
                Err(RateError::Syntax(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(Rate::parse("0/s"), Err(RateError::Zero("0/s".into())));
    }

    #[test]
    fn tightening_takes_the_strictest_of_each_dimension() {
        let a = budget("100/minute", 200, None, Some(2000));
        let mut b = budget("1/second", 50, Some(500), Some(10_000));
        b.action = Action::Alert;
        b.counts = Counting::AllRows;
        let t = a.tightened_by(&b);
        assert_eq!(t.rate, Rate::parse("1/second").unwrap());
        assert_eq!(t.burst, 50);
        assert_eq!(t.per_hour, Some(500));
        assert_eq!(t.per_day, Some(2000));
        assert_eq!(t.action, Action::Throttle);
        assert_eq!(t.counts, Counting::AllRows);
        assert_eq!(t.looser_than(&a), None);
        assert_eq!(t.looser_than(&b), None);
    }

    #[test]
    fn looser_than_names_the_first_dimension() {
        let strict = budget("10/minute", 20, Some(100), Some(500));
        let cases = [
            (
                budget("11/minute", 20, Some(100), Some(500)),
                "rate 11/minute is above 10/minute",
            ),
            (
                budget("10/minute", 21, Some(100), Some(500)),
                "burst 21 is above 20",
            ),
            (
                budget("10/minute", 20, None, Some(500)),
                "per_hour is unlimited where the other is 100",
            ),
            (
                budget("10/minute", 20, Some(100), Some(501)),
                "per_day 501 is above 500",
            ),
        ];
        for (loose, why) in cases {
            assert_eq!(loose.looser_than(&strict).as_deref(), Some(why));
            assert_eq!(strict.looser_than(&loose), None);
        }
        let mut alerting = strict;
        alerting.action = Action::Alert;
        assert_eq!(
            alerting.looser_than(&strict).as_deref(),
            Some("action alert is more lenient than throttle")
        );
    }

    #[test]
    fn built_in_default_is_strict() {
        let d = Budget::BUILT_IN_DEFAULT;
        assert_eq!(d.action, Action::Block);
        assert_eq!(d.on_cap, Action::Block);
        assert_eq!(d.counts, Counting::SealedTables);
        assert_eq!(d.rate.to_string(), "10/minute");
    }
}
