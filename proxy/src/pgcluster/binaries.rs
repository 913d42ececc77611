//! Finding PostgreSQL's programs: the directory of the server binaries (`initdb`, `postgres`)
//! and, beside them, the client programs of the same version.

use std::path::{Path, PathBuf};

use super::ClusterError;

/// The one-line message given when no PostgreSQL server binaries are installed.
pub const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, postgres) found on PATH or under \
/usr/lib/postgresql/*/bin: install them, e.g. `apt-get install -y postgresql`";

/// Returns the directory holding `initdb` and `postgres`.
///
/// Looks at `initdb` on `PATH` first (following symbolic links, since Debian links
/// `/usr/local/bin/initdb` into its versioned directory), then at the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn server_bin_dir() -> Result<PathBuf, ClusterError> {
    on_path()
        .or_else(newest_versioned)
        .ok_or(ClusterError::NoServerBinaries)
}

/// The path of a client program (`psql`, `pg_isready`, `pg_dump`): the one beside the server
/// binaries when present, else the bare name, for `PATH` to resolve.
pub fn program(bin_dir: &Path, name: &str) -> PathBuf {
    let own = bin_dir.join(name);
    if own.is_file() {
        own
    } else {
        PathBuf::from(name)
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let real = std::fs::canonicalize(dir.join("initdb")).ok()?;
        let real_dir = real.parent()?;
        has_server(real_dir).then(|| real_dir.to_path_buf())
    })
}

fn newest_versioned() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_client_program_is_left_to_path() {
        let dir = Path::new("/nonexistent-pgseal-bin");
        assert_eq!(program(dir, "psql"), PathBuf::from("psql"));
    }
}
