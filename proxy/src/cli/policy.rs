//! `pgseal policy …`: checking a policy file, alone or against a live database.
//!
//! `pgseal policy check --policy FILE` validates the file and prints every problem as
//! `FILE:LINE:COL: message`, then what the valid policy still reveals (equal values of
//! deterministic and tokenized columns, lookups and blind writes granted) as notes. With `--database-url URL` it also reads the database's catalog and
//! checks that every sealed column exists with a storage type that fits its mode, that every
//! role the policy names exists, and lists the login roles it does not name.
//!
//! Exit status: 0 when clean, 1 when there are problems (all listed on standard output), 2 when
//! the file cannot be read or the database cannot be reached or read (said on standard error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use pgseal_policies::catalog::{Catalog, CatalogColumn, CatalogRole, check_catalog};
use pgseal_policies::{CompiledPolicy, LoadError};

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file, and with --database-url check it against a database.
    ///
    /// Exit status: 0 when clean, 1 with problems (each printed as FILE:LINE:COL: message),
    /// 2 when the file cannot be read or the database cannot be reached.
    Check(CheckArgs),
}

/// Arguments of `pgseal policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file to check.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,

    /// Also check the policy against this database: a postgres:// URL or a libpq-style
    /// "key=value" string. The connection does not use TLS.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// The exit status when everything checked is clean.
const CLEAN: u8 = 0;
/// The exit status when problems were found (and listed).
const PROBLEMS: u8 = 1;
/// The exit status when the check could not run: unreadable file, unreachable database.
const CANNOT_CHECK: u8 = 2;

/// How long to wait for the database when the URL gives no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a policy subcommand.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check(args) => check(&args),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let file = args.policy.display().to_string();
    let policy = match CompiledPolicy::load(&args.policy) {
        Ok(policy) => policy,
        Err(LoadError::Io { path, source }) => {
            eprintln!("pgseal: cannot read policy {path}: {source}");
            return Ok(ExitCode::from(CANNOT_CHECK));
        }
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems {
                println!("{problem}");
            }
            if args.database_url.is_some() {
                eprintln!("{file}: database not checked: fix the policy first");
            }
            eprintln!("{file}: {}", count(problems.len(), "problem"));
            return Ok(ExitCode::from(PROBLEMS));
        }
    };
    // The default class (roles the policy does not name) is not counted among the classes.
    let summary = format!(
        "{} in {}, {}",
        count(policy.columns().len(), "sealed column"),
        count(policy.tables().len(), "table"),
        count(policy.classes().len() - 1, "role class"),
    );
    for note in pgseal_policies::leakage::leakage_notes(&policy) {
        println!("{file}: note: {note}");
    }
    let Some(url) = &args.database_url else {
        eprintln!("{file}: ok ({summary})");
        return Ok(ExitCode::from(CLEAN));
    };

    let catalog = match read_catalog(url, &policy) {
        Ok(catalog) => catalog,
        Err(err) => {
            eprintln!("pgseal: {err:#}");
            return Ok(ExitCode::from(CANNOT_CHECK));
        }
    };
    let report = check_catalog(&policy, &catalog);
    for note in &report.notes {
        println!("{file}: note: {note}");
    }
    for problem in &report.problems {
        println!("{problem}");
    }
    if report.problems.is_empty() {
        eprintln!("{file}: ok against the database ({summary})");
        Ok(ExitCode::from(CLEAN))
    } else {
        eprintln!(
            "{file}: {} against the database",
            count(report.problems.len(), "problem")
        );
        Ok(ExitCode::from(PROBLEMS))
    }
}

/// "1 problem", "3 problems", "2 role classes".
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ if what.ends_with('s') => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

/// Reads the columns of the schemas the policy seals, and the cluster's roles.
fn read_catalog(url: &str, policy: &CompiledPolicy) -> anyhow::Result<Catalog> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| anyhow::anyhow!("invalid --database-url: {}", describe(&e)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("pgseal policy check");
    }
    let mut schemas: Vec<String> = policy.tables().iter().map(|t| t.schema.clone()).collect();
    schemas.sort();
    schemas.dedup();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {}", describe(&e)))?;
        let connection = tokio::spawn(connection);
        let columns = client
            .query(COLUMNS_SQL, &[&schemas])
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the database's columns: {}", describe(&e)))?
            .into_iter()
            .map(|row| CatalogColumn {
                schema: row.get(0),
                table: row.get(1),
                column: row.get(2),
                storage_type: row.get(3),
            })
            .collect();
        let roles = client
            .query(ROLES_SQL, &[])
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the database's roles: {}", describe(&e)))?
            .into_iter()
            .map(|row| CatalogRole {
                name: row.get(0),
                can_login: row.get(1),
            })
            .collect();
        drop(client);
        // The connection ends when the client is dropped; its outcome no longer matters.
        let _ = connection.await;
        Ok(Catalog { columns, roles })
    })
}

/// A tokio-postgres error in one line, with a hint when TLS was asked for.
fn describe(err: &tokio_postgres::Error) -> String {
    let mut text = crate::pgerror::describe(err);
    if text.contains("TLS") {
        text.push_str(" (policy check connects without TLS: use sslmode=disable or prefer)");
    }
    text
}

/// The columns of tables, views, materialized views and foreign tables in the given schemas,
/// with their storage type (a domain's base type for domain-typed columns).
const COLUMNS_SQL: &str = "\
SELECT n.nspname::text, c.relname::text, a.attname::text,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname = ANY($1)";

/// Every role of the cluster.
const ROLES_SQL: &str = "SELECT rolname::text, rolcanlogin FROM pg_catalog.pg_roles";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_well() {
        assert_eq!(count(0, "problem"), "0 problems");
        assert_eq!(count(1, "problem"), "1 problem");
        assert_eq!(count(2, "sealed column"), "2 sealed columns");
        assert_eq!(count(3, "role class"), "3 role classes");
    }

    #[test]
    fn an_unreadable_file_is_exit_status_2() {
        let args = CheckArgs {
            policy: PathBuf::from("/nonexistent/policy.toml"),
            database_url: None,
        };
        let code = check(&args).unwrap();
        assert_eq!(code, ExitCode::from(CANNOT_CHECK));
    }
}
