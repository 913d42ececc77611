//! The metrics registry: atomic counters, gauges and histograms cheap enough for the hot path,
//! and their Prometheus text exposition (format 0.0.4).
//!
//! A labelled metric is a [`Family`]: [`Family::with`] returns the handle of one series (an
//! `Arc` of atomics); the session looks its handles up once (per session, per role and view)
//! and then bumps them with one atomic add. Label values are roles, views, limits, actions,
//! SQLSTATEs and sealed columns — never end users (unbounded) — and each family holds at most
//! [`MAX_SERIES`] series: past that, new label sets share one series labelled `_other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use crate::audit::AuditStats;
use crate::budget::{AlertEvent, AlertSink, WebhookStats};

/// Most series one family holds before folding new ones into `_other`.
pub const MAX_SERIES: usize = 1000;

/// A monotonically increasing count. Cheap to clone (shared).
///
/// It is kept in [`COUNTER_SHARDS`] parts, each on cache lines of its own, and a thread adds
/// to its part: sessions counting their statements on different cores do not write the same
/// line (a single atomic, bumped by every statement of every session of a role, moved between
/// the cores at each statement). Threads take parts in turn, so past four counting threads some
/// share one. A read sums the parts.
#[derive(Clone, Default)]
pub struct Counter(Arc<[CounterShard; COUNTER_SHARDS]>);

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

/// How many parts a [`Counter`] is kept in.
const COUNTER_SHARDS: usize = 4;

/// One part of a [`Counter`]: 128 bytes, as x86 prefetches cache lines in pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
struct CounterShard(AtomicU64);

/// The part of every [`Counter`] the calling thread adds to: threads take parts in turn as
/// they first count something.
fn counter_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % COUNTER_SHARDS;
    }
    // A thread counting while its thread-locals are torn down adds to the first part.
    SHARD.try_with(|shard| *shard).unwrap_or(0)
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0[counter_shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// A value that goes up and down. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Bucket bounds of latency histograms, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A histogram of durations. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

impl Histogram {
    /// A histogram with these bucket bounds (seconds, increasing).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram(Arc::new(HistogramInner {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records one duration.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let i = self
            .0
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.0.bounds.len());
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(LATENCY_BUCKETS)
    }
}

/// A metric with labels: one series per set of label values.
#[derive(Debug)]
pub struct Family<M> {
    labels: &'static [&'static str],
    series: RwLock<BTreeMap<Vec<String>, M>>,
}

