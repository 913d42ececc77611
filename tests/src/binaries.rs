//! Finding the programs the tests run: PostgreSQL's server binaries and the `pgseal` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The one-line message a test fails with when no PostgreSQL server binaries are installed.
pub const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, postgres) found on PATH or under \
/usr/lib/postgresql/*/bin: install them, e.g. `apt-get install -y postgresql`";

/// Returns the directory holding `initdb`, `postgres` and `pg_ctl`, or the install hint.
///
/// Looks at `initdb` on `PATH` first (following symbolic links, since Debian links
/// `/usr/local/bin/initdb` into its versioned directory), then at the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn server_bin_dir() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if let Ok(real) = std::fs::canonicalize(&initdb)
                && let Some(real_dir) = real.parent()
                && has_server(real_dir)
            {
                return Ok(real_dir.to_path_buf());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| INSTALL_HINT.to_string())
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
