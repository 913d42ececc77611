//! The command line: one subcommand per job, each in its own module.

mod audit;
mod demo;
mod keys;
mod migrate;
mod policy;
mod seed;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// pgseal keeps patient data sealed between a health application and its PostgreSQL database.
#[derive(Debug, Parser)]
#[command(name = "pgseal", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy between your application and PostgreSQL.
    Serve(Box<serve::ServeArgs>),
    /// Manage keyrings: generate, rotate, list and retire root key versions; wrap them under a
    /// key held by an HSM (PKCS#11) or unwrap them back.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check policy files, alone or against a live database.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Write realistic synthetic French patients into a database (directly or through pgseal).
    Seed(seed::SeedArgs),
    /// Check audit trails written with `serve --audit`.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Start a throwaway PostgreSQL with synthetic patients, served through pgseal, and show
    /// what each role sees; Ctrl-C removes everything.
    Demo(demo::DemoArgs),
    /// Protect an existing database in place: seal its plaintext, re-seal it under the active
    /// key version, or open it back (leaving pgseal).
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Seed(args) => seed::run(args),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Migrate(cmd) => migrate::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pgseal: {err:#}");
            ExitCode::FAILURE
        }
    }
}
