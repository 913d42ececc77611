//! The arithmetic of one account's budget: a token bucket and two rolling-window caps, in
//! integers, with no I/O and no clock of its own (every call is given the time).
//!
//! - **Bucket.** `tokens` refill at `rate` up to `burst`; the fractional part of a refill is
//!   kept exactly in `credit` (in row·µs), so a rate of 1 row per hour refills after exactly an
//!   hour however often it is read. A request for more than `burst` rows waits for a full bucket
//!   and leaves it in debt (negative tokens), so the long-run rate holds.
//! - **Caps.** A rolling hour is counted in 1-minute slots, a rolling day in 10-minute slots; the
//!   slot that straddles the window's start is counted whole, so the count over-estimates by at
//!   most one slot and a cap is never exceeded: a row counts against the hourly cap for 60 to 61
//!   minutes, against the daily cap for 24 h to 24 h 10 min. Only non-empty slots are stored (at
//!   most 61 + 145 per account).
//! - **Crossings.** Each limit has an "over" flag, set when a request goes past it (that is when
//!   an alert event is raised) and cleared only when the account is back well within it: the
//!   bucket full again, a cap's window back under 90 %. One alert per crossing, not per row.
//!
//! The in-memory registry keeps one [`Ledger`] per account behind a mutex; the PostgreSQL store
//! loads the same ledger from its row, runs the same code under the database's clock, and
//! writes it back.

use std::collections::VecDeque;

use pgseal_policies::{Action, Budget, Rate};

use super::decision::Limit;

/// Width of a slot of the hourly window, µs (1 minute).
pub(crate) const HOUR_SLOT_US: u64 = 60_000_000;
/// Slots in an hour.
pub(crate) const HOUR_SLOTS: u64 = 60;
/// Width of a slot of the daily window, µs (10 minutes).
pub(crate) const DAY_SLOT_US: u64 = 600_000_000;
/// Slots in a day.
pub(crate) const DAY_SLOTS: u64 = 144;

const OVER_RATE: u8 = 1;
const OVER_HOUR: u8 = 2;
const OVER_DAY: u8 = 4;

/// A rate's period in µs.
fn period_us(rate: &Rate) -> u128 {
    rate.per.duration().as_micros()
}

fn burst_i64(burst: u64) -> i64 {
    i64::try_from(burst).unwrap_or(i64::MAX)
}

/// The token bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Whole tokens; negative after a request larger than the burst.
    pub(crate) tokens: i64,
    /// The refill's fractional part, in row·µs (always below the rate's period in µs).
    pub(crate) credit: u64,
    /// When the bucket was last refilled, µs on the ledger's clock.
    pub(crate) updated: u64,
}

impl Bucket {
    fn refill(&mut self, rate: &Rate, burst: u64, now: u64) {
        if now <= self.updated {
            return;
        }
        let elapsed = now - self.updated;
        self.updated = now;
        let burst = burst_i64(burst);
        if self.tokens >= burst {
            self.tokens = burst;
            self.credit = 0;
            return;
        }
        let period = period_us(rate);
        let acc = u128::from(self.credit) + u128::from(elapsed) * u128::from(rate.rows);
        let added = i128::try_from(acc / period).unwrap_or(i128::MAX);
        let tokens = (i128::from(self.tokens).saturating_add(added)).min(i128::from(burst));
        self.tokens = i64::try_from(tokens).unwrap_or(burst);
        self.credit = if self.tokens >= burst {
            0
        } else {
            u64::try_from(acc % period).unwrap_or(0)
        };
    }

    /// µs until the bucket holds `need` tokens (0 when it already does).
    fn wait_for(&self, rate: &Rate, need: i64) -> u64 {
        if self.tokens >= need {
            return 0;
        }
        let deficit = (i128::from(need) - i128::from(self.tokens)) as u128;
        let required = (deficit * period_us(rate)).saturating_sub(u128::from(self.credit));
        let rows = u128::from(rate.rows);
        u64::try_from(required.div_ceil(rows)).unwrap_or(u64::MAX)
    }
}

/// A rolling window of rows, counted in fixed slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    slot_us: u64,
    slots: u64,
    /// (slot index, rows), oldest first, slots strictly increasing.
    entries: VecDeque<(u64, u64)>,
    total: u64,
}

impl Window {
    pub(crate) fn hourly() -> Self {
        Self::new(HOUR_SLOT_US, HOUR_SLOTS)
    }

    pub(crate) fn daily() -> Self {
        Self::new(DAY_SLOT_US, DAY_SLOTS)
    }

