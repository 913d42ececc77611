//! Creating a cluster's directory and running `initdb` into it.
//!
//! Layout of the temporary directory (mode 0755, so that the `postgres` user can reach in when
//! running as root): `data/` (the data directory, 0700), `socket/` (the Unix socket, 0700),
//! `postgres.log`, and [`SERVER_PID_FILE`] while the server runs. Callers may add their own
//! files (TLS material, a keyring) before starting the server; they go with the directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::account::ServerAccount;
use super::binaries::server_bin_dir;
use super::watchdog::{SERVER_PID_FILE, Watchdog};
use super::{ClusterError, SUPERUSER, io_error, random_password, remove_if_present};

/// The authentication rules used unless the caller gives its own: scram-sha-256 for everyone,
/// over the Unix socket and over loopback TCP.
pub const DEFAULT_HBA: &str = "\
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
";

/// How to initialise a cluster.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The start of the temporary directory's name, e.g. `pgseal-demo-`.
    pub dir_prefix: String,
    /// The superuser's password; a random one when `None`.
    pub superuser_password: Option<String>,
    /// The contents of `pg_hba.conf`.
    pub hba: String,
}

impl Default for InitOptions {
    fn default() -> InitOptions {
        InitOptions {
            dir_prefix: "pgseal-cluster-".to_string(),
            superuser_password: None,
            hba: DEFAULT_HBA.to_string(),
        }
    }
}

/// The temporary directory and its watchdog. Dropping it removes the directory and dismisses
/// the watchdog.
#[derive(Debug)]
pub(super) struct Workspace {
    pub(super) base: PathBuf,
    watchdog: Option<Watchdog>,
}

impl Workspace {
    fn create(prefix: &str) -> Result<Workspace, ClusterError> {
        let temp = std::env::temp_dir();
        let base = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&temp)
            .map_err(io_error("creating a directory in", &temp))?
            .keep();
        let watchdog = match Watchdog::spawn(&base) {
            Ok(watchdog) => watchdog,
            Err(error) => {
                let _ = fs::remove_dir_all(&base);
                return Err(error);
            }
        };
        let workspace = Workspace {
            base,
            watchdog: Some(watchdog),
        };
        fs::set_permissions(&workspace.base, fs::Permissions::from_mode(0o755))
            .map_err(io_error("chmod", &workspace.base))?;
        Ok(workspace)
    }

    /// Removes the directory and dismisses the watchdog; does nothing the second time.
    pub(super) fn remove(&mut self) -> Result<(), ClusterError> {
        let Some(watchdog) = self.watchdog.take() else {
            return Ok(());
        };
        let removed = remove_if_present(&self.base);
        watchdog.dismiss();
        removed
    }

    /// Records the running server's process id for the watchdog (written whole, by rename).
    pub(super) fn record_server(&self, pid: Option<u32>) -> Result<(), ClusterError> {
        let file = self.base.join(SERVER_PID_FILE);
        let Some(pid) = pid else {
            return remove_if_present(&file);
        };
        let partial = self.base.join(format!("{SERVER_PID_FILE}.new"));
        fs::write(&partial, format!("{pid}\n"))
            .and_then(|()| fs::rename(&partial, &file))
            .map_err(io_error("writing", &file))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// A cluster directory that `initdb` has filled, whose server is not running yet.
///
/// Dropping it removes the directory.
#[derive(Debug)]
pub struct ClusterDir {
    pub(super) workspace: Workspace,
    pub(super) bin_dir: PathBuf,
    pub(super) account: ServerAccount,
    pub(super) password: String,
}

impl ClusterDir {
    /// Creates the temporary directory, starts its watchdog and runs `initdb`.
    pub fn init(options: &InitOptions) -> Result<ClusterDir, ClusterError> {
        let bin_dir = server_bin_dir()?;
        let account = ServerAccount::detect()?;
        let cluster = ClusterDir {
            workspace: Workspace::create(&options.dir_prefix)?,
            bin_dir,
            account,
            password: options
                .superuser_password
                .clone()
                .unwrap_or_else(random_password),
        };
        for dir in [cluster.data_dir(), cluster.socket_dir()] {
            fs::create_dir(&dir).map_err(io_error("creating", &dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error("chmod", &dir))?;
            cluster.account.own(&dir)?;
        }
        cluster.initdb(&options.hba)?;
        Ok(cluster)
    }

    /// A streaming standby of `primary`: a new directory (with its watchdog) filled by
    /// `pg_basebackup -R` as the superuser, so that it starts in hot standby following the
    /// primary. The primary's `pg_hba.conf` must let the superuser connect for replication over
    /// loopback. The standby has the primary's superuser and password.
    pub fn replica_of(primary: &super::Cluster, prefix: &str) -> Result<ClusterDir, ClusterError> {
        let cluster = ClusterDir {
            workspace: Workspace::create(prefix)?,
            bin_dir: primary.bin_dir().to_path_buf(),
            account: ServerAccount::detect()?,
            password: primary.superuser_password().to_string(),
        };
        for dir in [cluster.data_dir(), cluster.socket_dir()] {
            fs::create_dir(&dir).map_err(io_error("creating", &dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(io_error("chmod", &dir))?;
            cluster.account.own(&dir)?;
        }
        let program = cluster.bin_dir.join("pg_basebackup");
        let output = cluster
            .account
            .command(&program)
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .args(["-h", primary.host(), "-p", &primary.port().to_string()])
            .args(["-U", SUPERUSER])
            .env("PGPASSWORD", &cluster.password)
            .env("PGSSLMODE", "disable")
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .map_err(|error| ClusterError::Spawn { program, error })?;
        if !output.status.success() {
            return Err(ClusterError::Tool {
                program: "pg_basebackup",
                output: one_line(&output.stderr),
            });
        }
        Ok(cluster)
    }

    fn initdb(&self, hba: &str) -> Result<(), ClusterError> {
        let pwfile = self.path().join("pwfile");
        self.write_private(&pwfile, &self.password)?;
        let initdb = self.bin_dir.join("initdb");
        let output = self
            .account
            .command(&initdb)
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8"])
            .arg("--no-sync")
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C aimed at the caller is the caller's to handle.
            .process_group(0)
            .output()
            .map_err(|error| ClusterError::Spawn {
                program: initdb,
                error,
            })?;
        let _ = fs::remove_file(&pwfile);
        if !output.status.success() {
            return Err(ClusterError::Initdb(one_line(&output.stderr)));
        }
        let hba_file = self.data_dir().join("pg_hba.conf");
        fs::write(&hba_file, hba).map_err(io_error("writing", &hba_file))
    }

    /// Writes `contents` to `path` with mode 0600, owned by the server's account.
    pub fn write_private(&self, path: &Path, contents: &str) -> Result<(), ClusterError> {
        fs::write(path, contents).map_err(io_error("writing", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(io_error("chmod", path))?;
        self.account.own(path)
    }

    /// The cluster's temporary directory (files put here are removed with it).
    pub fn path(&self) -> &Path {
        &self.workspace.base
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.path().join("socket")
    }

    /// Who runs the server: give it the files it must read ([`ServerAccount::own`]).
    pub fn account(&self) -> &ServerAccount {
        &self.account
    }

    /// The directory of the server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
}

/// A program's error output on one line, lines joined with ` | `.
pub(super) fn one_line(stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    lines.join(" | ")
}
