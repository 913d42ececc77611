//! `pgseal policy …`: checking a policy file, alone or against a live database.
//!
//! `pgseal policy check --policy FILE` validates the file and prints every problem as
//! `FILE:LINE:COL: message`, then what the valid policy still reveals (equal values of
//! deterministic and tokenized columns, search tokens, lookups and blind writes granted) as
//! notes. With `--database-url URL` it also reads the database's catalog and checks that every
//! sealed column exists with a storage type that fits its mode, that every role the policy
//! names exists, and lists the login roles it does not name; for each search index, it counts
//! the tokens stored and says how many distinct items stand behind each at the table's current
//! size, with a warning below two. It then samples `--sample-rows` rows per table (read-only)
//! and warns about unsealed columns holding a kind the policy seals or copies of a sealed
//! column's plaintext (see [`crate::discover::warnings`]); warnings keep the exit status.
//!
//! `pgseal policy discover --database-url URL` samples a plaintext database in a read-only
//! transaction and reports the columns that look like personal health data, or copies of it
//! (see [`crate::discover`]), then drafts a policy sealing them: after the report, or into
//! `--output FILE`. It never prints a sampled value. Exit status 0 when it ran, 2 when the
//! database cannot be reached or read.
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
    /// Find the columns of a plaintext database that hold personal health data (NIRs, names,
    /// contact details, dates of birth, addresses, ICD-10 codes, free text…) or copies of it
    /// (whole, normalised, or as a part, in the same row or through a key), from column names
    /// and a sample of rows read in a read-only transaction, and draft a policy sealing them.
    ///
    /// The report names columns, kinds, shares and shapes: never a value.
    Discover(DiscoverArgs),
}

/// Arguments of `pgseal policy discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The database to read: a postgres:// URL or a libpq-style "key=value" string. The
    /// connection does not use TLS.
    #[arg(long, value_name = "URL")]
    database_url: String,

    /// Rows sampled per table.
    #[arg(long, value_name = "N", default_value_t = crate::discover::DEFAULT_SAMPLE_ROWS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sample_rows: u32,

    /// Write the draft policy to this file (which must not exist) instead of after the report.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Arguments of `pgseal policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file to check, or a directory of policies (*.toml) as `serve --policy` takes
    /// it: each file, then the set (one policy per database)
    #[arg(long, value_name = "FILE|DIR")]
    policy: PathBuf,

    /// Also check the policy against this database: a postgres:// URL or a libpq-style
    /// "key=value" string. The connection does not use TLS.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,

    /// With --database-url, rows sampled per table (read-only) to warn about unsealed columns
    /// holding a kind the policy seals or copies of a sealed column's plaintext; 0 samples
    /// nothing. Warnings do not change the exit status.
    #[arg(long, value_name = "N", default_value_t = CHECK_SAMPLE_ROWS,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    sample_rows: u32,

    /// With --database-url, open the sampled values of sealed columns with this keyring (0600),
    /// so that copies are compared with the plaintext of columns already sealed. Without it,
    /// only plaintext still stored is compared (before `pgseal migrate encrypt`).
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,

    #[command(flatten)]
    hsm: super::keys::HsmArgs,
}

/// Rows `policy check` samples per table by default: enough to see a kind or a copy, quick on
/// a large database.
const CHECK_SAMPLE_ROWS: u32 = 200;

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
        PolicyCommand::Discover(args) => discover(&args),
    }
}

