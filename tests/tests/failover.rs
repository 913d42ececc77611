//! Several upstream hosts and failover, against real PostgreSQL: a primary started with
//! `pgcluster` and a streaming standby made from it with `pg_basebackup -R`, pgseal in front of
//! both with `--upstream primary,standby`.
//!
//! The failover test stops the primary and promotes the standby (`pg_ctl promote`) while
//! clients write sealed rows through pgseal, then checks that new sessions land on the new
//! primary, that every acknowledged row is there, that the sealed columns at rest hold
//! ciphertext, that budget state (`--state-url` with two hosts and
//! `target_session_attrs=read-write`) followed, and that `/healthz` and `/metrics` name the new
//! serving host. The other tests share one primary/standby pair that is never promoted.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pgseal::config::{ServeConfig, UpstreamTarget};
use pgseal::pgcluster::{self, ClusterDir, InitOptions};
use pgseal::server::Server;
use pgseal_keys::KeyringFile;
use pgseal_tests::hospital::examples_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The primary's rules: the superuser may also connect for replication.
const HBA: &str = "\
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host replication postgres 127.0.0.1/32 scram-sha-256
";

/// Longest wait for something that should happen at once (a replica catching up, writers
/// making progress); past it the test fails with what it was waiting for.
const PATIENCE: Duration = Duration::from_secs(30);

/// A primary, the hospital database on it, and a streaming standby of it.
struct Pair {
    primary: Option<pgcluster::Cluster>,
    standby: pgcluster::Cluster,
    keyring: PathBuf,
    _keys: tempfile::TempDir,
}

const DATABASE: &str = "hospital";

impl Pair {
    /// Starts both (panicking with the reason when a server cannot start: never skips).
    fn start(name: &str) -> Pair {
        let primary = ClusterDir::init(&InitOptions {
            dir_prefix: format!("pgseal-failover-{name}-primary-"),
            superuser_password: None,
            hba: HBA.to_string(),
        })
        .and_then(|dir| dir.start(&[]))
        .unwrap_or_else(|e| panic!("starting the primary: {e}"));
        psql(&primary, "postgres", &["-c", "CREATE DATABASE hospital"]).unwrap();
        let schema = examples_dir().join("hospital.sql");
        psql(&primary, DATABASE, &["-f", schema.to_str().unwrap()]).unwrap();
        let standby = ClusterDir::replica_of(&primary, &format!("pgseal-failover-{name}-standby-"))
            .and_then(|dir| dir.start(&[]))
            .unwrap_or_else(|e| panic!("starting the standby: {e}"));
        wait_replayed(&primary, &standby);
        let keys = tempfile::tempdir().unwrap();
        let keyring = keys.path().join("keyring.toml");
        KeyringFile::generate()
            .unwrap()
            .write_new(&keyring)
            .unwrap();
        Pair {
            primary: Some(primary),
            standby,
            keyring,
            _keys: keys,
        }
    }

    fn primary(&self) -> &pgcluster::Cluster {
        self.primary.as_ref().expect("the primary still runs")
    }

    /// pgseal protecting the hospital with `--upstream hosts --upstream-target target`.
    async fn proxy(&self, hosts: &str, target: UpstreamTarget) -> Proxy {
        Proxy::start(self, hosts, target, |_| {}).await
    }
}

/// One pair shared by the tests that do not promote.
fn shared() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| Pair::start("shared"))
}

