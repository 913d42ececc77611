//! pgseal: a PostgreSQL wire-protocol proxy that seals sensitive columns as they are written,
//! gives each database role its own view of them, and holds every account to an export budget.
//!
//! The library holds everything the `pgseal` binary runs, so that the end-to-end tests can start
//! a proxy in-process. See `docs/architecture.md` for the map of modules.

pub mod admin;
pub mod analyze;
pub mod audit;
pub mod budget;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discover;
pub mod enduser;
pub mod error;
pub mod evaluate;
pub mod logging;
pub mod migrate;
pub mod pgcluster;
pub mod pgerror;
pub mod protect;
pub mod reload;
pub mod search;
pub mod seed;
pub mod server;
pub mod session;
pub mod session_threads;
pub mod stream;
pub mod timer;
pub mod tls;
pub mod upstream;
pub mod wire;
