//! `pgseal seed`: writes synthetic French patients into a database with the hospital schema
//! (`policies/examples/hospital.sql`), straight into PostgreSQL or through pgseal.
//!
//! A thin command over [`crate::seed`]: it connects, shows progress on standard error (a
//! progress bar on a terminal, a line every few seconds otherwise), and prints what it wrote
//! on standard output. Exit status 0 when everything was written, 1 otherwise (with the reason
//! on standard error).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::seed::{
    ConsultationRange, DEFAULT_BATCH_SIZE, DEFAULT_SEED, SeedOptions, SeedReport, describe, seed,
};

/// Arguments of `pgseal seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The database to write to: a postgres:// URL or a libpq-style "key=value" string.
    /// Give PostgreSQL's address to write plaintext, pgseal's to have it seal the data. The
    /// connection does not use TLS.
    #[arg(long, value_name = "URL")]
    database_url: String,

    /// How many patients to write.
    #[arg(long, value_name = "N")]
    patients: u64,

    /// The seed: the same seed always writes the same patients.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Consultations per patient: a number, or a range drawn uniformly (0-5 averages 2.5).
    #[arg(long, value_name = "N|MIN-MAX", default_value = "0-5")]
    consultations_per_patient: ConsultationRange,

    /// Patients per INSERT and per transaction (1 to 5000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,

    /// Print no progress, only the summary.
    #[arg(long)]
    quiet: bool,
}

/// How long to wait for the database when the URL gives no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often progress lines are printed when standard error is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Writes synthetic patients.
pub fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let options = SeedOptions {
        patients: args.patients,
        seed: args.seed,
        consultations: args.consultations_per_patient,
        batch_size: args.batch_size,
    };
    options.validate()?;
    let mut config = tokio_postgres::Config::from_str(&args.database_url)
        .map_err(|e| anyhow::anyhow!("invalid --database-url: {}", describe(&e)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("pgseal seed");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut progress = Progress::new(options.patients, args.quiet);
    let report = runtime.block_on(async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
            let mut message = describe(&e);
            if message.contains("TLS") {
                message
                    .push_str(" (pgseal seed connects without TLS: use sslmode=disable or prefer)");
            }
            anyhow::anyhow!("cannot connect to the database: {message}")
        })?;
        let connection = tokio::spawn(connection);
        let result = seed(&client, &options, |done, total| {
            progress.update(done, total)
        })
        .await;
        drop(client);
        // The connection ends when the client is dropped; its outcome no longer matters.
        let _ = connection.await;
        anyhow::Ok(result?)
    });
    progress.finish();
    let report = report?;
    println!("{}", summary(&report));
    Ok(ExitCode::SUCCESS)
}

/// `wrote 500 patients and 1,262 consultations in 0.4 s (4,404 rows/s)`.
fn summary(report: &SeedReport) -> String {
    format!(
        "wrote {} patients and {} consultations in {:.1} s ({} rows/s)",
        thousands(report.patients),
        thousands(report.consultations),
        report.elapsed.as_secs_f64(),
        thousands(report.rows_per_second().round() as u64),
    )
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The progress bar: `████░░░░ 12,000/100,000 patients, 4,100/s, eta 21s`.
const BAR_TEMPLATE: &str =
    "{bar:40.cyan/blue} {human_pos}/{human_len} patients, {per_sec}, eta {eta}";

/// Progress on standard error: a bar on a terminal, periodic lines otherwise, or nothing.
enum Progress {
    Quiet,
    Bar(ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                last: Instant::now(),
            };
        }
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress::Bar(bar)
    }

    fn update(&mut self, done: u64, total: u64) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => bar.set_position(done),
            Progress::Lines { last } => {
                if last.elapsed() >= PLAIN_PROGRESS_EVERY && done < total {
                    *last = Instant::now();
                    let percent = done * 100 / total.max(1);
                    eprintln!(
                        "pgseal seed: {}/{} patients ({percent}%)",
                        thousands(done),
                        thousands(total)
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn the_summary_gives_counts_and_speed() {
        let report = SeedReport {
            patients: 2000,
            consultations: 5000,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            summary(&report),
            "wrote 2,000 patients and 5,000 consultations in 2.0 s (3,500 rows/s)"
        );
    }
}
