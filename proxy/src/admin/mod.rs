//! The admin endpoint (`--admin-listen ADDR`): Prometheus metrics and a readiness check.
//!
//! - [`Metrics`]: the registry the sessions bump (atomic counters, gauges, histograms) and its
//!   text exposition.
//! - [`Health`]: is PostgreSQL answering (TCP connect + SSLRequest answer, no credentials)?
//!   With several upstream hosts, each host's probe and last known role (`hosts`).
//!   And [`KeyringStatus`]: which keyring (id, versions) and which HSM labels it runs with.
//! - [`AdminServer`]: `GET /metrics`, `GET /healthz` over a minimal HTTP/1.1 server.

mod health;
mod hosts;
mod metrics;
mod server;

pub use health::{Health, KeyringStatus};
pub use metrics::{Counter, Family, Gauge, Histogram, LATENCY_BUCKETS, MAX_SERIES, Metrics};
pub use server::AdminServer;
