//! Finding the programs the tests run: PostgreSQL's server binaries (through pgseal's
//! [`pgcluster`], which the demo uses too) and the `pgseal` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pgseal::pgcluster;

/// The one-line message a test fails with when no PostgreSQL server binaries are installed.
pub const INSTALL_HINT: &str = pgcluster::INSTALL_HINT;

/// Returns the directory holding `initdb`, `postgres` and `pg_ctl`, or the install hint.
///
/// The discovery is pgseal's own ([`pgcluster::server_bin_dir`]): `initdb` on `PATH` first
/// (following symbolic links), then the newest `/usr/lib/postgresql/<version>/bin`.
pub fn server_bin_dir() -> Result<PathBuf, String> {
    pgcluster::server_bin_dir().map_err(|e| e.to_string())
}

/// Returns the path of the `pgseal` binary of this workspace, building it first if needed.
///
/// Test executables live in `target/<profile>/deps/`, so the binary is two levels up. When the
/// binary is missing (e.g. `cargo test -p pgseal-tests` alone), it is built with cargo.
pub fn pgseal_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable under target/<profile>/deps");
        let binary = profile_dir.join("pgseal");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "-p", "pgseal", "--bin", "pgseal"]);
        if release {
            build.arg("--release");
        }
        // Always ask cargo: it is a no-op when the binary is fresh, and it rebuilds a stale one.
        let status = build
            .status()
            .expect("run cargo to build the pgseal binary");
        assert!(status.success(), "building the pgseal binary failed");
        assert!(
            binary.is_file(),
            "pgseal binary not found at {}",
            binary.display()
        );
        binary
    })
}