    fn new(slot_us: u64, slots: u64) -> Self {
        Window {
            slot_us,
            slots,
            entries: VecDeque::new(),
            total: 0,
        }
    }

    /// Rebuilds a window from `(slot, rows)` pairs as [`Window::pairs`] gives them; `None` when
    /// they are not strictly increasing slots with positive counts.
    pub(crate) fn with_pairs(mut self, pairs: &[(u64, u64)]) -> Option<Self> {
        let mut previous = None;
        for &(slot, rows) in pairs {
            if rows == 0 || previous.is_some_and(|p| slot <= p) {
                return None;
            }
            previous = Some(slot);
            self.total = self.total.checked_add(rows)?;
            self.entries.push_back((slot, rows));
        }
        Some(self)
    }

    /// The stored `(slot, rows)` pairs, oldest first.
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// Rows counted in the window, as of the last [`Window::expire`].
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn expire(&mut self, now: u64) {
        let current = now / self.slot_us;
        while let Some(&(slot, rows)) = self.entries.front() {
            if slot.saturating_add(self.slots) < current {
                self.entries.pop_front();
                self.total -= rows;
            } else {
                break;
            }
        }
    }

    fn add(&mut self, now: u64, rows: u64) {
        if rows == 0 {
            return;
        }
        let current = now / self.slot_us;
        match self.entries.back_mut() {
            Some((slot, count)) if *slot >= current => *count = count.saturating_add(rows),
            _ => self.entries.push_back((current, rows)),
        }
        self.total = self.total.saturating_add(rows);
    }

    fn remove(&mut self, rows: u64) {
        if let Some((_, count)) = self.entries.back_mut() {
            let taken = rows.min(*count);
            *count -= taken;
            self.total -= taken;
            if *count == 0 {
                self.entries.pop_back();
            }
        }
    }

    /// µs until `need` more rows fit under `cap`; `None` when they never can.
    fn frees_in(&self, now: u64, need: u64, cap: u64) -> Option<u64> {
        if need > cap {
            return None;
        }
        let mut total = self.total;
        for &(slot, rows) in &self.entries {
            total -= rows;
            if total.saturating_add(need) <= cap {
                let expires = (slot + self.slots + 1).saturating_mul(self.slot_us);
                return Some(expires.saturating_sub(now));
            }
        }
        Some(0)
    }
}

/// What a ledger grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `rows` rows are granted (at least the `need` asked for); `alert` when they go past a
    /// limit whose action is `alert`.
    Rows { rows: u64, alert: Option<Limit> },
    /// The bucket is short and the action is `throttle`: ask again in `after_us`.
    Wait { after_us: u64 },
    /// Refused by `limit`; it would let the rows through in `frees_in_us`, when known.
    Block {
        limit: Limit,
        frees_in_us: Option<u64>,
    },
}

/// Limits newly crossed by a request: the alert events to raise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Crossings(u8);

impl Crossings {
    /// Each limit crossed, with the action the budget takes there.
    pub(crate) fn iter(self, budget: &Budget) -> impl Iterator<Item = (Limit, Action)> {
        let on_cap = budget.on_cap;
        let action = budget.action;
        [
            (OVER_DAY, Limit::PerDay, on_cap),
            (OVER_HOUR, Limit::PerHour, on_cap),
            (OVER_RATE, Limit::Rate, action),
        ]
        .into_iter()
        .filter(move |(bit, _, _)| self.0 & bit != 0)
        .map(|(_, limit, action)| (limit, action))
    }

    /// True when no limit was crossed.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One account's budget state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ledger {
    pub(crate) bucket: Bucket,
    pub(crate) hour: Window,
    pub(crate) day: Window,
    /// Limits currently crossed (alert raised, not yet back within).
    pub(crate) over: u8,
}

impl Ledger {
    /// A fresh account: full bucket, nothing counted.
    pub(crate) fn new(budget: &Budget, now: u64) -> Self {
        Ledger {
            bucket: Bucket {
                tokens: burst_i64(budget.burst),
                credit: 0,
                updated: now,
            },
            hour: Window::hourly(),
            day: Window::daily(),
            over: 0,
        }
    }

    /// Keeps the counts under a new budget: a bucket fuller than the new burst is cut to it
    /// (limits already crossed stay crossed, so no alert is raised twice for one crossing).
    pub(crate) fn rebudget(&mut self, budget: &Budget) {
        self.bucket.tokens = self.bucket.tokens.min(burst_i64(budget.burst));
    }

