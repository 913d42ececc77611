//! `pgseal demo`, the real binary: it starts its own PostgreSQL, seeds through pgseal, serves
//! each role its view, and leaves nothing behind — after Ctrl-C (SIGINT), after `kill -9`
//! (the watchdog), and when its listen port is taken (it refuses before creating anything).
//!
//! Each test gives the demo its own `TMPDIR`, so that "nothing left behind" means that
//! directory is empty afterwards, whatever other tests do in parallel.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgseal::seed::{ConsultationRange, DEFAULT_SEED, Generator};
use pgseal_tests::cluster::free_port;
use pgseal_tests::pgseal_binary;
use tokio_postgres::{Client, NoTls};

/// How long the demo may take to be ready (initdb, schema, 200 patients in a debug build).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What the demo printed once ready, parsed.
#[derive(Debug)]
struct Ready {
    pgseal_port: u16,
    postgres_port: u16,
    superuser_password: String,
    postgres_pid: i32,
    dir: PathBuf,
    text: String,
}

/// A running `pgseal demo`, killed (SIGKILL) if the test ends without stopping it.
struct DemoProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
    tmp: tempfile::TempDir,
}

impl DemoProcess {
    fn start(args: &[&str]) -> DemoProcess {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        // As root the server runs as `postgres`, which must reach into the cluster's directory.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let stderr = tmp.path().join("demo.stderr");
        let mut child = Command::new(pgseal_binary())
            .arg("demo")
            .args(args)
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start pgseal demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        DemoProcess {
            child,
            lines,
            stderr,
            tmp,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Reads standard output until the end of the tour, and parses it.
    fn wait_ready(&mut self) -> Ready {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut text = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                    if line.starts_with("Press Ctrl-C") {
                        return parse_ready(text);
                    }
                }
                Err(_) => panic!(
                    "the demo was not ready within {READY_TIMEOUT:?}\nstdout:\n{text}\nstderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the demo");
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit within {timeout:?}: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the demo's `TMPDIR` holds besides this test's own file.
    fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "demo.stderr")
            .collect();
        names.sort();
        names
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value following `key` in `text`, up to the next space, quote, comma or parenthesis.
fn value_after<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text
        .find(key)
        .unwrap_or_else(|| panic!("{key:?} not in:\n{text}"))
        + key.len();
    let rest = &text[start..];
    let end = rest
        .find([' ', '"', ',', ')', ';', '\n'])
        .unwrap_or(rest.len());
    &rest[..end]
}

fn parse_ready(text: String) -> Ready {
    assert!(
        text.contains("pgseal demo is ready"),
        "no ready line:\n{text}"
    );
    let superuser_line = text
        .lines()
        .find(|line| line.contains("user=postgres"))
        .unwrap_or_else(|| panic!("no direct connection line:\n{text}"));
    let app_line = text
        .lines()
        .find(|line| line.contains("user=ehr_app"))
        .unwrap_or_else(|| panic!("no ehr_app line:\n{text}"));
    let where_line = text
        .lines()
        .find(|line| line.contains("(pid "))
        .unwrap_or_else(|| panic!("no pid line:\n{text}"));
    Ready {
        pgseal_port: value_after(app_line, "port=").parse().unwrap(),
        postgres_port: value_after(superuser_line, "port=").parse().unwrap(),
        superuser_password: value_after(superuser_line, "password=").to_string(),
        postgres_pid: value_after(where_line, "(pid ").parse().unwrap(),
        dir: PathBuf::from(value_after(where_line, "data in ")),
        text,
    }
}

async fn connect(port: u16, user: &str, password: &str) -> Client {
    let conninfo = format!(
        "host=127.0.0.1 port={port} dbname=ehr user={user} password={password} sslmode=disable"
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting as {user} on port {port}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn is_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Waits until `check` holds, up to `timeout`.
fn eventually(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// Reads the first patients as each role and straight from PostgreSQL.
async fn check_views(ready: &Ready) {
    let first = Generator::new(DEFAULT_SEED, ConsultationRange::default())
        .next()
        .expect("a patient");
    let read_first = "SELECT nir, last_name, first_name, birth_date, email FROM patients \
                      ORDER BY id LIMIT 1";

    // The application: plaintext, exactly what the seeder generated.
    let app = connect(ready.pgseal_port, "ehr_app", "ehr_app").await;
    let count: i64 = app
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 200);
    let row = app.query_one(read_first, &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), first.nir);
    assert_eq!(row.get::<_, String>(1), first.last_name);
    assert_eq!(row.get::<_, String>(2), first.first_name);
    assert_eq!(
        row.get::<_, time::Date>(3).to_string(),
        first.birth_date.to_string()
    );
    assert_eq!(row.get::<_, Option<String>>(4), first.email);
    // The tour's sort and search: pgseal answers them, the database sees ciphertext.
    let all = app
        .query("SELECT id, last_name FROM patients", &[])
        .await
        .unwrap();
    let mut expected: Vec<i64> = all
        .iter()
        .filter(|r| r.get::<_, String>(1).to_lowercase().starts_with("mar"))
        .map(|r| r.get(0))
        .collect();
    expected.sort_unstable();
    let mut found: Vec<i64> = pgseal_tests::first_column(
        &app,
        "SELECT id FROM patients WHERE last_name ILIKE 'mar%' ORDER BY last_name, id",
    )
    .await;
    found.sort_unstable();
    assert_eq!(found, expected);
    for query in &pgseal::demo::tour::QUERIES[2..5] {
        let rows = app.simple_query(query).await.unwrap();
        assert!(rows.len() > 1, "{query}");
    }
    // The search by the start of a first name, served from the example's search index.
    assert!(
        pgseal::demo::tour::QUERIES[4].contains("first_name ILIKE 'mar%'")
            && ready.text.contains("first_name ILIKE 'mar%'")
    );
    let firsts = app
        .query("SELECT id, first_name FROM patients", &[])
        .await
        .unwrap();
    let mut expected: Vec<i64> = firsts
        .iter()
        .filter(|r| {
            r.get::<_, Option<String>>(1)
                .is_some_and(|f| f.to_lowercase().starts_with("mar"))
        })
        .map(|r| r.get(0))
        .collect();
    expected.sort_unstable();
    let found: Vec<i64> = pgseal_tests::first_column(
        &app,
        "SELECT id FROM patients WHERE first_name ILIKE 'mar%' ORDER BY id",
    )
    .await;
    assert_eq!(found, expected);

    // Billing: masked identities, codes in clear, clinical text denied.
    let billing = connect(ready.pgseal_port, "ehr_billing", "ehr_billing").await;
    let row = billing.query_one(read_first, &[]).await.unwrap();
    let masked_nir: String = row.get(0);
    assert!(masked_nir.ends_with("** *** *** **"), "{masked_nir}");
    assert_eq!(
        row.get::<_, String>(1),
        format!("{}.", first.last_name.chars().next().unwrap())
    );
    let code: String = billing
        .query_one(
            "SELECT diagnosis_code FROM consultations ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !code.starts_with("pgs1:") && code.len() <= 6,
        "a diagnosis code in clear: {code}"
    );
    let denied = billing
        .query("SELECT notes FROM consultations LIMIT 1", &[])
        .await
        .unwrap_err();
    assert_eq!(denied.code().map(|c| c.code()), Some("42501"), "{denied}");
    let unsorted = billing
        .simple_query(pgseal::demo::tour::QUERIES[2])
        .await
        .unwrap_err();
    assert_eq!(
        unsorted.code().map(|c| c.code()),
        Some("42501"),
        "{unsorted}"
    );

    // The support/DBA account: ciphertext and a NIR token.
    let admin = connect(ready.pgseal_port, "ehr_admin", "ehr_admin").await;
    let row = admin
        .query_one(
            "SELECT nir, last_name FROM patients ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let token: String = row.get(0);
    assert_ne!(token, first.nir);
    assert_eq!(token.len(), 15);
    assert!(row.get::<_, String>(1).starts_with("pgs1:"));

    // PostgreSQL itself holds the same token and envelopes, never the plaintext.
    let direct = connect(ready.postgres_port, "postgres", &ready.superuser_password).await;
    let row = direct
        .query_one(
            "SELECT nir, last_name, birth_date, email FROM patients ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), token);
    for column in 1..3 {
        let stored: String = row.get(column);
        assert!(stored.starts_with("pgs1:"), "stored in clear: {stored}");
    }
    let plaintext_names: i64 = direct
        .query_one(
            "SELECT count(*) FROM patients WHERE last_name = $1 OR nir = $2",
            &[&first.last_name, &first.nir],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plaintext_names, 0);
    // The search index of first names is complete: its CHECK validated, its GIN index there.
    let complete: bool = direct
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'pgseal_search_first_name'",
            &[],
        )
        .await
        .expect("the demo's search index CHECK")
        .get(0);
    assert!(complete);
    let gin: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'pgseal_tokens_first_name'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gin, 1);
}

#[test]
fn the_demo_serves_each_view_then_stops_and_removes_everything_on_sigint() {
    let port = free_port().unwrap().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut demo = DemoProcess::start(&["--listen", &listen, "--patients", "200"]);
    let ready = demo.wait_ready();
    assert_eq!(ready.pgseal_port.to_string(), port);
    assert!(ready.dir.starts_with(demo.tmp.path()), "{ready:?}");
    assert!(is_alive(ready.postgres_pid));
    assert!(ready.text.contains(pgseal::demo::tour::ADMIN_BUDGET));
    assert!(ready.text.contains("SQLSTATE 42501"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(check_views(&ready));
    drop(runtime);

    demo.signal(Signal::SIGINT);
    let status = demo.wait(Duration::from_secs(30));
    let stderr = demo.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped; removed"), "{stderr}");
    assert!(!ready.dir.exists(), "{} is left", ready.dir.display());
    assert!(
        !is_alive(ready.postgres_pid),
        "PostgreSQL (pid {}) still runs",
        ready.postgres_pid
    );
    assert_eq!(demo.leftovers(), Vec::<String>::new());
}

#[test]
fn a_killed_demo_is_cleaned_up_by_its_watchdog() {
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut demo = DemoProcess::start(&["--listen", &listen, "--patients", "20"]);
    let ready = demo.wait_ready();
    assert!(is_alive(ready.postgres_pid));
    demo.signal(Signal::SIGKILL);
    demo.wait(Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(30), || !ready.dir.exists()
            && !is_alive(ready.postgres_pid)),
        "the watchdog left {} or pid {}",
        ready.dir.display(),
        ready.postgres_pid
    );
    assert_eq!(demo.leftovers(), Vec::<String>::new());
}

#[test]
fn a_taken_listen_port_is_refused_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let mut demo = DemoProcess::start(&["--listen", &listen, "--patients", "10"]);
    let status = demo.wait(Duration::from_secs(20));
    let stderr = demo.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("pgseal: cannot listen on {listen}:"))
            && stderr.contains("--listen"),
        "{stderr}"
    );
    assert_eq!(demo.leftovers(), Vec::<String>::new());
}

#[test]
fn the_demo_refuses_bad_options_in_one_line() {
    let mut demo = DemoProcess::start(&["--listen", "127.0.0.1:0", "--patients", "1000000000"]);
    let status = demo.wait(Duration::from_secs(20));
    let stderr = demo.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("at most"), "{stderr}");
    assert_eq!(demo.leftovers(), Vec::<String>::new());
}
