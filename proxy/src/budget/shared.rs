//! The instance's side of shared budgets: tokens leased from the store in batches, so the hot
//! path never waits on the database.
//!
//! Each account keeps the rows it has leased and not yet sent. `take` spends them under a mutex
//! and, when they run low, asks the store worker (one task, one connection) for another lease
//! in the background; while it is on its way, `take` answers `Wait` (a few milliseconds;
//! [`crate::budget::Account::acquire`] is woken as soon as it arrives). The store's refusals are
//! remembered until they can change (the time the bucket or cap needs, at most 30 s), so a
//! blocked or throttled account does not hit the store per row.
//!
//! **Lease size** (rows asked for at once): half a second of the rate, at most an eighth of the
//! burst, at least 1, at most 10,000 (`100/minute`, burst 200 → 1 row; `2000/second`, burst
//! 20,000 → 1,000 rows). Near a cap (less than four leases of room) the store grants only what is
//! needed, so no instance strands rows another could have used. Leased rows an instance does not
//! use within 10 s go back to the bucket (the caps keep counting them until they leave the
//! window: the safe direction); the rest go back at shutdown.
//!
//! **Store outage** (fail closed): leased rows in hand are still spent. Past them, a budget whose
//! actions are both `alert` lets rows through (they are reported to the store when it is back)
//! and raises a `store_unavailable` alert; a `throttle` budget waits (retrying every second); a
//! `block` budget refuses with SQLSTATE 58000. One alert per outage and account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use pgseal_policies::Action;
use tokio::sync::{Notify, mpsc};

use super::alert::AlertEvent;
use super::clock::Clock;
use super::decision::{AccountKey, Limit};
use super::ledger::Grant;
use super::limiter::{Context, Kind, Limiter, Step, step_of};
use super::store::Store;

/// How long `take` asks callers to wait while a lease is on its way.
pub(crate) const PENDING_WAIT: Duration = Duration::from_millis(20);
/// How long a store failure is remembered before the store is tried again.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Longest a refusal by a cap is remembered before the store is asked again.
pub(crate) const CAP_RECHECK: Duration = Duration::from_secs(30);
/// Leased rows unused this long go back to the store.
pub(crate) const IDLE_RETURN: Duration = Duration::from_secs(10);
/// How often the worker looks for idle leases.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The rows to lease at once for a budget (see the module documentation).
pub(crate) fn lease_size(budget: &pgseal_policies::Budget) -> u64 {
    let half_second = (budget.rate.rows_per_second() / 2.0).ceil() as u64;
    half_second.min(budget.burst / 8).clamp(1, 10_000)
}

/// The store's last refusal, remembered until it may change.
#[derive(Clone, Copy, Debug)]
struct Denial {
    until: Duration,
    step: Step,
}

#[derive(Debug, Default)]
struct LeaseState {
    /// Leased rows not yet sent.
    tokens: u64,
    /// The lease was granted past an alert-action limit.
    alert: Option<Limit>,
    denial: Option<Denial>,
    /// A lease request is queued or running.
    pending: bool,
    /// What the pending request asks for.
    need: u64,
    want: u64,
    /// Rows let through without a lease (alert-action budgets during an outage).
    overdraft: u64,
    /// When the store last failed for this account.
    failed_at: Option<Duration>,
    /// An outage alert was raised and the store has not answered since.
    outage_alerted: bool,
    /// Last time rows were asked for.
    last_used: Duration,
}

/// A shared account's local state.
pub(crate) struct SharedState {
    state: Mutex<LeaseState>,
    /// Woken when a lease answer arrives.
    pub(crate) arrived: Notify,
    lease: u64,
}