fn discover(args: &DiscoverArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;

    let config = match connection_config(&args.database_url, "pgseal policy discover") {
        Ok(config) => config,
        Err(err) => {
            eprintln!("pgseal: {err:#}");
            return Ok(ExitCode::from(CANNOT_CHECK));
        }
    };
    let discovery = run_discovery(config, crate::discover::Options::new(args.sample_rows));
    // Like `check`: a database that cannot be reached or read is exit status 2.
    let discovery = match discovery {
        Ok(discovery) => discovery,
        Err(err) => {
            eprintln!("pgseal: {err:#}");
            return Ok(ExitCode::from(CANNOT_CHECK));
        }
    };
    for warning in &discovery.unread {
        eprintln!("pgseal: warning: {warning}");
    }
    for note in &discovery.notes {
        eprintln!("pgseal: note: {note}");
    }
    let findings = discovery.findings;
    let report = crate::discover::draft::report(&findings);
    let draft = crate::discover::draft::policy(&findings);
    let mut stdout = std::io::stdout().lock();
    for line in &report {
        writeln!(stdout, "{line}")?;
    }
    let proposed = findings.iter().filter(|f| f.confident()).count();
    let summary = format!(
        "{} proposed, {} commented out for review",
        count(proposed, "column"),
        findings.len() - proposed
    );
    match &args.output {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(draft.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("draft policy written to {}: {summary}", path.display());
        }
        None => {
            writeln!(stdout)?;
            write!(stdout, "{draft}")?;
            eprintln!("{summary}");
        }
    }
    Ok(ExitCode::from(CLEAN))
}

/// The connection settings of a `--database-url`, with a connect timeout and an application
/// name when the URL gives none.
fn connection_config(url: &str, application: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| anyhow::anyhow!("invalid --database-url: {}", describe(&e)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    Ok(config)
}

/// Loads one policy file for `policy check`, printing its problems; `Err` holds the exit status.
fn load_checked(path: &std::path::Path, with_database: bool) -> Result<CompiledPolicy, u8> {
    let file = path.display().to_string();
    match CompiledPolicy::load(path) {
        Ok(policy) => Ok(policy),
        Err(LoadError::Io { path, source }) => {
            eprintln!("pgseal: cannot read policy {path}: {source}");
            Err(CANNOT_CHECK)
        }
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems {
                println!("{problem}");
            }
            if with_database {
                eprintln!("{file}: database not checked: fix the policy first");
            }
            eprintln!("{file}: {}", count(problems.len(), "problem"));
            Err(PROBLEMS)
        }
    }
}

