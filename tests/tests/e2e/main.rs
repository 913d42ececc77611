//! End-to-end tests of the passthrough proxy: real clients (tokio-postgres, psql) through
//! pgseal to the throwaway PostgreSQL cluster of the harness.
//!
//! One test binary, so that every test shares one cluster.

mod auth;
mod bad_input;
mod budgets;
mod cli;
mod cursors;
mod date_settings;
mod drivers;
mod drivers_scripted;
mod evaluation;
mod evaluation_differential;
mod orm;
mod paged_reads;
mod protection;
mod protocol;
mod quiet_logs;
mod reload;
mod schema_changes;
mod search_indexes;
mod string_statements;
mod tls;
mod unnest_inserts;
