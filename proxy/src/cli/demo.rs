//! `pgseal demo`: a throwaway PostgreSQL with synthetic patients, served through pgseal, and a
//! tour of what each role sees. Ctrl-C (or SIGTERM) stops and removes everything.
//!
//! A thin command over [`crate::demo`]: it installs the signal handlers first, runs the steps
//! one by one (any of them interrupted by a signal, after which everything started so far is
//! stopped and removed), shows progress on standard error and prints the tour on standard
//! output once ready.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use indicatif::{HumanCount, ProgressBar, ProgressStyle};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::LogFormat;
use crate::demo::{self, DEFAULT_LISTEN, DEFAULT_PATIENTS, Demo, Reservation, tour};
use crate::logging;
use crate::seed::{DEFAULT_SEED, SeedOptions};

/// Arguments of `pgseal demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where pgseal listens for you
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,

    /// How many synthetic patients to write through pgseal
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PATIENTS)]
    patients: u64,

    /// The seed: the same seed writes the same patients
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SEED)]
    seed: u64,

    /// Patients per INSERT and per transaction
    #[arg(long, value_name = "N", default_value_t = DEMO_BATCH_SIZE, hide = true)]
    batch_size: usize,

    /// pgseal's log filter (logs go to standard error), e.g. info to see every session end
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    log_level: String,
}

/// Patients per INSERT and transaction through pgseal.
const DEMO_BATCH_SIZE: usize = 200;

/// Runs the demo until SIGINT or SIGTERM.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    logging::init(LogFormat::Human, &args.log_level);
    let options = SeedOptions {
        patients: args.patients,
        seed: args.seed,
        batch_size: args.batch_size,
        ..SeedOptions::default()
    };
    options.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("pgseal-demo")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut stop = StopSignals::install()?;
        // First, so that a taken port is refused before anything is created.
        let reservation = demo::reserve(&args.listen)?;
        say("starting PostgreSQL and loading the hospital example");
        let prepare = Demo::prepare();
        tokio::pin!(prepare);
        let mut demo = tokio::select! {
            prepared = &mut prepare => prepared?,
            name = stop.recv() => {
                say(&format!("{name}: stopping once PostgreSQL is up"));
                if let Ok(demo) = prepare.await {
                    demo.stop().await?;
                }
                say("stopped; nothing left behind");
                return Ok(ExitCode::SUCCESS);
            }
        };
        let dir = demo.info().dir;
        let outcome = serve_until_stopped(&mut demo, reservation, &options, &mut stop).await;
        let stopped = demo.stop().await;
        outcome?;
        stopped?;
        say(&format!("stopped; removed {}", dir.display()));
        Ok(ExitCode::SUCCESS)
    })
}

/// Serves, seeds, prints the tour and waits for a signal; returns early on a signal.
async fn serve_until_stopped(
    demo: &mut Demo,
    reservation: Reservation,
    options: &SeedOptions,
    stop: &mut StopSignals,
) -> anyhow::Result<()> {
    let info = demo.info();
    say(&format!(
        "PostgreSQL {} is up on {}, files in {}",
        info.postgres_version.as_deref().unwrap_or(""),
        info.postgres,
        info.dir.display()
    ));
    let address = demo.serve(reservation).await?;
    say(&format!(
        "pgseal is serving on {address}; writing {} synthetic patients through it as ehr_app \
         (sealed on the way in)",
        HumanCount(options.patients)
    ));
    let mut progress = Progress::new(options.patients);
    let seeded = tokio::select! {
        report = demo.seed(options, |done, total| progress.update(done, total)) => Some(report),
        name = stop.recv() => {
            say(&format!("{name}: stopping"));
            None
        }
    };
    progress.finish();
    let Some(report) = seeded else {
        return Ok(());
    };
    let report = report?;
    say(&format!(
        "wrote {} patients and {} consultations in {:.1} s",
        HumanCount(report.patients),
        HumanCount(report.consultations),
        report.elapsed.as_secs_f64()
    ));
    demo.index().await?;
    say("built the search index of first names (pgseal migrate index)");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "\n{}", tour::render(&demo.info(), &report))
        .and_then(|()| stdout.flush())
        .context("writing to standard output")?;
    drop(stdout);
    let name = stop.recv().await;
    say(&format!("{name}: stopping"));
    Ok(())
}

/// One progress line on standard error.
fn say(message: &str) {
    eprintln!("pgseal demo: {message}");
}

/// SIGINT and SIGTERM, installed before anything starts so that both reach the clean-up.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        let install = |kind| signal(kind).context("installing signal handlers");
        Ok(StopSignals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal and names it.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Seeding progress: a bar on a terminal, a line at each quarter otherwise.
struct Progress {
    bar: ProgressBar,
    quarters: u64,
}

/// `██████░░░░ 4,000/10,000 patients (eta 5s)`.
const BAR: &str = "  {bar:40} {human_pos}/{human_len} patients (eta {eta})";

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(BAR) {
            bar.set_style(style);
        }
        Progress { bar, quarters: 0 }
    }

    fn update(&mut self, done: u64, total: u64) {
        self.bar.set_position(done);
        let quarters = done * 4 / total.max(1);
        if self.bar.is_hidden() && quarters > self.quarters && done < total {
            self.quarters = quarters;
            say(&format!(
                "{}/{} patients",
                HumanCount(done),
                HumanCount(total)
            ));
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR).is_ok());
    }
}
