//! A throwaway PostgreSQL cluster for the tests: one per test binary, on a free loopback port,
//! in a temporary directory, with scram-sha-256 authentication and TLS.
//!
//! The cluster itself is pgseal's own [`pgcluster`] (the one `pgseal demo` runs): it finds the
//! server binaries, runs `initdb` and `postgres` (as the `postgres` user under root), and starts
//! a watchdog process that stops the server and removes the directory once the test binary has
//! exited, however it exits, so nothing is left behind after a panic or a kill. This harness
//! adds what the tests need on top: TLS material for the server, one role per password method
//! with its `pg_hba.conf` line, and helpers to create databases and run SQL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use pgseal::pgcluster::{self, ClusterDir, InitOptions};

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
    server: pgcluster::Cluster,
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

impl Cluster {
    fn start() -> Result<Self, String> {
        let dir = ClusterDir::init(&InitOptions {
            dir_prefix: "pgseal-test-cluster-".to_string(),
            superuser_password: None,
            hba: HBA.to_string(),
        })
        .map_err(|e| e.to_string())?;
        let certs = TestCertificates::generate(&dir.path().join("tls"))?;
        dir.account()
            .own(&certs.server_key)
            .map_err(|e| e.to_string())?;
        let settings = [
            "ssl=on".to_string(),
            format!("ssl_cert_file={}", certs.server_cert.display()),
            format!("ssl_key_file={}", certs.server_key.display()),
            "max_connections=300".to_string(),
            "shared_buffers=128MB".to_string(),
        ];
        let server = dir.start(&settings).map_err(|e| e.to_string())?;
        let cluster = Cluster {
            server,
            certs,
            databases: AtomicU32::new(0),
        };
        cluster.create_test_roles()?;
        // Shared by the whole test binary: never dropped, so the watchdog removes it on exit.
        Ok(cluster)
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
        self.server.host()
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The directory of the server's Unix-domain socket (`--upstream` takes it too).
    pub fn socket_dir(&self) -> PathBuf {
        self.server.socket_dir()
    }

    /// `host:port` of the server, as pgseal's `--upstream` takes it.
    pub fn address(&self) -> String {
        self.server.address()
    }

    /// The superuser's name.
    pub fn superuser(&self) -> &str {
        self.server.superuser()
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        self.server.superuser_password()
    }

    /// A `postgres://` URL for the superuser and `database`, straight to the server.
    pub fn url(&self, database: &str) -> String {
        self.server.url(database)
    }

    /// The server's log file (what PostgreSQL writes to standard error).
    pub fn server_log(&self) -> PathBuf {
        self.server.path().join("postgres.log")
    }

    /// The directory of the server binaries (initdb, postgres, pg_dump, …) in use.
    pub fn bin_dir(&self) -> &Path {
        self.server.bin_dir()
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

    /// Creates a fresh database `<prefix>_<n>` whose default collation is ICU's for
    /// `icu_locale` (PostgreSQL 15's `LOCALE_PROVIDER icu`), and returns its name.
    pub fn create_icu_database(&self, prefix: &str, icu_locale: &str) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}");
        let sql = format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' \
             LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'"
        );
        if let Err(e) = self.run_sql("postgres", &sql) {
            panic!("creating database {name} with ICU collation {icu_locale}: {e}");
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
            .env("PGHOST", self.host())
            .env("PGPORT", self.port().to_string())
            .env("PGUSER", self.superuser())
            .env("PGPASSWORD", self.superuser_password())
            .env("PGDATABASE", database)
            .env("PGSSLMODE", "disable")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
        command
    }

    /// The path of a client program (psql, pg_dump, pgbench): the server's own when present.
    pub fn client_program(&self, name: &str) -> PathBuf {
        self.server.program(name)
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

/// A port that was free a moment ago on loopback.
pub fn free_port() -> Result<u16, String> {
    pgcluster::free_port().map_err(|e| e.to_string())
}