impl SharedState {
    pub(crate) fn new(lease: u64) -> Self {
        SharedState {
            state: Mutex::new(LeaseState::default()),
            arrived: Notify::new(),
            lease,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn try_take(&self, limiter: &Arc<Limiter>, n: u64, ctx: &Context) -> Step {
        let Some(shared) = &ctx.shared else {
            return Step::Block {
                limit: Limit::StoreUnavailable,
                frees_in: None,
            };
        };
        let now = ctx.clock.now();
        let mut s = self.lock();
        s.last_used = now;
        if s.tokens >= n {
            s.tokens -= n;
            let alert = s.alert;
            if s.tokens < self.lease.div_ceil(2)
                && !s.pending
                && s.denial.is_none()
                && s.failed_at.is_none()
            {
                // Prefetch: the next lease comes while these rows are sent.
                self.request(&mut s, limiter, shared, 1);
            }
            return Step::Rows { alert };
        }
        if let Some(denial) = s.denial {
            if now < denial.until {
                return match denial.step {
                    Step::Wait(_) => Step::Wait(denial.until - now),
                    other => other,
                };
            }
            s.denial = None;
        }
        if let Some(failed_at) = s.failed_at
            && now < failed_at + RETRY_AFTER_FAILURE
        {
            return fail_closed(&mut s, limiter, n, failed_at + RETRY_AFTER_FAILURE - now);
        }
        if !s.pending {
            let need = n - s.tokens;
            if !self.request(&mut s, limiter, shared, need) {
                // The worker is gone (after shutdown): as if the store were unreachable.
                s.failed_at = Some(now);
                return fail_closed(&mut s, limiter, n, RETRY_AFTER_FAILURE);
            }
        }
        Step::Wait(PENDING_WAIT)
    }

    /// Queues a lease request; false when the worker is gone.
    fn request(
        &self,
        s: &mut LeaseState,
        limiter: &Arc<Limiter>,
        shared: &SharedContext,
        need: u64,
    ) -> bool {
        s.pending = true;
        s.need = need;
        s.want = need.max(self.lease);
        if shared
            .requests
            .send(Request::Lease(limiter.clone()))
            .is_err()
        {
            s.pending = false;
            return false;
        }
        true
    }

    pub(crate) fn refund(&self, n: u64) {
        self.lock().tokens += n;
    }

    pub(crate) fn is_idle_and_empty(&self) -> bool {
        let s = self.lock();
        s.tokens == 0 && !s.pending && s.overdraft == 0
    }
}

/// What a budget does when its store cannot answer (see the module documentation).
fn fail_closed(s: &mut LeaseState, limiter: &Limiter, n: u64, retry_in: Duration) -> Step {
    let budget = &limiter.budget();
    if budget.action == Action::Alert && budget.on_cap == Action::Alert {
        s.overdraft += n;
        Step::Rows {
            alert: Some(Limit::StoreUnavailable),
        }
    } else if budget.action == Action::Throttle {
        Step::Wait(retry_in)
    } else {
        Step::Block {
            limit: Limit::StoreUnavailable,
            frees_in: None,
        }
    }
}

/// What the worker is asked to do.
pub(crate) enum Request {
    /// Lease rows for this account.
    Lease(Arc<Limiter>),
    /// Give every leased row back, then answer.
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

/// What shared limiters need from their registry.
pub(crate) struct SharedContext {
    pub(crate) requests: mpsc::UnboundedSender<Request>,
}

/// The registry's accounts, as the worker sees them (to sweep idle leases).
pub(crate) type Accounts = RwLock<HashMap<AccountKey, Arc<Limiter>>>;

/// The store worker: serves lease requests one at a time, returns idle leases, and gives
/// everything back at shutdown.
pub(crate) async fn worker(
    mut store: Store,
    mut requests: mpsc::UnboundedReceiver<Request>,
    registry: Weak<super::Inner>,
) {
    let mut sweep = crate::timer::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(Request::Lease(limiter)) => {
                    let Some(inner) = registry.upgrade() else { break };
                    serve_lease(&mut store, &limiter, &inner.context).await;
                }
                Some(Request::Shutdown(done)) => {
                    if let Some(inner) = registry.upgrade() {
                        return_leases(&mut store, &inner.accounts, &*inner.context.clock, None)
                            .await;
                    }
                    let _ = done.send(());
                    break;
                }
                None => break,
            },
            _ = sweep.tick() => {
                let Some(inner) = registry.upgrade() else { break };
                return_leases(
                    &mut store,
                    &inner.accounts,
                    &*inner.context.clock,
                    Some(IDLE_RETURN),
                )
                .await;
            }
        }
    }
}

