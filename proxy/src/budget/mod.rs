//! Export budgets: how many rows each account may take out of pgseal, how fast, and what happens
//! past that.
//!
//! A [`Budgets`] registry holds one limiter per account — a role, or one end user of a role —
//! created on first use with its class's budget from the policy. The session asks an
//! [`Account`] for rows as they leave pgseal: [`Account::take`] answers at once
//! ([`Decision::Allow`], [`Decision::Alert`], [`Decision::Wait`] or [`Decision::Block`]);
//! [`Account::acquire`] does the waiting too. A row counts against the end user's budget and the
//! role's (both must let it through). Crossing a limit raises one alert event per crossing, to
//! the sink given with [`Budgets::set_alert_sink`] (the log by default).
//!
//! State lives in memory ([`Budgets::in_memory`]: one instance; budgets restart full when pgseal
//! restarts) or in PostgreSQL ([`Budgets::shared`], `--state-url`: instances in front of one
//! database share every account's budget, which survives restarts); see the `ledger` module
//! for the arithmetic, and `shared` for leases and what a store outage does.
//!
//! Cost: an in-memory `take(1)` is two short mutex sections (end user, role) and a few integer
//! operations — about 0.1 µs; call it per DataRow.

mod alert;
mod clock;
mod decision;
mod ledger;
mod limiter;
mod shared;
mod store;
mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use pgseal_policies::{Budget, ClassId, CompiledPolicy, Counting};
use tokio::sync::mpsc;

pub use alert::{AlertEvent, AlertSink, CollectAlerts, FanOut, LogAlerts, describe};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decision::{
    AccountKey, Acquired, BlockReason, Decision, Exceeded, Limit, SQLSTATE_BUDGET_EXCEEDED,
    SQLSTATE_BUDGET_STORE_UNAVAILABLE, SQLSTATE_END_USER_REQUIRED, Tally,
};
pub use store::StoreError;
pub use webhook::{WebhookError, WebhookSender, WebhookStats};

use alert::AlertHub;
use limiter::{Context, Kind, Limiter, Step, Terms};
use shared::{Request, SharedContext, SharedState};

/// Why shared budgets could not start.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The state store could not be reached or prepared.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The accounts of one pgseal instance and their budgets. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The policy budgets come from; a reload replaces it ([`Budgets::set_policy`]).
    policy: RwLock<Arc<CompiledPolicy>>,
    /// Whether any budget of the policy counts rows of results that touch no sealed table:
    /// when none does, [`Budgets::counts_unsealed`] answers without reading the policy (it is
    /// asked at every statement of every session).
    counts_unsealed_anywhere: AtomicBool,
    pub(crate) context: Context,
    pub(crate) accounts: shared::Accounts,
}

/// Whether any class's budget, or its end users' budget, counts every row (`counts = "all"`).
fn counts_unsealed_anywhere(policy: &CompiledPolicy) -> bool {
    let all = |budget: &Budget| budget.counts == Counting::AllRows;
    policy
        .classes()
        .iter()
        .any(|class| all(&class.budget) || class.end_user_budget.as_ref().is_some_and(all))
}