/// `policy check` of a directory: every file, then whether they run side by side.
fn check_directory(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let dir = args.policy.display().to_string();
    if args.database_url.is_some() {
        eprintln!(
            "pgseal: --database-url checks one policy against its database: give --policy FILE \
             for each database of {dir}"
        );
        return Ok(ExitCode::from(CANNOT_CHECK));
    }
    let files = match crate::reload::policy_files(&args.policy) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("pgseal: {e}");
            return Ok(ExitCode::from(CANNOT_CHECK));
        }
    };
    let mut policies = Vec::new();
    let mut status = CLEAN;
    for file in &files {
        match load_checked(file, false) {
            Ok(policy) => {
                for note in pgseal_policies::leakage::leakage_notes(&policy) {
                    println!("{}: note: {note}", file.display());
                }
                policies.push(policy);
            }
            Err(code) => status = status.max(code),
        }
    }
    if status != CLEAN {
        eprintln!("{dir}: the set is not checked: fix its policies first");
        return Ok(ExitCode::from(status));
    }
    let refs: Vec<&CompiledPolicy> = policies.iter().collect();
    if let Err(e) = crate::protect::set::check(&refs) {
        println!("{dir}: {e}");
        eprintln!("{dir}: 1 problem");
        return Ok(ExitCode::from(PROBLEMS));
    }
    for policy in &policies {
        let databases = match policy.databases() {
            [] => "every database".to_string(),
            named => named.join(", "),
        };
        eprintln!(
            "{}: ok ({}; {databases})",
            policy.file(),
            count(policy.columns().len(), "sealed column")
        );
    }
    let n = policies.len();
    eprintln!(
        "{dir}: ok ({n} {})",
        if n == 1 { "policy" } else { "policies" }
    );
    Ok(ExitCode::from(CLEAN))
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if args.policy.is_dir() {
        return check_directory(args);
    }
    let file = args.policy.display().to_string();
    let policy = match load_checked(&args.policy, args.database_url.is_some()) {
        Ok(policy) => policy,
        Err(code) => return Ok(ExitCode::from(code)),
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

    let (catalog, tokens) = match read_catalog(url, &policy) {
        Ok(read) => read,
        Err(err) => {
            eprintln!("pgseal: {err:#}");
            return Ok(ExitCode::from(CANNOT_CHECK));
        }
    };
    let report = check_catalog(&policy, &catalog);
    for note in &report.notes {
        println!("{file}: note: {note}");
    }
    for line in search_report(&policy, &tokens) {
        println!("{file}: {line}");
    }
    for problem in &report.problems {
        println!("{problem}");
    }
    if args.sample_rows > 0 {
        let opener = match &args.keyring {
            None => None,
            Some(path) => {
                let opened = pgseal_keys::Keyring::load_with(path, &args.hsm.access())
                    .map_err(anyhow::Error::from)
                    .and_then(|keyring| {
                        Ok(crate::discover::opening::KeyringOpener::new(
                            &policy, &keyring,
                        )?)
                    });
                match opened {
                    Ok(opener) => Some(std::sync::Arc::new(opener)),
                    Err(err) => {
                        eprintln!("pgseal: cannot use keyring {}: {err:#}", path.display());
                        return Ok(ExitCode::from(CANNOT_CHECK));
                    }
                }
            }
        };
        match sample_warnings(url, &policy, args.sample_rows, opener) {
            Ok((warnings, notes)) => {
                for note in notes {
                    eprintln!("{file}: note: {note}");
                }
                for warning in warnings {
                    println!("{file}: {warning}");
                }
            }
            // The catalog was read: a sample that cannot be is said, and the check stands.
            Err(err) => eprintln!("{file}: note: unsealed columns not sampled: {err:#}"),
        }
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

/// Samples the database (read-only) and warns about unsealed columns holding a kind the
/// policy seals or copies of a sealed column (see [`crate::discover::warnings`]); with the
/// notes of tables or joins that could not be read.
fn sample_warnings(
    url: &str,
    policy: &CompiledPolicy,
    sample_rows: u32,
    opener: Option<std::sync::Arc<crate::discover::opening::KeyringOpener>>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let config = connection_config(url, "pgseal policy check")?;
    let named = policy
        .columns()
        .iter()
        .map(|c| (c.schema.clone(), c.table.clone(), c.column.clone()))
        .collect();
    let options = crate::discover::Options {
        sources: crate::discover::Sources::Named(named, opener),
        ..crate::discover::Options::new(sample_rows)
    };
    let discovery = run_discovery(config, options)?;
    let mut notes = discovery.unread.clone();
    notes.extend(discovery.notes.iter().cloned());
    Ok((
        crate::discover::warnings::warnings(policy, &discovery),
        notes,
    ))
}

/// "1 problem", "3 problems", "2 role classes".
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ if what.ends_with('s') => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

/// Reads the columns of the schemas the policy seals, the cluster's roles, and the counts of
/// the search tokens stored.
fn read_catalog(url: &str, policy: &CompiledPolicy) -> anyhow::Result<(Catalog, Vec<TokenCounts>)> {
    let config = connection_config(url, "pgseal policy check")?;
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
        let columns: Vec<CatalogColumn> = client
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
        let mut search = Vec::new();
        for column in policy.columns().iter().filter(|c| c.search.is_some()) {
            let stored_as_text = columns.iter().any(|c: &CatalogColumn| {
                c.schema == column.schema
                    && c.table == column.table
                    && c.column == column.column
                    && matches!(c.storage_type.as_str(), "text" | "character varying")
            });
            if stored_as_text {
                search.push(read_tokens(&client, column).await);
            }
        }
        drop(client);
        // The connection ends when the client is dropped; its outcome no longer matters.
        let _ = connection.await;
        Ok((Catalog { columns, roles }, search))
    })
}

/// What the database holds of one column's search tokens.
struct TokenCounts {
    /// `schema.table.column`.
    column: String,
    /// Rows in the table, or why they could not be read.
    counts: Result<(i64, Vec<(String, i64)>), String>,
}

