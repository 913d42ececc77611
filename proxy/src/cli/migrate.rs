//! `pgseal migrate encrypt|rotate|decrypt|index`: seals a database that holds plaintext, re-seals it
//! under the active key version, opens it back to plaintext, or builds its search indexes — in
//! place, online, resumable.
//!
//! A thin command over [`crate::migrate`]: it loads the policy and the keyring, connects
//! straight to PostgreSQL, prints the plan with `--dry-run`, otherwise shows progress on
//! standard error (a bar with rows/s and ETA on a terminal, a line every few seconds otherwise)
//! and prints a summary. Exit status 0 when the operation finished, 1 otherwise.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::migrate::{self, DEFAULT_BATCH_SIZE, Observer, Operation, Options};

/// The migration subcommands.
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Seal the plaintext of every sealed column (storage types changed where the mode needs
    /// it; a CHECK constraint added on envelope columns once sealed).
    Encrypt(MigrateArgs),
    /// Re-seal values made under older key versions with the active one, so those versions can
    /// be retired (`pgseal keys retire`).
    Rotate(MigrateArgs),
    /// Open every sealed column back to plaintext and restore the declared types (leaving
    /// pgseal). Pseudonyms are irreversible and stay.
    Decrypt(MigrateArgs),
    /// Build (or rebuild) the search indexes the policy declares (`search = { … }`): a CHECK
    /// requiring each index's tag, a GIN index built concurrently, the tokens of existing rows
    /// in batches. Reload every pgseal with the policy first. Resumable.
    Index(MigrateArgs),
}

/// What every migration takes.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The database, straight (not through pgseal), as a role owning the sealed tables: a
    /// postgres:// URL or a libpq-style "key=value" string. No TLS.
    #[arg(long, value_name = "URL", env = "PGSEAL_DATABASE_URL")]
    database_url: String,

    /// The policy: the columns to seal. Columns being changed must be marked
    /// `migrating = true`, and pgseal must run with that policy meanwhile.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,

    /// The keyring (0600); PGSEAL_ROOT_KEY (base64) can stand in for it.
    #[arg(long, value_name = "FILE", env = "PGSEAL_KEYRING")]
    keyring: Option<PathBuf>,

    #[command(flatten)]
    hsm: super::keys::HsmArgs,

    #[command(flatten)]
    audit: super::keys::UnwrapAudit,

    /// Print what would be done (type changes, rows, resumed positions) and change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Rows per batch: one transaction, its rows locked until it commits.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,

    /// Print no progress, only the summary.
    #[arg(long)]
    quiet: bool,
}

/// How long to wait for the database when the URL gives no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every migration subcommand loads before it connects.
struct Setup {
    policy: pgseal_policies::CompiledPolicy,
    keyring: pgseal_keys::Keyring,
    config: tokio_postgres::Config,
    options: Options,
    runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn load(args: &MigrateArgs) -> anyhow::Result<Setup> {
        let policy = pgseal_policies::CompiledPolicy::load(&args.policy)
            .map_err(|e| anyhow::anyhow!("policy {}: {e}", args.policy.display()))?;
        let keyring = match &args.keyring {
            Some(path) => {
                let keyring = pgseal_keys::Keyring::load_with(path, &args.hsm.access())?;
                args.audit.record("migrate", path, &keyring)?;
                keyring
            }
            None if std::env::var_os(pgseal_keys::ROOT_KEY_ENV).is_some() => {
                pgseal_keys::Keyring::from_env()?
            }
            None => anyhow::bail!("a keyring is needed: --keyring FILE or PGSEAL_ROOT_KEY"),
        };
        let mut config = tokio_postgres::Config::from_str(&args.database_url).map_err(|e| {
            anyhow::anyhow!("invalid --database-url: {}", crate::pgerror::describe(&e))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pgseal migrate");
        }
        let options = Options {
            batch_size: args.batch_size as usize,
            dry_run: args.dry_run,
            ..Options::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        Ok(Setup {
            policy,
            keyring,
            config,
            options,
            runtime,
        })
    }

    /// Runs `work` on a direct connection to the database, closed afterwards.
    fn with_client<T, E: Into<anyhow::Error>>(
        &self,
        work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, E>,
    ) -> anyhow::Result<T> {
        self.runtime.block_on(async {
            let (mut client, connection) = connect(&self.config).await?;
            let result = work(&mut client).await;
            drop(client);
            // The connection ends when the client is dropped; its outcome no longer matters.
            let _ = connection.await;
            result.map_err(Into::into)
        })
    }
}

/// Connects straight to the database; the connection task ends when the client is dropped.
async fn connect(
    config: &tokio_postgres::Config,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
)> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the database: {}",
            crate::pgerror::describe(&e)
        )
    })?;
    Ok((client, tokio::spawn(connection)))
}

