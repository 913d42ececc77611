//! Time for budgets: a monotonic clock the ledgers read, injectable so tests control it.
//!
//! Budgets only ever compare instants of one clock, so a clock is a [`Duration`] since an
//! arbitrary origin. Production uses [`MonotonicClock`] (tokio's `Instant`, so tests running on
//! a paused tokio runtime see time move only when they sleep); unit tests use [`ManualClock`]
//! and move it by hand — no sleeps, no timing assertions. The PostgreSQL state store does not
//! use the local clock for its ledgers: it reads the database's clock, which every instance
//! shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic source of time for budgets.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time elapsed since the clock's origin; never decreases.
    fn now(&self) -> Duration;
}

/// The production clock: tokio's monotonic `Instant`, measured from the clock's creation.
#[derive(Debug)]
pub struct MonotonicClock {
    origin: tokio::time::Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// A shareable clock whose origin is now.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(Self::new())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

/// A clock that moves only when told to: for tests. Cheap to clone; clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at its origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// The clock as a shareable [`Clock`] (sharing this clock's time).
    pub fn shared(&self) -> Arc<dyn Clock> {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }
}

/// A [`Duration`] as whole microseconds, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