    /// Brings the ledger to `now`: refill, expire old slots, clear the crossings the account
    /// is back well within.
    pub(crate) fn advance(&mut self, budget: &Budget, now: u64) {
        self.bucket.refill(&budget.rate, budget.burst, now);
        self.hour.expire(now);
        self.day.expire(now);
        if self.bucket.tokens >= burst_i64(budget.burst) {
            self.over &= !OVER_RATE;
        }
        let within = |window: &Window, cap: Option<u64>| {
            cap.is_none_or(|cap| u128::from(window.total) * 10 <= u128::from(cap) * 9)
        };
        if within(&self.hour, budget.per_hour) {
            self.over &= !OVER_HOUR;
        }
        if within(&self.day, budget.per_day) {
            self.over &= !OVER_DAY;
        }
    }

    /// Asks for rows at `now`: at least `need` (all or nothing), up to `want` when there is room
    /// (a lease), exactly `need` when a cap is near. Consumes what it grants.
    pub(crate) fn lease(
        &mut self,
        budget: &Budget,
        want: u64,
        need: u64,
        now: u64,
    ) -> (Grant, Crossings) {
        self.advance(budget, now);
        let want = want.max(need);
        let mut crossed = 0u8;
        let mut alert = None;
        let mut cap_room = u64::MAX;
        for (cap, limit, bit) in [
            (budget.per_day, Limit::PerDay, OVER_DAY),
            (budget.per_hour, Limit::PerHour, OVER_HOUR),
        ] {
            let Some(cap) = cap else { continue };
            let window = if limit == Limit::PerDay {
                &self.day
            } else {
                &self.hour
            };
            let used = window.total;
            if used.saturating_add(need) > cap {
                if self.over & bit == 0 {
                    self.over |= bit;
                    crossed |= bit;
                }
                if budget.on_cap == Action::Alert {
                    alert.get_or_insert(limit);
                } else {
                    let frees_in_us = window.frees_in(now, need, cap);
                    return (Grant::Block { limit, frees_in_us }, Crossings(crossed));
                }
            } else {
                cap_room = cap_room.min(cap - used);
            }
        }

        let need_tokens = burst_i64(need.min(budget.burst));
        if self.bucket.tokens >= need_tokens {
            let grant = if need > budget.burst {
                need
            } else {
                let rate_room = u64::try_from(self.bucket.tokens).unwrap_or(0);
                let near_cap = cap_room != u64::MAX && cap_room < want.saturating_mul(4);
                if near_cap {
                    need
                } else {
                    want.min(rate_room).min(cap_room).max(need)
                }
            };
            self.consume(budget, grant, now, false);
            return (Grant::Rows { rows: grant, alert }, Crossings(crossed));
        }

        if self.over & OVER_RATE == 0 {
            self.over |= OVER_RATE;
            crossed |= OVER_RATE;
        }
        let after_us = self.bucket.wait_for(&budget.rate, need_tokens);
        let grant = match budget.action {
            Action::Throttle => Grant::Wait { after_us },
            Action::Block => Grant::Block {
                limit: Limit::Rate,
                frees_in_us: Some(after_us),
            },
            Action::Alert => {
                self.consume(budget, want, now, true);
                Grant::Rows {
                    rows: want,
                    alert: Some(alert.unwrap_or(Limit::Rate)),
                }
            }
        };
        (grant, Crossings(crossed))
    }

    /// Counts `rows` as taken: out of the bucket (not below zero when `floor`), into the caps'
    /// windows.
    fn consume(&mut self, budget: &Budget, rows: u64, now: u64, floor: bool) {
        let rows_i = i64::try_from(rows).unwrap_or(i64::MAX);
        self.bucket.tokens = self.bucket.tokens.saturating_sub(rows_i);
        if floor {
            self.bucket.tokens = self.bucket.tokens.max(0);
        }
        if budget.per_hour.is_some() {
            self.hour.add(now, rows);
        }
        if budget.per_day.is_some() {
            self.day.add(now, rows);
        }
    }

    /// Rows that were passed without a grant (alert-action rows a shared instance let through
    /// while its store was asked): counted, never refused.
    pub(crate) fn force(&mut self, budget: &Budget, rows: u64, now: u64) {
        self.advance(budget, now);
        self.consume(budget, rows, now, true);
    }

    /// Undoes a grant of `rows` made at the same instant (a two-level request whose other level
    /// refused).
    pub(crate) fn refund(&mut self, budget: &Budget, rows: u64) {
        let rows_i = i64::try_from(rows).unwrap_or(i64::MAX);
        self.bucket.tokens = self
            .bucket
            .tokens
            .saturating_add(rows_i)
            .min(burst_i64(budget.burst));
        if budget.per_hour.is_some() {
            self.hour.remove(rows);
        }
        if budget.per_day.is_some() {
            self.day.remove(rows);
        }
    }