/// `pgseal migrate index`.
fn run_index(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let setup = Setup::load(&args)?;
    if args.dry_run {
        let lines = setup.with_client(async |client| {
            migrate::search::dry_run(client, &setup.policy, &setup.keyring).await
        })?;
        for line in &lines {
            println!("{line}");
        }
        if lines.is_empty() {
            println!("the policy gives no column a search index");
        }
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    let mut progress = Progress::new(args.quiet);
    let outcome = setup.with_client(async |client| {
        migrate::search::build(
            client,
            &setup.policy,
            &setup.keyring,
            &setup.options,
            &mut progress,
        )
        .await
    });
    progress.finish();
    let report = outcome?;
    println!(
        "index done: {} rows stamped in {} batches, {:.1} s",
        report.values_changed,
        report.batches,
        report.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs a migration subcommand.
pub fn run(cmd: MigrateCommand) -> anyhow::Result<ExitCode> {
    let (operation, args) = match cmd {
        MigrateCommand::Encrypt(args) => (Operation::Encrypt, args),
        MigrateCommand::Rotate(args) => (Operation::Rotate, args),
        MigrateCommand::Decrypt(args) => (Operation::Decrypt, args),
        MigrateCommand::Index(args) => return run_index(args),
    };
    let setup = Setup::load(&args)?;
    let mut progress = Progress::new(args.quiet || args.dry_run);
    let outcome = setup.with_client(async |client| {
        migrate::run(
            client,
            &setup.policy,
            &setup.keyring,
            operation,
            &setup.options,
            &mut progress,
        )
        .await
    });
    progress.finish();
    let (plan, report) = outcome?;
    if args.dry_run {
        print!("{}", plan.describe());
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    for note in &plan.notes {
        eprintln!("pgseal migrate: note: {note}");
    }
    println!(
        "{} done: {} rows in {} batches, {} values rewritten, {:.1} s ({} rows/s; batches \
         {:.1} s, {} rows/s){}",
        operation.name(),
        report.rows_scanned,
        report.batches,
        report.values_changed,
        report.elapsed.as_secs_f64(),
        report.rows_per_second().round() as u64,
        report.batch_time.as_secs_f64(),
        report.batch_rows_per_second().round() as u64,
        if report.retries > 0 {
            format!(", {} batches retried", report.retries)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The progress bar: `public.patients ████░░░░ 12,000/100,000 rows, 4,100/s, eta 21s`.
const BAR_TEMPLATE: &str =
    "{prefix} {bar:30.cyan/blue} {human_pos}/{human_len} rows, {per_sec}, eta {eta}";

/// How often progress lines are printed when standard error is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Progress on standard error: a bar on a terminal, periodic lines otherwise, or nothing.
enum Progress {
    Quiet,
    Bar(Option<ProgressBar>),
    Lines {
        table: String,
        done: u64,
        total: u64,
        started: Instant,
        last: Instant,
    },
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bar(None)
        } else {
            Progress::Lines {
                table: String::new(),
                done: 0,
                total: 0,
                started: Instant::now(),
                last: Instant::now(),
            }
        }
    }

    fn finish(&mut self) {
        if let Progress::Bar(Some(bar)) = self {
            bar.finish();
        }
    }
}

impl Observer for Progress {
    fn table(&mut self, name: &str, rows: u64) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => {
                if let Some(old) = bar.take() {
                    old.finish();
                }
                let new = ProgressBar::new(rows);
                new.set_style(
                    ProgressStyle::with_template(BAR_TEMPLATE)
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                new.set_prefix(name.to_string());
                *bar = Some(new);
            }
            Progress::Lines {
                table,
                done,
                total,
                started,
                ..
            } => {
                *table = name.to_string();
                *done = 0;
                *total = rows;
                *started = Instant::now();
                eprintln!("pgseal migrate: {name}: {rows} rows");
            }
        }
    }

    fn advance(&mut self, rows: u64) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => {
                if let Some(bar) = bar {
                    bar.inc(rows);
                }
            }
            Progress::Lines {
                table,
                done,
                total,
                started,
                last,
            } => {
                *done += rows;
                if last.elapsed() >= PLAIN_PROGRESS_EVERY {
                    *last = Instant::now();
                    let rate = *done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    let eta = total.saturating_sub(*done) as f64 / rate.max(1.0);
                    eprintln!(
                        "pgseal migrate: {table}: {done}/{total} rows, {rate:.0} rows/s, eta {eta:.0}s"
                    );
                }
            }
        }
    }

    fn note(&mut self, text: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(Some(bar)) => bar.println(format!("pgseal migrate: {text}")),
            _ => eprintln!("pgseal migrate: {text}"),
        }
    }

    fn warn(&mut self, text: &str) {
        match self {
            Progress::Bar(Some(bar)) => bar.println(format!("pgseal migrate: warning: {text}")),
            _ => eprintln!("pgseal migrate: warning: {text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }
}
