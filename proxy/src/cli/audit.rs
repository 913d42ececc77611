//! `pgseal audit …`: checking audit trails.
//!
//! `pgseal audit verify FILE --keyring KEYRING` checks every line's HMAC chain and exits with
//! **0** when the trail is intact (gaps — events dropped under load — are noted), **1** when it
//! was altered (the first bad line is named: a line removed, reordered, edited, or a new chain
//! spliced in), **2** when it could not be checked (the file or keyring cannot be read, or the
//! key version it was written with is retired or from another keyring).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::audit::{VerifyError, verify_file};

/// Audit trail subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check an audit trail's HMAC chain: exit 0 intact, 1 altered (the first bad line is
    /// named), 2 cannot be checked.
    Verify(VerifyArgs),
}

/// Arguments of `pgseal audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The audit trail (written with `pgseal serve --audit FILE`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Keyring file the proxy used; PGSEAL_ROOT_KEY (base64) can stand in for it
    #[arg(long, env = "PGSEAL_KEYRING", value_name = "FILE")]
    keyring: Option<PathBuf>,
    #[command(flatten)]
    hsm: super::keys::HsmArgs,
    #[command(flatten)]
    audit: super::keys::UnwrapAudit,
}

/// Runs an audit subcommand.
pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => Ok(verify(&args)),
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let keyring = match &args.keyring {
        Some(path) => pgseal_keys::Keyring::load_with(path, &args.hsm.access()),
        None => pgseal_keys::Keyring::from_env(),
    };
    let keyring = match keyring {
        Ok(keyring) => keyring,
        Err(err) => {
            eprintln!("pgseal: {err}");
            if args.keyring.is_none() {
                eprintln!("pgseal: give the keyring with --keyring FILE (or PGSEAL_ROOT_KEY)");
            }
            return ExitCode::from(2);
        }
    };
    let file = args.file.display();
    let code = match verify_file(&args.file, &keyring) {
        Ok(report) => {
            println!(
                "{file}: intact: {} records ({} statements, {} writer starts), last seq {}, \
                 head {}",
                report.records, report.statements, report.starts, report.last_seq, report.head
            );
            if report.key_events > 0 {
                println!(
                    "{file}: {} keyring event(s): unwraps through an HSM at start and `pgseal \
                     keys` operations",
                    report.key_events
                );
            }
            if report.gaps > 0 {
                println!(
                    "{file}: note: {} gap record(s): {} audit event(s) were dropped while the \
                     writer fell behind",
                    report.gaps, report.dropped
                );
            }
            eprintln!(
                "note: lines cut from the end of a trail cannot be detected from the file alone: \
                 compare last seq {} with pgseal_audit_last_seq",
                report.last_seq
            );
            ExitCode::SUCCESS
        }
        Err(err @ VerifyError::Broken { .. }) => {
            println!("{file}: {err}");
            eprintln!("{file}: the audit trail was altered or damaged");
            ExitCode::from(err.exit_code())
        }
        Err(err) => {
            eprintln!("pgseal: {file}: {err}");
            ExitCode::from(err.exit_code())
        }
    };
    // Recorded after the check (the trail given may be the one checked).
    if let Some(path) = &args.keyring
        && let Err(err) = args.audit.record("audit verify", path, &keyring)
    {
        eprintln!("pgseal: {err:#}");
        return ExitCode::from(2);
    }
    code
}