    /// Returns unused leased rows to the bucket only: the caps keep counting them (the safe
    /// direction) until they leave the window.
    pub(crate) fn give_back(&mut self, budget: &Budget, rows: u64, now: u64) {
        self.advance(budget, now);
        let rows_i = i64::try_from(rows).unwrap_or(i64::MAX);
        self.bucket.tokens = self
            .bucket
            .tokens
            .saturating_add(rows_i)
            .min(burst_i64(budget.burst));
    }

    /// True when the account is indistinguishable from a fresh one (full bucket, nothing
    /// counted, no crossing): it can be forgotten without giving anything away.
    pub(crate) fn at_rest(&mut self, budget: &Budget, now: u64) -> bool {
        self.advance(budget, now);
        self.bucket.tokens >= burst_i64(budget.burst)
            && self.hour.total == 0
            && self.day.total == 0
            && self.over == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_policies::{BudgetScope, Counting};

    const S: u64 = 1_000_000;

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

    fn take(l: &mut Ledger, b: &Budget, n: u64, now: u64) -> Grant {
        l.lease(b, n, n, now).0
    }

    #[test]
    fn the_bucket_refills_exactly() {
        // 1 row every 600 ms, read every 100 ms: exactly one token per 6 reads.
        let b = budget("100/minute", 2, None, None);
        let mut l = Ledger::new(&b, 0);
        assert_eq!(
            take(&mut l, &b, 2, 0),
            Grant::Rows {
                rows: 2,
                alert: None
            }
        );
        assert_eq!(take(&mut l, &b, 1, 0), Grant::Wait { after_us: 600_000 });
        for step in 1..6 {
            assert_eq!(
                take(&mut l, &b, 1, step * 100_000),
                Grant::Wait {
                    after_us: 600_000 - step * 100_000
                }
            );
        }
        assert_eq!(
            take(&mut l, &b, 1, 600_000),
            Grant::Rows {
                rows: 1,
                alert: None
            }
        );
        // A long pause fills the bucket to the burst and no further.
        l.advance(&b, 3600 * S);
        assert_eq!(l.bucket.tokens, 2);
        assert_eq!(l.bucket.credit, 0);
    }

    #[test]
    fn a_request_above_the_burst_waits_for_a_full_bucket_then_leaves_debt() {
        let b = budget("1/second", 5, None, None);
        let mut l = Ledger::new(&b, 0);
        assert_eq!(
            take(&mut l, &b, 8, 0),
            Grant::Rows {
                rows: 8,
                alert: None
            }
        );
        assert_eq!(l.bucket.tokens, -3);
        assert_eq!(take(&mut l, &b, 1, 0), Grant::Wait { after_us: 4 * S });
        assert_eq!(take(&mut l, &b, 8, 4 * S), Grant::Wait { after_us: 4 * S });
    }

    #[test]
    fn caps_block_and_free_up_as_the_window_rolls() {
        let b = budget("1000/second", 1000, Some(10), Some(15));
        let mut l = Ledger::new(&b, 0);
        assert_eq!(
            take(&mut l, &b, 10, 0),
            Grant::Rows {
                rows: 10,
                alert: None
            }
        );
        // Past the hourly cap: blocked until the first slot leaves the window (61 minutes).
        assert_eq!(
            take(&mut l, &b, 1, 30 * S),
            Grant::Block {
                limit: Limit::PerHour,
                frees_in_us: Some(61 * 60 * S - 30 * S)
            }
        );
        assert_eq!(
            take(&mut l, &b, 1, 61 * 60 * S),
            Grant::Rows {
                rows: 1,
                alert: None
            }
        );
        assert_eq!(
            take(&mut l, &b, 4, 62 * 60 * S),
            Grant::Rows {
                rows: 4,
                alert: None
            }
        );
        // 15 in the day: the daily cap is reported first.
        assert!(matches!(
            take(&mut l, &b, 1, 63 * 60 * S),
            Grant::Block {
                limit: Limit::PerDay,
                ..
            }
        ));
        assert_eq!(
            take(&mut l, &b, 1, (24 * 3600 + 10 * 60) * S),
            Grant::Rows {
                rows: 1,
                alert: None
            }
        );
    }

    #[test]
    fn a_cap_never_lets_more_through_in_any_rolling_window() {
        // Rows every 7 seconds for 3 hours against a 100-an-hour cap: count, in every hour-long
        // window, what was granted.
        let b = budget("1000/second", 1000, Some(100), None);
        let mut l = Ledger::new(&b, 0);
        let mut granted = Vec::new();
        for t in (0..3 * 3600).step_by(7) {
            if let Grant::Rows { rows, .. } = take(&mut l, &b, 1, t * S) {
                granted.push((t, rows));
            }
        }
        for start in (0..2 * 3600).step_by(60) {
            let in_window: u64 = granted
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + 3600)
                .map(|(_, r)| r)
                .sum();
            assert!(
                in_window <= 100,
                "{in_window} rows in the hour from {start}s"
            );
        }
        assert!(granted.len() >= 250, "the cap frees up: {}", granted.len());
    }