impl Budgets {
    /// Budgets kept in this process's memory, read on `clock` (use
    /// [`MonotonicClock::shared`] in production, a [`ManualClock`] in tests).
    pub fn in_memory(policy: Arc<CompiledPolicy>, clock: Arc<dyn Clock>) -> Self {
        Budgets {
            inner: Arc::new(Inner {
                counts_unsealed_anywhere: AtomicBool::new(counts_unsealed_anywhere(&policy)),
                policy: RwLock::new(policy),
                context: Context {
                    clock,
                    alerts: AlertHub::new(Arc::new(LogAlerts)),
                    shared: None,
                },
                accounts: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Budgets shared through PostgreSQL at `state_url` (a `postgres://` URL or `key=value`
    /// string; no TLS yet): connects, creates the `pgseal` schema on first use, and starts the
    /// lease worker on the current tokio runtime. Fails when the store cannot be reached at
    /// startup; later outages fail closed (see the `shared` module).
    pub async fn shared(
        policy: Arc<CompiledPolicy>,
        state_url: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BudgetError> {
        let store = store::Store::connect(state_url).await?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let budgets = Budgets {
            inner: Arc::new(Inner {
                counts_unsealed_anywhere: AtomicBool::new(counts_unsealed_anywhere(&policy)),
                policy: RwLock::new(policy),
                context: Context {
                    clock,
                    alerts: AlertHub::new(Arc::new(LogAlerts)),
                    shared: Some(SharedContext { requests }),
                },
                accounts: RwLock::new(HashMap::new()),
            }),
        };
        tokio::spawn(shared::worker(
            store,
            receiver,
            Arc::downgrade(&budgets.inner),
        ));
        Ok(budgets)
    }

    /// Replaces where alert events go (the log, by default). Use a [`FanOut`] for several.
    pub fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        self.inner.context.alerts.set(sink);
    }

    /// True when budgets are shared through PostgreSQL.
    pub fn is_shared(&self) -> bool {
        self.inner.context.shared.is_some()
    }

    /// The policy the budgets come from.
    pub fn policy(&self) -> Arc<CompiledPolicy> {
        Arc::clone(
            &self
                .inner
                .policy
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Takes the budgets of a reloaded policy, keeping what every account has used: an account
    /// whose class or budget changed continues from its counts under the new limits when it is
    /// next asked for ([`Budgets::account`]); the others continue unchanged.
    pub fn set_policy(&self, policy: Arc<CompiledPolicy>) {
        *self
            .inner
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&policy);
        self.inner
            .counts_unsealed_anywhere
            .store(counts_unsealed_anywhere(&policy), Ordering::Release);
        // At once, for every account: one a running export holds is asked for no more.
        let accounts: Vec<Arc<Limiter>> = self
            .inner
            .accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for limiter in accounts {
            let class = policy.class_of(&limiter.key.role);
            let budget = match &limiter.key.end_user {
                None => Some(*policy.budget(class)),
                // A class that no longer gives end users a budget leaves theirs as it was.
                Some(_) => policy.end_user_budget(class).copied(),
            };
            if let Some(budget) = budget {
                let terms = Terms {
                    class: policy.class(class).name.as_str().into(),
                    budget,
                };
                if !limiter.holds_to(&terms) {
                    limiter.set_terms(terms);
                }
            }
        }
    }

    /// The account of `role`, or of one of its end users. Cheap (a map lookup); hold on to the
    /// handle for the session, and ask again when the end user changes. An empty end user is no
    /// end user.
    pub fn account(&self, role: &str, end_user: Option<&str>) -> Account {
        let policy = self.policy();
        let class = policy.class_of(role);
        let end_user = end_user.filter(|u| !u.is_empty());
        let role_limiter = self.limiter(
            &policy,
            AccountKey::role(role),
            class,
            *policy.budget(class),
        );
        let user_limiter = match (end_user, policy.end_user_budget(class)) {
            (Some(user), Some(budget)) => {
                Some(self.limiter(&policy, AccountKey::end_user(role, user), class, *budget))
            }
            _ => None,
        };
        let user_counts_all = user_limiter
            .as_ref()
            .is_some_and(|l| l.budget().counts == Counting::AllRows);
        let role_counts_all = policy.budget(class).counts == Counting::AllRows;
        Account {
            budgets: self.clone(),
            role: role_limiter,
            user: user_limiter,
            declared: end_user.map(Arc::from),
            missing_end_user: end_user.is_none() && policy.requires_end_user(class),
            counts_unsealed: role_counts_all || user_counts_all,
        }
    }

    /// Whether the account of `role` (and `end_user`) counts rows of results that touch no
    /// sealed table: [`Account::counts_unsealed`] without making the account (a statement on
    /// unsealed tables asks only this).
    pub fn counts_unsealed(&self, role: &str, end_user: Option<&str>) -> bool {
        if !self.inner.counts_unsealed_anywhere.load(Ordering::Acquire) {
            return false;
        }
        let policy = self.policy();
        let class = policy.class_of(role);
        let counts_all = |budget: &Budget| budget.counts == Counting::AllRows;
        counts_all(policy.budget(class))
            || (end_user.is_some_and(|u| !u.is_empty())
                && policy.end_user_budget(class).is_some_and(counts_all))
    }

    fn limiter(
        &self,
        policy: &CompiledPolicy,
        key: AccountKey,
        class: ClassId,
        budget: Budget,
    ) -> Arc<Limiter> {
        let terms = Terms {
            class: policy.class(class).name.as_str().into(),
            budget,
        };
        let held = self
            .inner
            .accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(limiter) = held {
            if !limiter.holds_to(&terms) {
                // A reloaded policy changed the account's terms: the same limiter, so what
                // every statement takes, running or to come, counts under the new limits.
                limiter.set_terms(terms);
            }
            return limiter;
        }
        let now = self.inner.context.clock.now();
        let limiter = match &self.inner.context.shared {
            None => Limiter::memory(key.clone(), terms.class, budget, now),
            Some(_) => Limiter::new(
                key.clone(),
                terms,
                Kind::Shared(SharedState::new(shared::lease_size(&budget))),
            ),
        };
        self.inner
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| Arc::new(limiter))
            .clone()
    }

    /// Forgets accounts nobody holds whose state is the same as a fresh one's (full bucket,
    /// nothing counted, nothing leased): memory stays bounded by the accounts in use. Returns
    /// how many were forgotten. Call it now and then (every minute, say).
    pub fn sweep(&self) -> usize {
        let now = self.inner.context.clock.now();
        let mut accounts = self
            .inner
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = accounts.len();
        accounts.retain(|_, limiter| Arc::strong_count(limiter) > 1 || !limiter.at_rest(now));
        before - accounts.len()
    }

    /// How many accounts the registry holds.
    pub fn len(&self) -> usize {
        self.inner
            .accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when the registry holds no account.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// With shared budgets, gives every leased, unused row back to the store and stops the lease
    /// worker (later requests are refused as if the store were unreachable). Call it once the
    /// sessions have ended. Does nothing in memory.
    pub async fn shutdown(&self) {
        if let Some(shared) = &self.inner.context.shared {
            let (done, wait) = tokio::sync::oneshot::channel();
            if shared.requests.send(Request::Shutdown(done)).is_ok() {
                let _ = wait.await;
            }
        }
    }
}

/// One session's account: the role's budget, and the end user's when declared. Cheap to clone.
#[derive(Clone)]
pub struct Account {
    budgets: Budgets,
    role: Arc<Limiter>,
    user: Option<Arc<Limiter>>,
    declared: Option<Arc<str>>,
    missing_end_user: bool,
    counts_unsealed: bool,
}

impl Account {
    /// Asks for `rows` rows of a result that touches a sealed table, now. Never blocks and
    /// never does I/O (shared budgets lease in the background). All or nothing.
    pub fn take(&self, rows: u64) -> Decision {
        self.take_counted(rows, false)
    }

    /// Asks for `rows` rows of a result that touches no sealed table: they count only against
    /// budgets with `counts = "all"` (see [`Account::counts_unsealed`]); `Allow` otherwise.
    pub fn take_unsealed(&self, rows: u64) -> Decision {
        if !self.counts_unsealed {
            return Decision::Allow;
        }
        self.take_counted(rows, true)
    }

    fn take_counted(&self, rows: u64, unsealed: bool) -> Decision {
        if self.missing_end_user && !unsealed {
            return Decision::Block(Box::new(self.reason(
                &self.role,
                Limit::EndUserRequired,
                None,
            )));
        }
        let ctx = &self.budgets.inner.context;
        let counts = |l: &Limiter| !unsealed || l.budget().counts == Counting::AllRows;
        let mut user_alert = None;
        if let Some(user) = self.user.as_ref().filter(|u| counts(u)) {
            match user.try_take(rows, ctx) {
                Step::Rows { alert } => {
                    user_alert = alert.map(|limit| Exceeded {
                        scope: pgseal_policies::BudgetScope::EndUser,
                        limit,
                    })
                }
                other => return self.refusal(user, other),
            }
        }
        if !counts(&self.role) {
            return user_alert.map_or(Decision::Allow, Decision::Alert);
        }
        match self.role.try_take(rows, ctx) {
            Step::Rows { alert } => {
                let role_alert = alert.map(|limit| Exceeded {
                    scope: pgseal_policies::BudgetScope::Role,
                    limit,
                });
                user_alert
                    .or(role_alert)
                    .map_or(Decision::Allow, Decision::Alert)
            }
            other => {
                if let Some(user) = self.user.as_ref().filter(|u| counts(u)) {
                    user.refund(rows);
                }
                self.refusal(&self.role, other)
            }
        }
    }

    fn refusal(&self, limiter: &Limiter, step: Step) -> Decision {
        match step {
            Step::Wait(after) => Decision::Wait(after),
            Step::Block { limit, frees_in } => {
                Decision::Block(Box::new(self.reason(limiter, limit, frees_in)))
            }
            Step::Rows { .. } => Decision::Allow,
        }
    }

    fn reason(&self, limiter: &Limiter, limit: Limit, frees_in: Option<Duration>) -> BlockReason {
        BlockReason {
            account: limiter.key.clone(),
            class: limiter.class(),
            limit,
            budget: (limit != Limit::EndUserRequired).then_some(limiter.budget()),
            frees_in,
        }
    }

    /// Asks for `rows` rows (of a result touching a sealed table) and waits as long as the
    /// budget says — woken early when a shared lease arrives. Cancel-safe: dropping the future
    /// takes nothing. This is where throttling happens: while it waits, the session reads
    /// nothing more from PostgreSQL.
    pub async fn acquire(&self, rows: u64) -> Acquired {
        self.acquire_counted(rows, false).await
    }

    /// [`Account::acquire`] for rows of a result that touches no sealed table.
    pub async fn acquire_unsealed(&self, rows: u64) -> Acquired {
        self.acquire_counted(rows, true).await
    }

    async fn acquire_counted(&self, rows: u64, unsealed: bool) -> Acquired {
        let started = tokio::time::Instant::now();
        loop {
            let notified = self.arrival().map(|n| n.notified());
            let mut notified = notified.map(Box::pin);
            if let Some(n) = notified.as_mut() {
                n.as_mut().enable();
            }
            match self.take_counted(rows, unsealed) {
                Decision::Allow => {
                    return Acquired::Allowed {
                        waited: started.elapsed(),
                        alert: None,
                    };
                }
                Decision::Alert(exceeded) => {
                    return Acquired::Allowed {
                        waited: started.elapsed(),
                        alert: Some(exceeded),
                    };
                }
                Decision::Block(reason) => {
                    return Acquired::Blocked {
                        waited: started.elapsed(),
                        reason,
                    };
                }
                Decision::Wait(after) => match notified {
                    Some(n) => {
                        tokio::select! {
                            () = n => {}
                            () = crate::timer::sleep(after) => {}
                        }
                    }
                    None => crate::timer::sleep(after).await,
                },
            }
        }
    }

    /// The notification of a shared lease arriving for whichever level is short (the role's,
    /// which every request reaches; the end user's is woken by its own sleep).
    fn arrival(&self) -> Option<&tokio::sync::Notify> {
        match &self.role.kind {
            Kind::Shared(state) => Some(&state.arrived),
            Kind::Memory(_) => None,
        }
    }

    /// The role.
    pub fn role(&self) -> &str {
        &self.role.key.role
    }

    /// The end user this account was asked for, if any.
    pub fn end_user(&self) -> Option<&str> {
        self.declared.as_deref()
    }

    /// The role's class name.
    pub fn class(&self) -> Arc<str> {
        self.role.class()
    }

    /// The role's budget.
    pub fn budget(&self) -> Budget {
        self.role.budget()
    }

    /// The end user's own budget, when the class gives one and an end user is declared.
    pub fn end_user_budget(&self) -> Option<Budget> {
        self.user.as_ref().map(|u| u.budget())
    }

    /// True when the class requires an end user and none was declared: every `take` of sealed
    /// rows is refused (SQLSTATE 42501). Check it before running the statement to refuse
    /// without running it.
    pub fn missing_end_user(&self) -> bool {
        self.missing_end_user
    }

    /// The refusal to send before running a statement that touches sealed tables when the class
    /// requires an end user and none was declared (SQLSTATE 42501); `Ok` otherwise.
    pub fn check_end_user(&self) -> Result<(), Box<BlockReason>> {
        if self.missing_end_user {
            Err(Box::new(self.reason(
                &self.role,
                Limit::EndUserRequired,
                None,
            )))
        } else {
            Ok(())
        }
    }

    /// True when rows of results that touch no sealed table count too (a budget with
    /// `counts = "all"`); when false, the session need not ask for them at all.
    pub fn counts_unsealed(&self) -> bool {
        self.counts_unsealed
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("role", &self.role())
            .field("end_user", &self.end_user())
            .field("class", &self.class())
            .finish()
    }
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("shared", &self.is_shared())
            .field("accounts", &self.len())
            .finish()
    }
}
