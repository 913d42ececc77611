//! Alert events: raised once each time an account crosses a limit of its budget (or cannot be
//! checked), and handed to sinks — the log, the metrics, an optional webhook.
//!
//! Sinks are called on the data path, from inside [`crate::budget::Account::take`]: a sink must
//! never block or do I/O there. [`LogAlerts`] writes one `tracing` warning; the webhook sender
//! ([`crate::budget::WebhookSender`]) only puts the event on a bounded queue.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use pgseal_policies::{Action, Budget, BudgetScope};
use serde::Serialize;

use super::decision::{AccountKey, Limit};

/// One crossing of a budget limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertEvent {
    /// When it happened, RFC 3339 UTC with microseconds.
    pub time: String,
    /// The database role.
    pub role: String,
    /// The end user, for an end user's budget.
    pub end_user: Option<String>,
    /// The role's class.
    pub class: String,
    /// `role` or `end_user`: whose budget.
    pub scope: &'static str,
    /// Which limit was crossed (`rate`, `per_hour`, `per_day`, `store_unavailable`).
    pub limit: &'static str,
    /// What the budget does past it: `throttle`, `block` or `alert`.
    pub action: &'static str,
    /// The budget, as a policy would write it (`rate 100/minute, burst 200, per_day 2000`).
    pub budget: String,
    /// One sentence for people.
    pub message: String,
}

impl AlertEvent {
    /// The event for `account` crossing `limit` of `budget`, where the budget does `action`.
    pub fn new(
        account: &AccountKey,
        class: &str,
        budget: &Budget,
        limit: Limit,
        action: Action,
    ) -> Self {
        let whose = account.to_string();
        let what = match limit {
            Limit::Rate => format!("rate {} (burst {})", budget.rate, budget.burst),
            Limit::PerHour => format!("{} rows per hour", budget.per_hour.unwrap_or_default()),
            Limit::PerDay => format!("{} rows per day", budget.per_day.unwrap_or_default()),
            Limit::EndUserRequired => "its end-user requirement".to_owned(),
            Limit::StoreUnavailable => "its shared state (store unreachable)".to_owned(),
        };
        let consequence = match action {
            Action::Throttle => "rows are throttled",
            Action::Block => "statements are blocked",
            Action::Alert => "rows still go through",
        };
        AlertEvent {
            time: now_rfc3339(),
            role: account.role.to_string(),
            end_user: account.end_user.as_deref().map(str::to_owned),
            class: class.to_owned(),
            scope: match account.scope() {
                BudgetScope::EndUser => "end_user",
                _ => "role",
            },
            limit: limit.name(),
            action: match action {
                Action::Throttle => "throttle",
                Action::Block => "block",
                Action::Alert => "alert",
            },
            budget: describe(budget),
            message: format!(
                "export budget of {whose} (class {class}) went past {what}: {consequence}"
            ),
        }
    }

    /// The event as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// A budget as a policy writes it, for messages.
pub fn describe(budget: &Budget) -> String {
    let mut out = format!("rate {}, burst {}", budget.rate, budget.burst);
    if let Some(h) = budget.per_hour {
        out.push_str(&format!(", per_hour {h}"));
    }
    if let Some(d) = budget.per_day {
        out.push_str(&format!(", per_day {d}"));
    }
    out.push_str(&format!(
        ", action {}, on_cap {}",
        budget.action, budget.on_cap
    ));
    out
}

/// The current time as RFC 3339 UTC with microseconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Where alert events go. Called on the data path: must return at once (no blocking, no I/O).
pub trait AlertSink: Send + Sync {
    /// Takes one event.
    fn raise(&self, event: &AlertEvent);
}

/// Writes each event as a `tracing` warning (target `pgseal::alert`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogAlerts;

impl AlertSink for LogAlerts {
    fn raise(&self, event: &AlertEvent) {
        tracing::warn!(
            target: "pgseal::alert",
            role = %event.role,
            end_user = event.end_user.as_deref().unwrap_or(""),
            class = %event.class,
            limit = event.limit,
            action = event.action,
            budget = %event.budget,
            "{}",
            event.message
        );
    }
}

/// Hands each event to several sinks, in order.
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn AlertSink>>,
}

impl FanOut {
    /// No sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sinks.push(sink);
        self
    }
}

impl AlertSink for FanOut {
    fn raise(&self, event: &AlertEvent) {
        for sink in &self.sinks {
            sink.raise(event);
        }
    }
}

/// The sink a registry raises to; replaceable after the registry is built.
pub(crate) struct AlertHub {
    sink: RwLock<Arc<dyn AlertSink>>,
}

impl AlertHub {
    pub(crate) fn new(sink: Arc<dyn AlertSink>) -> Self {
        AlertHub {
            sink: RwLock::new(sink),
        }
    }

    pub(crate) fn set(&self, sink: Arc<dyn AlertSink>) {
        *self.sink.write().unwrap_or_else(PoisonError::into_inner) = sink;
    }

    pub(crate) fn raise(&self, event: &AlertEvent) {
        let sink = self
            .sink
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        sink.raise(event);
    }
}

/// Collects events in memory: for tests, and for anything that wants to look at them later.
#[derive(Clone, Default)]
pub struct CollectAlerts {
    events: Arc<std::sync::Mutex<Vec<AlertEvent>>>,
}

impl CollectAlerts {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event raised so far, oldest first.
    pub fn events(&self) -> Vec<AlertEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl AlertSink for CollectAlerts {
    fn raise(&self, event: &AlertEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
    }
}