    #[test]
    fn actions_on_an_empty_bucket() {
        let mut b = budget("1/minute", 1, None, None);
        b.action = Action::Block;
        let mut l = Ledger::new(&b, 0);
        assert_eq!(
            take(&mut l, &b, 1, 0),
            Grant::Rows {
                rows: 1,
                alert: None
            }
        );
        assert_eq!(
            take(&mut l, &b, 1, 0),
            Grant::Block {
                limit: Limit::Rate,
                frees_in_us: Some(60 * S)
            }
        );
        b.action = Action::Alert;
        assert_eq!(
            take(&mut l, &b, 3, 0),
            Grant::Rows {
                rows: 3,
                alert: Some(Limit::Rate)
            }
        );
        assert_eq!(l.bucket.tokens, 0);
    }

    #[test]
    fn one_crossing_per_excursion() {
        let b = budget("1/second", 2, Some(100), None);
        let mut l = Ledger::new(&b, 0);
        assert!(l.lease(&b, 2, 2, 0).1.is_empty());
        let (_, crossed) = l.lease(&b, 1, 1, 0);
        assert_eq!(
            crossed.iter(&b).collect::<Vec<_>>(),
            [(Limit::Rate, Action::Throttle)]
        );
        // Still throttled a second later, after one token came back and went: no new crossing.
        assert!(l.lease(&b, 1, 1, S).1.is_empty());
        assert!(l.lease(&b, 1, 1, S).1.is_empty());
        // Once the bucket has been full again, the next shortage is a new crossing.
        l.advance(&b, 10 * S);
        l.lease(&b, 2, 2, 10 * S);
        assert!(!l.lease(&b, 1, 1, 10 * S).1.is_empty());
    }

    #[test]
    fn leases_take_what_there_is_room_for() {
        let b = budget("10/second", 100, None, Some(100_000));
        let mut l = Ledger::new(&b, 0);
        assert_eq!(
            l.lease(&b, 30, 1, 0).0,
            Grant::Rows {
                rows: 30,
                alert: None
            }
        );
        assert_eq!(
            l.lease(&b, 300, 1, 0).0,
            Grant::Rows {
                rows: 70,
                alert: None
            }
        );
        // Near a cap, only what is needed.
        let b = budget("1000/second", 1000, Some(100), None);
        let mut l = Ledger::new(&b, 0);
        assert_eq!(
            l.lease(&b, 30, 1, 0).0,
            Grant::Rows {
                rows: 1,
                alert: None
            }
        );
    }

    #[test]
    fn refunds_undo_and_rest_is_detected() {
        let b = budget("1/minute", 5, Some(50), Some(60));
        let mut l = Ledger::new(&b, 0);
        let fresh = l.clone();
        take(&mut l, &b, 3, 0);
        l.refund(&b, 3);
        assert_eq!(l, fresh);
        assert!(l.at_rest(&b, 0));
        take(&mut l, &b, 1, 0);
        assert!(!l.at_rest(&b, 0));
        l.give_back(&b, 1, 0);
        assert_eq!(l.bucket.tokens, 5);
        // The caps still count it until it leaves the day's window.
        assert!(!l.at_rest(&b, 3600 * S));
        assert!(l.at_rest(&b, (24 * 3600 + 600) * S));
    }

    #[test]
    fn windows_rebuild_from_valid_pairs_only() {
        let w = Window::hourly().with_pairs(&[(1, 2), (5, 3)]).unwrap();
        assert_eq!(w.total(), 5);
        assert_eq!(w.pairs().collect::<Vec<_>>(), [(1, 2), (5, 3)]);
        assert!(Window::hourly().with_pairs(&[(5, 2), (5, 3)]).is_none());
        assert!(Window::hourly().with_pairs(&[(1, 0)]).is_none());
        assert!(
            Window::hourly()
                .with_pairs(&[(1, u64::MAX), (2, 1)])
                .is_none()
        );
    }
}