/// Counts a column's rows and, per kind of token (its first letter), the distinct tokens
/// stored: what anyone reading the database can count.
async fn read_tokens(
    client: &tokio_postgres::Client,
    column: &pgseal_policies::SealedColumn,
) -> TokenCounts {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let table = format!("{}.{}", quote(&column.schema), quote(&column.table));
    let tokens = crate::evaluate::candidates::tokens_sql(&quote(&column.column));
    let rows = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await;
    let kinds = client
        .query(
            &format!(
                "SELECT left(token, 1), count(DISTINCT token) \
                 FROM (SELECT unnest({tokens}) AS token FROM {table}) tokens \
                 GROUP BY 1 ORDER BY 1"
            ),
            &[],
        )
        .await;
    TokenCounts {
        column: column.qualified_name(),
        counts: match (rows, kinds) {
            (Ok(rows), Ok(kinds)) => Ok((
                rows.get(0),
                kinds.iter().map(|r| (r.get(0), r.get(1))).collect(),
            )),
            (Err(e), _) | (_, Err(e)) => Err(describe(&e)),
        },
    }
}

/// One line per indexed column and kind: how many items stand behind each token at the
/// table's current size, and a warning below [`pgseal_policies::leakage::SEARCH_WARN_BELOW`].
fn search_report(policy: &CompiledPolicy, counts: &[TokenCounts]) -> Vec<String> {
    use pgseal_policies::leakage::{SEARCH_WARN_BELOW, items_per_token};
    let mut out = Vec::new();
    for found in counts {
        let Some(spec) = policy
            .columns()
            .iter()
            .find(|c| c.qualified_name() == found.column)
            .and_then(|c| c.search)
        else {
            continue;
        };
        let (rows, kinds) = match &found.counts {
            Ok(counts) => counts,
            Err(why) => {
                out.push(format!(
                    "note: the search tokens of {} could not be read: {why}",
                    found.column
                ));
                continue;
            }
        };
        if kinds.is_empty() {
            out.push(format!(
                "note: {} holds no search tokens yet ({rows} rows): run pgseal migrate index",
                found.column
            ));
            continue;
        }
        for (tag, occupied) in kinds {
            let kind = match tag.as_str() {
                "p" => "prefix",
                "t" => "trigram",
                "e" => "exact",
                "y" => "year",
                "m" => "month",
                _ => continue,
            };
            let Some(per_token) = items_per_token(spec.bits, u64::try_from(*occupied).unwrap_or(0))
            else {
                continue;
            };
            let line = format!(
                "{} at {rows} rows: {occupied} of {} {kind} tokens in use, about {per_token:.1} \
                 distinct items behind each",
                found.column,
                1u64 << spec.bits
            );
            if per_token < SEARCH_WARN_BELOW {
                out.push(format!(
                    "warning: {line}: tokens this sparse nearly tell which rows hold the same \
                     {kind} item; lower `bits` (now {}) or drop this kind",
                    spec.bits
                ));
            } else {
                out.push(format!("note: leakage: {line}"));
            }
        }
    }
    out
}

/// A tokio-postgres error in one line, with a hint when TLS was asked for.
fn describe(err: &tokio_postgres::Error) -> String {
    let mut text = crate::pgerror::describe(err);
    if text.contains("TLS") {
        text.push_str(" (pgseal policy connects without TLS: use sslmode=disable or prefer)");
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

/// Connects with `config` and runs discovery with `options` on its own runtime; the connection
/// is closed afterwards.
fn run_discovery(
    config: tokio_postgres::Config,
    options: crate::discover::Options,
) -> anyhow::Result<crate::discover::Discovery> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (mut client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {}", describe(&e)))?;
        let connection = tokio::spawn(connection);
        let discovery = crate::discover::discover(&mut client, &options).await;
        drop(client);
        // The connection ends when the client is dropped; its outcome no longer matters.
        let _ = connection.await;
        anyhow::Ok(discovery?)
    })
}

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
            sample_rows: CHECK_SAMPLE_ROWS,
            keyring: None,
            hsm: crate::cli::keys::HsmArgs::default(),
        };
        let code = check(&args).unwrap();
        assert_eq!(code, ExitCode::from(CANNOT_CHECK));
    }
}