impl<M: Clone + Default> Family<M> {
    /// A family with these label names.
    pub fn new(labels: &'static [&'static str]) -> Self {
        Family {
            labels,
            series: RwLock::new(BTreeMap::new()),
        }
    }

    /// The series for these label values (one per label name, in order), created on first use.
    /// Look handles up once (per session, say), not per row: this allocates.
    pub fn with(&self, values: &[&str]) -> M {
        let mut key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        key.resize(self.labels.len(), String::new());
        if let Some(m) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return m.clone();
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if !series.contains_key(&key) && series.len() >= MAX_SERIES {
            key = vec!["_other".to_owned(); self.labels.len()];
        }
        series.entry(key).or_default().clone()
    }

    fn snapshot(&self) -> Vec<(Vec<String>, M)> {
        self.series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Every metric pgseal exposes. Share it as `Arc<Metrics>`; every field is a handle to bump.
#[derive(Debug)]
pub struct Metrics {
    /// `pgseal_sessions_total`: client sessions started.
    pub sessions_total: Counter,
    /// `pgseal_sessions_active`: client sessions open now.
    pub sessions_active: Gauge,
    /// `pgseal_statements_total{role}`: statements run.
    pub statements: Family<Counter>,
    /// `pgseal_statements_refused_total{role,sqlstate}`: statements pgseal refused or ended
    /// (denied column, impossible operation on a sealed column, budget block…).
    pub statements_refused: Family<Counter>,
    /// `pgseal_refusals_total{role,reason}`: statements pgseal refused before they ran, by
    /// reason (`permission`, `unsupported`, `no_plan`, `invalid_value`, `migrating`,
    /// `end_user`, `other`).
    pub refusals: Family<Counter>,
    /// `pgseal_statement_duration_seconds`: from a statement's arrival to its completion.
    pub statement_duration: Histogram,
    /// `pgseal_rows_total{role,view}`: rows holding sealed columns sent, by the view given
    /// (`plaintext`, `masked`, `pseudonym`, `ciphertext`); a row counts once per view it holds.
    pub rows: Family<Counter>,
    /// `pgseal_budget_throttled_rows_total{role}`: rows that had to wait for their budget.
    pub rows_throttled: Family<Counter>,
    /// `pgseal_budget_wait_seconds`: how long rows waited for their budget.
    pub budget_wait: Histogram,
    /// `pgseal_budget_blocked_statements_total{role,limit}`: statements ended by a budget.
    pub budget_blocks: Family<Counter>,
    /// `pgseal_budget_alerts_total{role,limit,action}`: limit crossings (alert events).
    pub budget_alerts: Family<Counter>,
    /// `pgseal_open_failures_total{column}`: sealed values that failed to open (tampered,
    /// wrong key, retired version…); the value was passed as stored.
    pub open_failures: Family<Counter>,
    /// `pgseal_upstream_up`: 1 when the last health check reached PostgreSQL.
    pub upstream_up: Gauge,
    /// `pgseal_upstream_sessions_total{host}`: sessions admitted on each upstream host.
    pub upstream_sessions: Family<Counter>,
    /// `pgseal_upstream_serving{host}`: 1 for the host new sessions go to first (known to fit
    /// `--upstream-target`), 0 for the others.
    pub upstream_serving: Family<Gauge>,
    /// `pgseal_evaluated_statements_total{role}`: results pgseal filtered or sorted itself.
    pub evaluated_statements: Family<Counter>,
    /// `pgseal_evaluated_rows_total{role,stage}`: rows of those results, `scanned` (read from
    /// the server) and `returned` (sent to the client), and the rows of the subqueries pgseal
    /// filters read with them (`subquery`).
    pub evaluated_rows: Family<Counter>,
    /// `pgseal_reloads_total{outcome}`: reloads of the policies and keyring, `ok` or `failed`.
    pub reloads: Family<Counter>,
    /// `pgseal_reload_last_ok`: 1 when the last reload took (or none was asked), 0 when it was
    /// refused and the previous set stayed in force (alert on it).
    pub reload_last_ok: Gauge,
    /// `pgseal_policy_generation`: the generation of the policies in force (1 at start).
    pub policy_generation: Gauge,
    audit: OnceLock<Arc<AuditStats>>,
    webhook: OnceLock<Arc<WebhookStats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        Metrics {
            sessions_total: Counter::default(),
            sessions_active: Gauge::default(),
            statements: Family::new(&["role"]),
            statements_refused: Family::new(&["role", "sqlstate"]),
            refusals: Family::new(&["role", "reason"]),
            statement_duration: Histogram::default(),
            rows: Family::new(&["role", "view"]),
            rows_throttled: Family::new(&["role"]),
            budget_wait: Histogram::default(),
            budget_blocks: Family::new(&["role", "limit"]),
            budget_alerts: Family::new(&["role", "limit", "action"]),
            open_failures: Family::new(&["column"]),
            upstream_up: Gauge::default(),
            upstream_sessions: Family::new(&["host"]),
            upstream_serving: Family::new(&["host"]),
            evaluated_statements: Family::new(&["role"]),
            evaluated_rows: Family::new(&["role", "stage"]),
            reloads: Family::new(&["outcome"]),
            reload_last_ok: Gauge::default(),
            policy_generation: Gauge::default(),
            audit: OnceLock::new(),
            webhook: OnceLock::new(),
        }
    }

    /// Exposes the audit log's counts (`pgseal_audit_*`). Once; later calls are ignored.
    pub fn attach_audit(&self, stats: Arc<AuditStats>) {
        let _ = self.audit.set(stats);
    }

    /// Exposes the alert webhook's counts (`pgseal_alert_webhook_*`). Once.
    pub fn attach_webhook(&self, stats: Arc<WebhookStats>) {
        let _ = self.webhook.set(stats);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        scalar(
            &mut out,
            "pgseal_sessions_total",
            "counter",
            "Client sessions started.",
            self.sessions_total.get() as f64,
        );
        scalar(
            &mut out,
            "pgseal_sessions_active",
            "gauge",
            "Client sessions open now.",
            self.sessions_active.get() as f64,
        );
        counters(
            &mut out,
            "pgseal_reloads_total",
            "Reloads of the policies and keyring, by outcome (ok, failed).",
            &self.reloads,
        );
        scalar(
            &mut out,
            "pgseal_reload_last_ok",
            "gauge",
            "1 when the last reload took (or none was asked), 0 when the previous set stayed in force.",
            self.reload_last_ok.get() as f64,
        );
        scalar(
            &mut out,
            "pgseal_policy_generation",
            "gauge",
            "Generation of the policies and keyring in force (1 at start, one more per reload).",
            self.policy_generation.get() as f64,
        );
        counters(
            &mut out,
            "pgseal_statements_total",
            "Statements run, by role.",
            &self.statements,
        );
        counters(
            &mut out,
            "pgseal_statements_refused_total",
            "Statements pgseal refused or ended, by role and SQLSTATE.",
            &self.statements_refused,
        );
        counters(
            &mut out,
            "pgseal_refusals_total",
            "Statements pgseal refused before they ran, by role and reason.",
            &self.refusals,
        );
        counters(
            &mut out,
            "pgseal_evaluated_statements_total",
            "Results pgseal filtered or sorted itself on sealed columns, by role.",
            &self.evaluated_statements,
        );
        counters(
            &mut out,
            "pgseal_evaluated_rows_total",
            "Rows of results pgseal evaluated, read from the server (scanned) and sent (returned), and rows of the subqueries it filtered read with them (subquery).",
            &self.evaluated_rows,
        );
        histogram(
            &mut out,
            "pgseal_statement_duration_seconds",
            "Statement latency through pgseal.",
            &self.statement_duration,
        );
        counters(
            &mut out,
            "pgseal_rows_total",
            "Rows holding sealed columns sent to clients, by role and view (a row counts once per view it holds).",
            &self.rows,
        );
        counters(
            &mut out,
            "pgseal_budget_throttled_rows_total",
            "Rows held back by their export budget before they went, by role.",
            &self.rows_throttled,
        );
        histogram(
            &mut out,
            "pgseal_budget_wait_seconds",
            "Time rows waited for their export budget.",
            &self.budget_wait,
        );
        counters(
            &mut out,
            "pgseal_budget_blocked_statements_total",
            "Statements ended by an export budget, by role and limit.",
            &self.budget_blocks,
        );
        counters(
            &mut out,
            "pgseal_budget_alerts_total",
            "Export budget limits crossed, by role, limit and action.",
            &self.budget_alerts,
        );
        counters(
            &mut out,
            "pgseal_open_failures_total",
            "Sealed values that failed to open, by column.",
            &self.open_failures,
        );
        scalar(
            &mut out,
            "pgseal_upstream_up",
            "gauge",
            "1 when the last health check reached PostgreSQL, else 0.",
            self.upstream_up.get() as f64,
        );
        counters(
            &mut out,
            "pgseal_upstream_sessions_total",
            "Sessions admitted on each upstream host.",
            &self.upstream_sessions,
        );
        gauges(
            &mut out,
            "pgseal_upstream_serving",
            "1 for the upstream host new sessions go to first, 0 for the others.",
            &self.upstream_serving,
        );
        if let Some(audit) = self.audit.get() {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
            scalar(
                &mut out,
                "pgseal_audit_events_total",
                "counter",
                "Audit events written.",
                load(&audit.written),
            );
            scalar(
                &mut out,
                "pgseal_audit_dropped_total",
                "counter",
                "Audit events dropped because the writer fell behind (recorded as gaps).",
                load(&audit.dropped),
            );
            scalar(
                &mut out,
                "pgseal_audit_write_errors_total",
                "counter",
                "Audit log write errors.",
                load(&audit.write_errors),
            );
            scalar(
                &mut out,
                "pgseal_audit_last_seq",
                "gauge",
                "Sequence number of the last audit record written.",
                load(&audit.last_seq),
            );
            scalar(
                &mut out,
                "pgseal_audit_table_lines_total",
                "counter",
                "Audit lines copied to the audit table (--audit-table-url).",
                load(&audit.table_written),
            );
            scalar(
                &mut out,
                "pgseal_audit_table_dropped_total",
                "counter",
                "Audit lines not copied to the audit table (they are in the file).",
                load(&audit.table_dropped),
            );
        }
        if let Some(webhook) = self.webhook.get() {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
            scalar(
                &mut out,
                "pgseal_alert_webhook_sent_total",
                "counter",
                "Alert events delivered to the webhook.",
                load(&webhook.sent),
            );
            scalar(
                &mut out,
                "pgseal_alert_webhook_failed_total",
                "counter",
                "Alert webhook deliveries that failed.",
                load(&webhook.failed),
            );
            scalar(
                &mut out,
                "pgseal_alert_webhook_dropped_total",
                "counter",
                "Alert events dropped because the webhook queue was full.",
                load(&webhook.dropped),
            );
        }
        out
    }
}

