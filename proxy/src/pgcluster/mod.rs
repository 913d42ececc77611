//! A throwaway PostgreSQL cluster started from the system's server binaries: the one behind
//! `pgseal demo` and the end-to-end test harness.
//!
//! [`ClusterDir::init`] finds the server binaries ([`server_bin_dir`]), creates a temporary
//! directory and runs `initdb` into it (scram-sha-256, a superuser `postgres` with a random or
//! given password, the caller's `pg_hba.conf`). [`ClusterDir::start`] runs `postgres` on a free
//! loopback port (tried up to three times, a half-started server killed before each retry) and
//! waits until `pg_isready` answers. [`Cluster::stop`] stops it (fast shutdown) and removes the
//! directory; dropping a [`Cluster`] or a [`ClusterDir`] does the same.
//!
//! As root, `initdb` and `postgres` run as the `postgres` user ([`ServerAccount`]). From the
//! moment the directory exists, a [`Watchdog`] process waits for this process to exit, however
//! it exits, and then stops the server and removes the directory: nothing is left behind after
//! a panic or a `kill -9`.
//!
//! [`ClusterDir::replica_of`] makes a streaming standby of a running cluster with
//! `pg_basebackup -R` (its own directory and watchdog); [`Cluster::promote`] promotes one.
//!
//! Modules: [`binaries`] (finding the programs), [`account`] (who runs the server), `dir`
//! (creating and initialising the directory), `running` (the server's life), [`watchdog`].

pub mod account;
pub mod binaries;
mod dir;
mod running;
pub mod watchdog;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use account::ServerAccount;
pub use binaries::{INSTALL_HINT, program, server_bin_dir};
pub use dir::{ClusterDir, DEFAULT_HBA, InitOptions};
pub use running::Cluster;
pub use watchdog::Watchdog;

/// The address the cluster listens on.
pub const HOST: &str = "127.0.0.1";

/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";

/// Why a cluster could not be created, started or removed.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// Neither `PATH` nor `/usr/lib/postgresql/*/bin` holds `initdb` and `postgres`.
    #[error("{INSTALL_HINT}")]
    NoServerBinaries,
    /// Running as root, and there is no `postgres` user to run the server as.
    #[error(
        "running as root needs a `postgres` user to run PostgreSQL as \
         (`apt-get install -y postgresql` creates it)"
    )]
    NoPostgresUser,
    /// The user database could not be read.
    #[error("looking up the postgres user: {0}")]
    UserLookup(nix::Error),
    /// A file or directory operation failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot run {}: {error}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// `initdb` failed; its error output, on one line.
    #[error("initdb failed: {0}")]
    Initdb(String),
    /// `pg_basebackup` or `pg_ctl` failed; its error output, on one line.
    #[error("{program} failed: {output}")]
    Tool {
        /// The program.
        program: &'static str,
        /// Its error output, lines joined with ` | `.
        output: String,
    },
    /// The server did not come up; the last lines of its log.
    #[error("PostgreSQL did not start on port {port}: {log}")]
    Start {
        /// The port it was given.
        port: u16,
        /// The end of its log, lines joined with ` | `.
        log: String,
    },
    /// No loopback port could be had.
    #[error("finding a free port: {0}")]
    FreePort(std::io::Error),
    /// The server outlived fast shutdown, immediate shutdown and SIGKILL.
    #[error("PostgreSQL (pid {0}) did not stop")]
    StillRunning(u32),
}

/// A port that was free a moment ago on loopback.
pub fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(ClusterError::FreePort)
}

/// Maps an I/O error to [`ClusterError::Io`] naming what was done to which path.
fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ClusterError + use<> {
    let path = path.to_path_buf();
    move |error| ClusterError::Io {
        action,
        path,
        error,
    }
}

/// Removes a file or a directory tree; one already gone is not an error.
fn remove_if_present(path: &Path) -> Result<(), ClusterError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("removing", path)(e)),
        _ => Ok(()),
    }
}

/// A random password of 24 letters and digits (safe in URLs and connection strings).
pub fn random_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_url_safe() {
        let (a, b) = (random_password(), random_password());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn the_missing_binaries_error_says_how_to_install_them() {
        let text = ClusterError::NoServerBinaries.to_string();
        assert!(text.contains("apt-get install -y postgresql"), "{text}");
        assert!(!text.contains('\n'));
    }
}
