//! One account's limiter, in memory or leasing from the shared store, and the one call the
//! registry makes on it: "may `n` rows go now?".

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use pgseal_policies::Budget;

use super::alert::{AlertEvent, AlertHub};
use super::clock::{Clock, micros};
use super::decision::{AccountKey, Limit};
use super::ledger::{Crossings, Grant, Ledger};
use super::shared::{SharedContext, SharedState};

/// The answer of one level (the role's budget, or the end user's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The rows may go; `alert` when past an alert-action limit.
    Rows { alert: Option<Limit> },
    /// Ask again after this long.
    Wait(Duration),
    /// Refused by `limit`.
    Block {
        limit: Limit,
        frees_in: Option<Duration>,
    },
}

/// What the limiters of one registry share: the clock, the alert sink, and the store's worker.
pub(crate) struct Context {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) alerts: AlertHub,
    pub(crate) shared: Option<SharedContext>,
}

/// Where a limiter keeps its state.
pub(crate) enum Kind {
    /// The whole ledger, here.
    Memory(Mutex<Ledger>),
    /// Tokens leased from the PostgreSQL store.
    Shared(SharedState),
}

/// What an account is held to: its class and budget, which a reloaded policy may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Terms {
    pub(crate) class: Arc<str>,
    pub(crate) budget: Budget,
}

/// One account's limiter.
pub(crate) struct Limiter {
    pub(crate) key: AccountKey,
    terms: RwLock<Terms>,
    pub(crate) kind: Kind,
}

impl Limiter {
    /// A limiter of `kind` held to `terms`.
    pub(crate) fn new(key: AccountKey, terms: Terms, kind: Kind) -> Self {
        Limiter {
            key,
            terms: RwLock::new(terms),
            kind,
        }
    }

    /// An in-memory limiter with a full bucket.
    pub(crate) fn memory(key: AccountKey, class: Arc<str>, budget: Budget, now: Duration) -> Self {
        let ledger = Ledger::new(&budget, micros(now));
        Self::new(
            key,
            Terms { class, budget },
            Kind::Memory(Mutex::new(ledger)),
        )
    }

    /// The budget the account is held to now.
    pub(crate) fn budget(&self) -> Budget {
        self.terms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .budget
    }

    /// The account's class now.
    pub(crate) fn class(&self) -> Arc<str> {
        Arc::clone(
            &self
                .terms
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .class,
        )
    }

    /// Whether the account is held to `terms`.
    pub(crate) fn holds_to(&self, terms: &Terms) -> bool {
        *self.terms.read().unwrap_or_else(PoisonError::into_inner) == *terms
    }

    /// Holds the account to the terms of a reloaded policy, in place: every statement using
    /// it, running or to come, counts in the same ledger under the new limits (a bucket fuller
    /// than the new burst is cut to it; a shared account's counts are in the store).
    pub(crate) fn set_terms(&self, terms: Terms) {
        // The ledger stays locked while the terms change, in the order `try_take` takes them
        // (ledger, then terms): no take can lease under the old budget in between.
        let ledger = match &self.kind {
            Kind::Memory(ledger) => {
                let mut held = ledger.lock().unwrap_or_else(PoisonError::into_inner);
                held.rebudget(&terms.budget);
                Some(held)
            }
            Kind::Shared(_) => None,
        };
        *self.terms.write().unwrap_or_else(PoisonError::into_inner) = terms;
        drop(ledger);
    }

    /// Asks for `n` rows now. Never blocks on I/O.
    pub(crate) fn try_take(self: &Arc<Self>, n: u64, ctx: &Context) -> Step {
        match &self.kind {
            Kind::Memory(ledger) => {
                let now = micros(ctx.clock.now());
                let (grant, crossings) = ledger
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .lease(&self.budget(), n, n, now);
                self.raise(ctx, crossings);
                step_of(grant)
            }
            Kind::Shared(state) => state.try_take(self, n, ctx),
        }
    }

    /// Gives back `n` rows this limiter just granted (the other level refused them).
    pub(crate) fn refund(&self, n: u64) {
        match &self.kind {
            Kind::Memory(ledger) => ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refund(&self.budget(), n),
            Kind::Shared(state) => state.refund(n),
        }
    }

    /// True when forgetting the limiter gives nothing away (see [`Ledger::at_rest`]).
    pub(crate) fn at_rest(&self, now: Duration) -> bool {
        match &self.kind {
            Kind::Memory(ledger) => ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .at_rest(&self.budget(), micros(now)),
            Kind::Shared(state) => state.is_idle_and_empty(),
        }
    }

    /// Raises an alert event for each limit newly crossed.
    pub(crate) fn raise(&self, ctx: &Context, crossings: Crossings) {
        if crossings.is_empty() {
            return;
        }
        let Terms { class, budget } = self
            .terms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (limit, action) in crossings.iter(&budget) {
            ctx.alerts
                .raise(&AlertEvent::new(&self.key, &class, &budget, limit, action));
        }
    }
}

/// A ledger's grant as a step.
pub(crate) fn step_of(grant: Grant) -> Step {
    match grant {
        Grant::Rows { alert, .. } => Step::Rows { alert },
        Grant::Wait { after_us } => Step::Wait(Duration::from_micros(after_us)),
        Grant::Block { limit, frees_in_us } => Step::Block {
            limit,
            frees_in: frees_in_us.map(Duration::from_micros),
        },
    }
}