impl AlertSink for Metrics {
    fn raise(&self, event: &AlertEvent) {
        self.budget_alerts
            .with(&[&event.role, event.limit, event.action])
            .inc();
    }
}

/// A sample value as Prometheus writes it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {}", number(value));
}

fn labels(names: &[&str], values: &[String]) -> String {
    let pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    pairs.join(",")
}

fn counters(out: &mut String, name: &str, help: &str, family: &Family<Counter>) {
    header(out, name, "counter", help);
    for (values, counter) in family.snapshot() {
        let _ = writeln!(
            out,
            "{name}{{{}}} {}",
            labels(family.labels, &values),
            counter.get()
        );
    }
}

fn gauges(out: &mut String, name: &str, help: &str, family: &Family<Gauge>) {
    header(out, name, "gauge", help);
    for (values, gauge) in family.snapshot() {
        let _ = writeln!(
            out,
            "{name}{{{}}} {}",
            labels(family.labels, &values),
            gauge.get()
        );
    }
}

fn histogram(out: &mut String, name: &str, help: &str, histogram: &Histogram) {
    header(out, name, "histogram", help);
    let inner = &histogram.0;
    let mut cumulative = 0u64;
    for (i, count) in inner.counts.iter().enumerate() {
        cumulative += count.load(Ordering::Relaxed);
        let le = inner
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |b| number(*b));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(out, "{name}_sum {}", number(sum));
    let _ = writeln!(out, "{name}_count {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::{COUNTER_SHARDS, Counter};

    /// Counts added from more threads than a counter has parts all land in its value.
    #[test]
    fn a_counter_sums_what_every_thread_added() {
        let counter = Counter::default();
        let threads: Vec<_> = (0..COUNTER_SHARDS * 2 + 1)
            .map(|n| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.inc();
                    }
                    counter.inc_by(n as u64);
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a counting thread");
        }
        let threads = COUNTER_SHARDS as u64 * 2 + 1;
        assert_eq!(counter.get(), threads * 1000 + threads * (threads - 1) / 2);
    }
}
