//! A throwaway PostgreSQL cluster for the tests: one per test binary, on a free loopback port,
//! in a temporary directory, with scram-sha-256 authentication and TLS.
//!
//! As root, `initdb` and `postgres` run as the `postgres` user (initdb refuses root). A watchdog
//! shell process waits for the test binary to exit, however it exits, then stops the server
//! (immediate shutdown) and removes the directory, so nothing is left behind after a panic or a
//! kill.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid, User, chown};

use crate::binaries::server_bin_dir;
use crate::tls::TestCertificates;

/// A role whose connections from loopback are trusted (no password).
pub const TRUST_ROLE: &str = "pgseal_trust";
/// A role that authenticates with a cleartext password (its password is its name).
pub const PASSWORD_ROLE: &str = "pgseal_password";
/// A role that authenticates with md5 (its password is its name).
pub const MD5_ROLE: &str = "pgseal_md5";
/// A role that authenticates with SCRAM-SHA-256 (its password is its name).
pub const SCRAM_ROLE: &str = "pgseal_scram";

/// The running test cluster.
pub struct Cluster {
    base: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    password: String,
    certs: TestCertificates,
    databases: AtomicU32,
}

/// Returns the cluster shared by this test binary, starting it on first use.
///
/// Panics with a one-line message when the server binaries are missing or the server does not
/// start: a test that needs PostgreSQL never skips silently.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match Cluster::start() {
        Ok(cluster) => cluster,
        Err(message) => panic!("{message}"),
    })
}

/// The account that owns the server's files: the `postgres` user when running as root.
struct ServerAccount {
    ids: Option<(Uid, Gid)>,
}

impl ServerAccount {
    fn detect() -> Result<Self, String> {
        if !Uid::effective().is_root() {
            return Ok(Self { ids: None });
        }
        let user = User::from_name("postgres")
            .map_err(|e| format!("looking up the postgres user: {e}"))?
            .ok_or("running as root needs a `postgres` user to run the server as (apt-get install -y postgresql creates it)")?;
        Ok(Self {
            ids: Some((user.uid, user.gid)),
        })
    }

    fn own(&self, path: &Path) -> Result<(), String> {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to postgres: {e}", path.display()))?;
        }
        Ok(())
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command.env("LC_ALL", "C").env_remove("PGDATA");
        command
    }
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let bin_dir = server_bin_dir()?;
        let account = ServerAccount::detect()?;
        let base = tempfile::Builder::new()
            .prefix("pgseal-test-cluster-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?
            .keep();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", base.display()))?;
        let data = base.join("data");
        let socket_dir = base.join("socket");
        for dir in [&data, &socket_dir] {
            fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
            account.own(dir)?;
        }

        let password = random_token();
        let pwfile = base.join("pwfile");
        write_private(&pwfile, &password, &account)?;
        let certs = TestCertificates::generate(&base.join("tls"))?;
        account.own(&certs.server_key)?;

        let output = account
            .command(&bin_dir.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        fs::write(data.join("pg_hba.conf"), HBA)
            .map_err(|e| format!("writing pg_hba.conf: {e}"))?;

        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port()?;
            let cluster = Cluster {
                base: base.clone(),
                bin_dir: bin_dir.clone(),
                port,
                password: password.clone(),
                certs: certs.clone(),
                databases: AtomicU32::new(0),
            };
            match cluster.launch(&account) {
                Ok(()) => {
                    cluster.create_test_roles()?;
                    return Ok(cluster);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Starts `postgres` and the watchdog, then waits until the server accepts connections.
    fn launch(&self, account: &ServerAccount) -> Result<(), String> {
        let log_path = self.base.join("postgres.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("creating log: {e}"))?;
        account.own(&log_path)?;
        let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut server = account.command(&self.bin_dir.join("postgres"));
        server
            .arg("-D")
            .arg(self.base.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.base.join("socket"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                self.certs.server_cert.display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", self.certs.server_key.display()))
            .args(["-c", "max_connections=300"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "shared_buffers=128MB"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group: a Ctrl-C aimed at the test run must not kill the server before
            // the watchdog has cleaned up.
            .process_group(0);
        let mut child = server
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        self.spawn_watchdog(child.id())?;

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // As the superuser on an existing database, so that the probe itself logs nothing.
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", "postgres"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                // The watchdog stops the server; nothing here waits on it.
                drop(child);
                return Ok(());
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                // Never leave a half-started server behind a retry on the same directory.
                let _ = child.kill();
                let _ = child.wait();
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "PostgreSQL did not start on port {}: {}",
                    self.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A shell process that outlives this one: once the test binary is gone it stops the server
    /// and removes the cluster's directory.
    fn spawn_watchdog(&self, server_pid: u32) -> Result<(), String> {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
             kill -QUIT {server} 2>/dev/null; i=0; \
             while kill -0 {server} 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
             kill -KILL {server} 2>/dev/null; rm -rf '{base}'",
            parent = std::process::id(),
            server = server_pid,
            base = self.base.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
            .map_err(|e| format!("starting the cluster watchdog: {e}"))
    }

    fn create_test_roles(&self) -> Result<(), String> {
        let sql = format!(
            "CREATE ROLE {TRUST_ROLE} LOGIN;
             CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD_ROLE}';
             CREATE ROLE {SCRAM_ROLE} LOGIN PASSWORD '{SCRAM_ROLE}';
             SET password_encryption = 'md5';
             CREATE ROLE {MD5_ROLE} LOGIN PASSWORD '{MD5_ROLE}';"
        );
        self.run_sql("postgres", &sql)
    }

    /// The host the server listens on.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` of the server, as pgseal's `--upstream` takes it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host(), self.port)
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        "postgres"
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// A `postgres://` URL for the superuser and `database`, straight to the server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            self.password, self.port, database
        )
    }

    /// The directory of the server binaries (initdb, postgres, pg_dump, …) in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The TLS material: the CA that signed the server's certificate, and that certificate.
    pub fn certificates(&self) -> &TestCertificates {
        &self.certs
    }

    /// Creates a fresh database named `<prefix>_<n>` and returns its name.
    pub fn create_database(&self, prefix: &str) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}");
        if let Err(e) = self.run_sql("postgres", &format!("CREATE DATABASE \"{name}\"")) {
            panic!("creating database {name}: {e}");
        }
        name
    }

    /// Runs SQL as the superuser in `database` through psql, failing on the first error.
    pub fn run_sql(&self, database: &str, sql: &str) -> Result<(), String> {
        let output = self
            .psql(database)
            .arg("-c")
            .arg(sql)
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// A `psql` command connected as the superuser to `database`, stopping on the first error.
    pub fn psql(&self, database: &str) -> Command {
        let mut command = Command::new(self.client_program("psql"));
        command
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &self.password)
            .env("PGDATABASE", database)
            .env("PGSSLMODE", "disable")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
        command
    }

    /// The path of a client program (psql, pg_dump, pgbench): the server's own when present.
    pub fn client_program(&self, name: &str) -> PathBuf {
        let own = self.bin_dir.join(name);
        if own.is_file() {
            own
        } else {
            PathBuf::from(name)
        }
    }

    /// Connects straight to the server as the superuser, spawning the connection task on the
    /// current tokio runtime.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// The authentication rules: one role per password method, scram-sha-256 for everyone else.
const HBA: &str = "\
local all all scram-sha-256
host all pgseal_trust 127.0.0.1/32 trust
host all pgseal_password 127.0.0.1/32 password
host all pgseal_md5 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
";

fn write_private(path: &Path, contents: &str, account: &ServerAccount) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    account.own(path)
}

/// A port that was free a moment ago on loopback.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn random_token() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}
