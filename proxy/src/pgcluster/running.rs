//! The server's life: starting `postgres` on a free port, waiting until it accepts connections,
//! and stopping it.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::dir::ClusterDir;
use super::{ClusterError, HOST, SUPERUSER, free_port, io_error, program};

/// How many ports are tried before giving up.
const START_ATTEMPTS: usize = 3;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long fast shutdown may take before immediate shutdown, and that before SIGKILL.
const STOP_STEPS: [(Signal, Duration); 3] = [
    (Signal::SIGINT, Duration::from_secs(30)),
    (Signal::SIGQUIT, Duration::from_secs(5)),
    (Signal::SIGKILL, Duration::from_secs(5)),
];

/// Settings every throwaway cluster runs with: loopback only, and no durability (a crash
/// loses a throwaway cluster anyway).
const BASE_SETTINGS: [&str; 4] = [
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

/// A running throwaway cluster.
///
/// [`Cluster::stop`] stops it and removes its directory; dropping it does the same, quietly.
#[derive(Debug)]
pub struct Cluster {
    dir: ClusterDir,
    port: u16,
    server: Option<Child>,
}

impl ClusterDir {
    /// Starts `postgres` with the base settings plus `settings` (`name=value`, each passed as
    /// `-c`), and waits until it accepts connections. A port taken in the meantime is retried
    /// on another one.
    pub fn start(self, settings: &[String]) -> Result<Cluster, ClusterError> {
        let mut last_error = None;
        for _attempt in 0..START_ATTEMPTS {
            let port = free_port()?;
            match self.launch(port, settings) {
                Ok(server) => {
                    return Ok(Cluster {
                        dir: self,
                        port,
                        server: Some(server),
                    });
                }
                Err(error @ ClusterError::Start { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClusterError::Start {
            port: 0,
            log: "no attempt made".into(),
        }))
    }

    /// Starts `postgres` on `port` and waits until it accepts connections; a server that did
    /// not come up is killed before returning, so that a retry never finds it in the way.
    fn launch(&self, port: u16, settings: &[String]) -> Result<Child, ClusterError> {
        let log_path = self.path().join("postgres.log");
        let log = fs::File::create(&log_path).map_err(io_error("creating", &log_path))?;
        self.account.own(&log_path)?;
        let log_err = log.try_clone().map_err(io_error("opening", &log_path))?;
        let postgres = self.bin_dir.join("postgres");
        let mut command = self.account.command(&postgres);
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(self.socket_dir());
        for setting in BASE_SETTINGS
            .iter()
            .copied()
            .chain(settings.iter().map(String::as_str))
        {
            command.arg("-c").arg(setting);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C aimed at the caller must not stop the server
            // before the caller (or the watchdog) has cleaned up.
            .process_group(0)
            .spawn()
            .map_err(|error| ClusterError::Spawn {
                program: postgres,
                error,
            })?;
        let ready = self
            .workspace
            .record_server(Some(child.id()))
            .and_then(|()| self.wait_ready(port, &mut child));
        match ready {
            Ok(()) => Ok(child),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = self.workspace.record_server(None);
                Err(error)
            }
        }
    }

    fn wait_ready(&self, port: u16, child: &mut Child) -> Result<(), ClusterError> {
        let pg_isready = program(&self.bin_dir, "pg_isready");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // As the superuser on an existing database, so that the probe itself logs nothing.
            let ready = Command::new(&pg_isready)
                .args(["-q", "-h", HOST, "-p", &port.to_string()])
                .args(["-U", SUPERUSER, "-d", "postgres"])
                .stdin(Stdio::null())
                .status()
                .map_err(|error| ClusterError::Spawn {
                    program: pg_isready.clone(),
                    error,
                })?;
            if ready.success() {
                return Ok(());
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                return Err(ClusterError::Start {
                    port,
                    log: log_tail(&self.path().join("postgres.log")),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Cluster {
    /// The host the server listens on.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` of the server.
    pub fn address(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.dir.password
    }

    /// A `postgres://` URL for the superuser and `database`, straight to the server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@{HOST}:{}/{database}",
            self.dir.password, self.port
        )
    }

    /// The directory of the server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        self.dir.bin_dir()
    }

    /// The path of a client program (`psql`, `pg_dump`): the server's own when present.
    pub fn program(&self, name: &str) -> PathBuf {
        program(self.dir.bin_dir(), name)
    }

    /// The cluster's temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.data_dir()
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.socket_dir()
    }

    /// The server's (postmaster's) process id.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The server's major version, as `initdb` recorded it (`PG_VERSION`).
    pub fn version(&self) -> Option<String> {
        fs::read_to_string(self.data_dir().join("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_string())
    }

    /// Promotes a standby to primary (`pg_ctl promote`), waiting until it accepts writes.
    pub fn promote(&self) -> Result<(), ClusterError> {
        let program = self.dir.bin_dir().join("pg_ctl");
        let output = self
            .dir
            .account
            .command(&program)
            .arg("promote")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60"])
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .map_err(|error| ClusterError::Spawn { program, error })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ClusterError::Tool {
                program: "pg_ctl promote",
                output: super::dir::one_line(&output.stderr),
            })
        }
    }

    /// Stops the server (fast shutdown: sessions are ended, then immediate shutdown and SIGKILL
    /// if it lingers), removes the directory and dismisses the watchdog.
    pub fn stop(mut self) -> Result<(), ClusterError> {
        let stopped = self.stop_server();
        let removed = self.dir.workspace.remove();
        stopped.and(removed)
    }

    fn stop_server(&mut self) -> Result<(), ClusterError> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let pid = server.id();
        for (signal, patience) in STOP_STEPS {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(raw), signal);
            }
            let deadline = Instant::now() + patience;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.try_wait() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(ClusterError::StillRunning(pid))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The directory goes with `self.dir`, after the server has stopped.
        let _ = self.stop_server();
    }
}

/// The last five lines of the server's log, joined with ` | `.
fn log_tail(path: &Path) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let mut tail: Vec<&str> = log.lines().rev().take(5).collect();
    tail.reverse();
    tail.join(" | ")
}