/// Runs psql as the superuser, stopping on the first error; its unaligned output.
fn psql(cluster: &pgcluster::Cluster, database: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(cluster.program("psql"))
        .env("PGHOST", cluster.host())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", cluster.superuser())
        .env("PGPASSWORD", cluster.superuser_password())
        .env("PGDATABASE", database)
        .env("PGSSLMODE", "disable")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Waits until the standby has replayed everything the primary has written so far.
fn wait_replayed(primary: &pgcluster::Cluster, standby: &pgcluster::Cluster) {
    let lsn = psql(primary, "postgres", &["-c", "SELECT pg_current_wal_lsn()"]).unwrap();
    let check = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if psql(standby, "postgres", &["-c", &check]).as_deref() == Ok("t") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay up to {lsn}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A direct connection to the hospital database of a cluster as its superuser.
async fn direct(cluster: &pgcluster::Cluster) -> tokio_postgres::Client {
    direct_to(cluster, DATABASE).await
}

/// A direct connection to `database` of a cluster as its superuser.
async fn direct_to(cluster: &pgcluster::Cluster, database: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&cluster.url(database), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting straight to {}: {e}", cluster.address()));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// pgseal in this test's runtime, with its admin endpoint.
struct Proxy {
    address: SocketAddr,
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(
        pair: &Pair,
        hosts: &str,
        target: UpstreamTarget,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> Proxy {
        let mut config = ServeConfig::new("127.0.0.1:0", hosts).expect("a valid --upstream");
        config.upstream_target = target;
        config.policy = Some(examples_dir().join("hospital.toml"));
        config.keyring = Some(pair.keyring.clone());
        config.admin_listen = Some("127.0.0.1:0".into());
        config.connect_timeout = Duration::from_secs(3);
        config.shutdown_grace = Duration::from_millis(100);
        adjust(&mut config);
        let server = Server::bind(config).await.expect("pgseal binds");
        let address = server.local_addr();
        let admin = server.admin_addr().expect("the admin endpoint");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Proxy {
            address,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Connects as one of the hospital's roles (password: its name).
    async fn connect(&self, role: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={role} password={role} dbname={DATABASE} sslmode=disable",
            self.address.port()
        );
        let (client, connection) =
            tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The port and recovery state of the server a new session lands on.
    async fn landing(&self) -> (u16, bool) {
        let client = self
            .connect("ehr_app")
            .await
            .unwrap_or_else(|e| panic!("a session through pgseal: {e:?}"));
        let row = client
            .query_one(
                "SELECT current_setting('port')::int, pg_is_in_recovery()",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i32>(0) as u16, row.get(1))
    }

    /// GET `path` on the admin endpoint: status line and body.
    async fn admin(&self, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A well-formed NIR for patient `i` (control key = 97 − body mod 97).
fn nir(i: u64) -> String {
    let body = format!("1850575{:03}{:03}", 100 + (i / 999) % 800, 1 + i % 999);
    let number: u64 = body.parse().unwrap();
    format!("{body}{:02}", 97 - number % 97)
}

/// The SQLSTATE and message of a failed connection or statement.
fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => (String::new(), e.to_string()),
    }
}

/// What the writers acknowledged: NIR → last name.
type Acked = Arc<Mutex<Vec<(String, String)>>>;

/// A client writing sealed rows through pgseal until told to stop; it reconnects whenever its
/// session ends (the primary going away) or is refused (a host of the wrong kind).
async fn writer(proxy_port: u16, first: u64, stop: Arc<AtomicBool>, acked: Acked) -> Vec<String> {
    let mut errors = Vec::new();
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let conninfo = format!(
            "host=127.0.0.1 port={proxy_port} user=ehr_app password=ehr_app dbname={DATABASE} \
             sslmode=disable"
        );
        let client = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
            Err(e) => {
                errors.push(format!("writer {first} connect: {:?}", db_error(&e)));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let (nir, name) = (nir(i), format!("Failover{i}"));
            match client
                .execute(
                    "INSERT INTO patients (nir, last_name) VALUES ($1, $2)",
                    &[&nir, &name],
                )
                .await
            {
                Ok(1) => {
                    acked.lock().unwrap().push((nir, name));
                    i += 1;
                }
                Ok(n) => panic!("an INSERT of one row reported {n}"),
                Err(e) => {
                    errors.push(format!("writer {first} insert {i}: {:?}", db_error(&e)));
                    // The row may or may not have committed: never reuse its NIR.
                    i += 1;
                    break;
                }
            }
        }
    }
    errors
}

/// The first patient number of each writer.
const WRITERS: [u64; 2] = [0, 500];

/// Waits until each writer has acknowledged at least `count` rows after the first `skip`.
async fn wait_acked(acked: &Acked, skip: usize, count: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let per_writer = {
            let acked = acked.lock().unwrap();
            let mut per_writer = [0usize; WRITERS.len()];
            for (_, name) in acked.iter().skip(skip) {
                let i: u64 = name.trim_start_matches("Failover").parse().unwrap();
                per_writer[usize::from(i >= WRITERS[1])] += 1;
            }
            per_writer
        };
        if per_writer.iter().all(|&n| n >= count) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the writers acknowledged {per_writer:?} rows, not {count} each"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_sends_new_sessions_to_the_promoted_standby_and_loses_nothing() {
    let mut pair = tokio::task::spawn_blocking(|| Pair::start("promote"))
        .await
        .unwrap();
    let (old, new) = (pair.primary().port(), pair.standby.port());
    let state_url = format!(
        "host=127.0.0.1,127.0.0.1 port={old},{new} user=postgres password={} dbname=postgres \
         target_session_attrs=read-write sslmode=disable connect_timeout=2",
        pair.primary().superuser_password()
    );
    let hosts = format!("127.0.0.1:{old},127.0.0.1:{new}");
    let proxy = Proxy::start(&pair, &hosts, UpstreamTarget::ReadWrite, |c| {
        c.state_url = Some(state_url);
    })
    .await;
    assert_eq!(proxy.landing().await, (old, false));

    // Two clients write while the primary goes away and the standby is promoted.
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = WRITERS
        .into_iter()
        .map(|first| {
            tokio::spawn(writer(
                proxy.address.port(),
                first,
                Arc::clone(&stop),
                Arc::clone(&acked),
            ))
        })
        .collect();
    wait_acked(&acked, 0, 20, "before the failover").await;
    let primary = pair.primary.take().unwrap();
    tokio::task::spawn_blocking(move || primary.stop())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("stopping the primary: {e}"));
    let standby = &pair.standby;
    tokio::task::block_in_place(|| standby.promote())
        .unwrap_or_else(|e| panic!("promoting the standby: {e}"));
    let promoted = acked.lock().unwrap().len();
    wait_acked(&acked, promoted, 20, "after the promotion").await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for writer in writers {
        errors.extend(writer.await.unwrap());
    }
    eprintln!("writer errors around the failover: {errors:#?}");
    // While the primary was down and the standby not yet promoted, sessions could not write:
    // they were told so (08001 or a lost connection), never given a wrong answer.
    for error in &errors {
        assert!(
            error.contains("08001")
                || error.contains("08006")
                || error.contains("57P01")
                || error.contains("57P03")
                || error.contains("communicating")
                || error.contains("closed")
                || error.contains("connection")
                || error.contains("25006"),
            "unexpected writer error: {error}"
        );
    }

    // New sessions land on the new primary and write.
    assert_eq!(proxy.landing().await, (new, false));
    let app = proxy.connect("ehr_app").await.unwrap();
    app.execute(
        "INSERT INTO patients (nir, last_name) VALUES ($1, 'AfterFailover')",
        &[&nir(999)],
    )
    .await
    .unwrap();
    acked
        .lock()
        .unwrap()
        .push((nir(999), "AfterFailover".into()));

    // Every acknowledged row is there, read through pgseal in plaintext.
    let rows = app
        .query("SELECT nir, last_name FROM patients", &[])
        .await
        .unwrap();
    let stored: HashSet<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let acked = acked.lock().unwrap().clone();
    for row in &acked {
        assert!(stored.contains(row), "acknowledged row {row:?} is missing");
    }

    // At rest on the new primary: tokens and envelopes, never the plaintext.
    let at_rest = direct(&pair.standby)
        .await
        .query("SELECT nir, last_name FROM patients", &[])
        .await
        .unwrap();
    assert_eq!(at_rest.len(), stored.len());
    let plain_nirs: HashSet<&str> = acked.iter().map(|(n, _)| n.as_str()).collect();
    for row in &at_rest {
        let (token, envelope): (String, String) = (row.get(0), row.get(1));
        assert!(
            envelope.starts_with("pgs1:"),
            "last_name at rest is not an envelope"
        );
        assert!(
            !plain_nirs.contains(token.as_str()),
            "a NIR is stored in plaintext"
        );
    }

    // Budget state followed: a support read leases from the store on the new primary.
    let admin = proxy.connect("ehr_admin").await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // The store lives where --state-url points: the postgres database.
    let store = direct_to(&pair.standby, "postgres").await;
    loop {
        let read = admin
            .query("SELECT last_name FROM patients LIMIT 3", &[])
            .await;
        let leased: i64 = store
            .query_one(
                "SELECT count(*) FROM pgseal.budget_state WHERE role = 'ehr_admin'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if leased > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the budget store did not follow the failover: {:?}",
            read.map(|rows| rows.len())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // /healthz and /metrics name the new serving host.
    let (status, body) = proxy.admin("/healthz").await;
    eprintln!("/healthz after the failover:\n{body}");
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(
        body.contains(&format!("serving: 127.0.0.1:{new} (target read-write)")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "host 127.0.0.1:{new}: answers; last seen: primary"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!("host 127.0.0.1:{old}: does not answer")),
        "{body}"
    );
    let (_, metrics) = proxy.admin("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "pgseal_upstream_serving{{host=\"127.0.0.1:{new}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "pgseal_upstream_serving{{host=\"127.0.0.1:{old}\"}} 0"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "pgseal_upstream_sessions_total{{host=\"127.0.0.1:{new}\"}}"
        )),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_host_that_is_down_is_skipped_and_cancels_follow_the_session() {
    let pair = tokio::task::spawn_blocking(shared).await.unwrap();
    let down = pgcluster::free_port().unwrap();
    let hosts = format!("127.0.0.1:{down},{}", pair.primary().address());
    let proxy = pair.proxy(&hosts, UpstreamTarget::Any).await;
    assert_eq!(proxy.landing().await, (pair.primary().port(), false));

    // A cancel goes to the host the session is on, not to the first one listed.
    let app = proxy.connect("ehr_app").await.unwrap();
    let token = app.cancel_token();
    let sleeping = tokio::spawn(async move { app.simple_query("SELECT pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let error = sleeping.await.unwrap().unwrap_err();
    assert_eq!(db_error(&error).0, "57014", "{error:?}");

    let (status, body) = proxy.admin("/healthz").await;
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(
        body.contains(&format!("host 127.0.0.1:{down}: does not answer")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "serving: {} (target any)",
            pair.primary().address()
        )),
        "{body}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn no_host_of_the_kind_asked_for_gives_08001_naming_the_hosts() {
    let pair = tokio::task::spawn_blocking(shared).await.unwrap();
    let standby = pair.standby.address();

    // The only reachable host is a standby: the session is refused, naming it and the target.
    let down = pgcluster::free_port().unwrap();
    let hosts = format!("{standby},127.0.0.1:{down}");
    let proxy = pair.proxy(&hosts, UpstreamTarget::ReadWrite).await;
    for _ in 0..2 {
        let error = proxy.connect("ehr_app").await.unwrap_err();
        let (code, message) = db_error(&error);
        assert_eq!(code, "08001", "{message}");
        assert!(message.contains(&standby), "{message}");
        assert!(message.contains("a standby"), "{message}");
        assert!(
            message.contains("--upstream-target read-write"),
            "{message}"
        );
    }
    // Once the standby is known, the unreachable host is tried first and the standby after.
    let error = proxy.connect("ehr_app").await.unwrap_err();
    let (_, message) = db_error(&error);
    assert!(
        message.contains(&format!("127.0.0.1:{down}: unreachable")),
        "{message}"
    );
    let (status, body) = proxy.admin("/healthz").await;
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(
        body.contains("serving: not known yet (target read-write"),
        "{body}"
    );
    proxy.stop().await;

    // No host answers at all: 08001 naming each one and why.
    let other = pgcluster::free_port().unwrap();
    let hosts = format!("127.0.0.1:{down},127.0.0.1:{other}");
    let proxy = pair.proxy(&hosts, UpstreamTarget::ReadWrite).await;
    let error = proxy.connect("ehr_app").await.unwrap_err();
    let (code, message) = db_error(&error);
    assert_eq!(code, "08001", "{message}");
    for port in [down, other] {
        assert!(
            message.contains(&format!("127.0.0.1:{port}: ")),
            "{message}"
        );
    }
    let (status, _) = proxy.admin("/healthz").await;
    assert!(status.contains("503"), "{status}");
    proxy.stop().await;
}

#[tokio::test]
async fn each_target_finds_its_kind_of_host() {
    let pair = tokio::task::spawn_blocking(shared).await.unwrap();
    let (primary, standby) = (pair.primary(), &pair.standby);
    let hosts = format!("{},{}", primary.address(), standby.address());

    // prefer-standby: nothing known, the first host listed (a primary) is accepted; once its
    // role is known, the standby not yet tried comes first, and stays first.
    let proxy = pair.proxy(&hosts, UpstreamTarget::PreferStandby).await;
    assert_eq!(proxy.landing().await, (primary.port(), false));
    assert_eq!(proxy.landing().await, (standby.port(), true));
    assert_eq!(proxy.landing().await, (standby.port(), true));
    let (_, body) = proxy.admin("/healthz").await;
    assert!(
        body.contains(&format!(
            "serving: {} (target prefer-standby)",
            standby.address()
        )),
        "{body}"
    );
    proxy.stop().await;

    // any: the listed order, whatever the role.
    let hosts = format!("{},{}", standby.address(), primary.address());
    let proxy = pair.proxy(&hosts, UpstreamTarget::Any).await;
    assert_eq!(proxy.landing().await, (standby.port(), true));
    assert_eq!(proxy.landing().await, (standby.port(), true));
    proxy.stop().await;

    // primary: the standby listed first is refused once, then skipped.
    let proxy = pair.proxy(&hosts, UpstreamTarget::Primary).await;
    let error = proxy.connect("ehr_app").await.unwrap_err();
    assert_eq!(db_error(&error).0, "08001");
    assert_eq!(proxy.landing().await, (primary.port(), false));
    proxy.stop().await;

    // standby and read-only: the other way round.
    let hosts = format!("{},{}", primary.address(), standby.address());
    for target in [UpstreamTarget::Standby, UpstreamTarget::ReadOnly] {
        let proxy = pair.proxy(&hosts, target).await;
        let error = proxy.connect("ehr_app").await.unwrap_err();
        let (code, message) = db_error(&error);
        assert_eq!(code, "08001", "{message}");
        assert!(message.contains("a primary"), "{message}");
        assert_eq!(proxy.landing().await, (standby.port(), true));
        assert_eq!(proxy.landing().await, (standby.port(), true));
        proxy.stop().await;
    }
}

/// `pgseal serve` with a bad `--upstream` list exits at once with a message naming the fault.
#[test]
fn bad_upstream_lists_are_refused_with_clear_errors() {
    for (args, needle) in [
        (
            &["--upstream", "127.0.0.1:5432,,127.0.0.1:5433"][..],
            "host 2 of the list is empty",
        ),
        (
            &["--upstream", "127.0.0.1:5432,127.0.0.1:99999"][..],
            "the port is not a number from 1 to 65535",
        ),
        (
            &["--upstream", "127.0.0.1:5432,127.0.0.1:5432"][..],
            "listed twice",
        ),
        (
            &["--upstream", "127.0.0.1:5432,db"][..],
            "expected HOST:PORT",
        ),
        (
            &["--upstream", "db1,db2", "--upstream-port", "1,2,3"][..],
            "3 ports for 2 hosts",
        ),
        (
            &[
                "--upstream",
                "127.0.0.1:5432,/var/run/postgresql",
                "--upstream-tls",
                "require",
            ][..],
            "a Unix-domain socket upstream is never TLS",
        ),
        (
            &[
                "--upstream",
                "127.0.0.1:5432",
                "--upstream-target",
                "master",
            ][..],
            "--upstream-target",
        ),
    ] {
        let mut child = Command::new(pgseal_tests::pgseal_binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("pgseal serve {args:?} did not refuse its options");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