async fn serve_lease(store: &mut Store, limiter: &Arc<Limiter>, ctx: &Context) {
    let Kind::Shared(state) = &limiter.kind else {
        return;
    };
    let (need, want, overdraft) = {
        let mut s = state.lock();
        (s.need, s.want, std::mem::take(&mut s.overdraft))
    };
    let result = store
        .lease(&limiter.key, &limiter.budget(), want, need, overdraft)
        .await;
    let now = ctx.clock.now();
    let mut raise_outage = false;
    {
        let mut s = state.lock();
        s.pending = false;
        match &result {
            Ok((grant, _)) => {
                s.failed_at = None;
                s.outage_alerted = false;
                match *grant {
                    Grant::Rows { rows, alert } => {
                        s.tokens += rows;
                        s.alert = alert;
                        s.denial = None;
                    }
                    Grant::Wait { after_us } => {
                        // Asked again after at most CAP_RECHECK: another instance may give
                        // leased rows back meanwhile.
                        let after = Duration::from_micros(after_us).min(CAP_RECHECK);
                        s.denial = Some(Denial {
                            until: now + after,
                            step: Step::Wait(after),
                        });
                    }
                    Grant::Block { frees_in_us, .. } => {
                        let remember = frees_in_us
                            .map(Duration::from_micros)
                            .unwrap_or(CAP_RECHECK)
                            .min(CAP_RECHECK);
                        s.denial = Some(Denial {
                            until: now + remember,
                            step: step_of(*grant),
                        });
                    }
                }
            }
            Err(err) => {
                s.overdraft += overdraft;
                s.failed_at = Some(now);
                if !s.outage_alerted {
                    s.outage_alerted = true;
                    raise_outage = true;
                    tracing::warn!(account = %limiter.key, "budget state store: {err}");
                }
            }
        }
    }
    match result {
        Ok((_, crossings)) => limiter.raise(ctx, crossings),
        Err(_) if raise_outage => {
            let action = if limiter.budget().action == Action::Alert
                && limiter.budget().on_cap == Action::Alert
            {
                Action::Alert
            } else if limiter.budget().action == Action::Throttle {
                Action::Throttle
            } else {
                Action::Block
            };
            ctx.alerts.raise(&AlertEvent::new(
                &limiter.key,
                &limiter.class(),
                &limiter.budget(),
                Limit::StoreUnavailable,
                action,
            ));
        }
        Err(_) => {}
    }
    state.arrived.notify_waiters();
}

/// Gives leased rows back to the store: those unused for `idle`, or all of them (`None`).
async fn return_leases(
    store: &mut Store,
    accounts: &Accounts,
    clock: &dyn Clock,
    idle: Option<Duration>,
) {
    let now = clock.now();
    let limiters: Vec<Arc<Limiter>> = accounts
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    for limiter in limiters {
        let Kind::Shared(state) = &limiter.kind else {
            continue;
        };
        let (rows, overdraft) = {
            let mut s = state.lock();
            let idle_enough = idle.is_none_or(|idle| now.saturating_sub(s.last_used) >= idle);
            if s.pending || !idle_enough || (s.tokens == 0 && s.overdraft == 0) {
                continue;
            }
            (
                std::mem::take(&mut s.tokens),
                std::mem::take(&mut s.overdraft),
            )
        };
        if overdraft > 0 {
            // Alert-mode rows sent during an outage: count them now.
            let _ = store
                .lease(&limiter.key, &limiter.budget(), 0, 0, overdraft)
                .await;
        }
        if rows > 0
            && let Err(err) = store.give_back(&limiter.key, &limiter.budget(), rows).await
        {
            tracing::debug!(account = %limiter.key, "returning {rows} leased rows: {err}");
        }
    }
}
