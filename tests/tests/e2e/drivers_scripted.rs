//! The Node.js and Python drivers users use, unchanged, through pgseal on the hospital example:
//! node-postgres, postgres.js, psycopg2, psycopg 3 and asyncpg. Each client program
//! (tests/clients/node, tests/clients/python) is written as its users write it and prints one
//! tab-separated line per result; the test checks those values exactly, then checks through a
//! direct connection that nothing it wrote is stored in clear. A missing runtime or driver fails
//! the test: .ci/run installs them (`npm ci` in tests/clients/node, a virtualenv with
//! tests/clients/python/requirements.txt in tests/clients/python/.venv).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use pgseal_tests::proxy::TestProxy;

/// How long a client program may run: a hang through pgseal fails the test after this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// tests/clients: the client programs, one directory per runtime.
pub(crate) fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The virtualenv's interpreter, with the pinned drivers of requirements.txt.
pub(crate) fn python() -> PathBuf {
    let python = clients_dir().join("python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: python3 -m venv tests/clients/python/.venv && \
         tests/clients/python/.venv/bin/pip install -r tests/clients/python/requirements.txt",
        python.display()
    );
    python
}

/// The Node.js clients' directory, checked to hold the pinned packages of package-lock.json.
fn node_dir() -> PathBuf {
    let dir = clients_dir().join("node");
    for package in ["pg", "postgres"] {
        assert!(
            dir.join("node_modules").join(package).exists(),
            "{package} is missing from tests/clients/node/node_modules: \
             (cd tests/clients/node && npm ci --no-audit --no-fund)"
        );
    }
    dir
}

/// Runs a client program to its end or to [`CLIENT_TIMEOUT`], whichever comes first; returns
/// its output lines split on tabs. Panics with what it printed when it fails or runs too long.
fn run_client(mut command: Command) -> Vec<Vec<String>> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Fixed and not UTC, so that local times carry an offset.
        .env("TZ", "Europe/Paris")
        .env("PYTHONUTF8", "1")
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (see .ci/run for the installs)"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("{shown} failed ({status}):\n{stdout}\n{stderr}"),
        None => {
            panic!("{shown} still running after {CLIENT_TIMEOUT:?}, killed:\n{stdout}\n{stderr}")
        }
    }
    stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Runs `command` on a thread of its own: pgseal runs in this test's runtime.
pub(crate) async fn run(command: Command) -> Vec<Vec<String>> {
    tokio::task::spawn_blocking(move || run_client(command))
        .await
        .unwrap()
}

fn lines_of(lines: &[Vec<String>], kind: &str) -> Vec<Vec<String>> {
    lines
        .iter()
        .filter(|l| l[0] == kind)
        .map(|l| l[1..].to_vec())
        .collect()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A valid NIR from its 13-digit body, as the clients compute it.
fn nir(body: &str) -> String {
    let n: u64 = body.parse().unwrap();
    format!("{body}{:02}", 97 - n % 97)
}

/// The example's database, pgseal in front of it, and ehr_app's ways to reach it.
struct Setup {
    hospital: Hospital,
    proxy: TestProxy,
}

impl Setup {
    async fn new() -> Setup {
        let hospital = Hospital::create(cluster());
        let proxy = hospital.proxy(cluster()).await;
        Setup { hospital, proxy }
    }

    /// A libpq connection string (psycopg2, psycopg 3).
    fn conninfo(&self) -> String {
        self.proxy
            .conninfo("ehr_app", "ehr_app", &self.hospital.database)
    }

    /// A connection URL (node-postgres, postgres.js, asyncpg).
    fn url(&self) -> String {
        format!(
            "postgresql://ehr_app:ehr_app@127.0.0.1:{}/{}?sslmode=disable",
            self.proxy.port(),
            self.hospital.database
        )
    }

    /// Checks what every client prints, then what the database holds, and stops pgseal.
    async fn check(self, lines: &[Vec<String>], prefix: &str, driver: &str) {
        check_common(lines, prefix, driver);
        assert_stored_sealed(&self.hospital.database, prefix).await;
        self.proxy.stop().await;
    }
}

/// What every client does: 4 patients inserted, a consultation read back, 8 rounds of lookups
/// by NIR and by name, the refusal then reuse, and the transaction's update read back.
fn check_common(lines: &[Vec<String>], prefix: &str, driver: &str) {
    let context = format!("{driver}: {lines:?}");
    assert_eq!(
        lines_of(lines, "inserted"),
        vec![strings(&["4"])],
        "{context}"
    );
    assert_eq!(
        lines_of(lines, "consultation"),
        vec![strings(&["2024-03-01T08:30:00Z", "E11.9", "Suivi diabète"])],
        "{context}"
    );
    let by_nir = lines_of(lines, "nir");
    let by_name = lines_of(lines, "name");
    let expected_rounds: Vec<String> = (0..8).map(|r| r.to_string()).collect();
    for (found, what) in [(&by_nir, "by NIR"), (&by_name, "by name")] {
        let rounds: Vec<String> = found.iter().map(|r| r[0].clone()).collect();
        assert_eq!(
            rounds, expected_rounds,
            "{driver}: rounds of lookups {what}"
        );
    }
    for row in by_nir {
        let i = 1 + row[0].parse::<usize>().unwrap() % 4;
        assert_eq!(
            row[1..],
            [
                format!("Lefèvre-{i}"),
                "Élodie".into(),
                format!("1992-07-0{i}")
            ],
            "{driver}: lookup by NIR"
        );
    }
    for row in by_name {
        let i = 1 + row[0].parse::<usize>().unwrap() % 4;
        assert_eq!(
            row[1..],
            [nir(&format!("{prefix}0{i}")), format!("1992-07-0{i}")],
            "{driver}: lookup by name"
        );
    }
    assert_eq!(
        lines_of(lines, "refused"),
        vec![strings(&["0A000"])],
        "{context}"
    );
    assert_eq!(lines_of(lines, "count"), vec![strings(&["4"])], "{context}");
    assert_eq!(
        lines_of(lines, "update"),
        vec![strings(&["1"])],
        "{context}"
    );
    assert_eq!(
        lines_of(lines, "date"),
        vec![strings(&["1990-01-31"])],
        "{context}"
    );
}

/// Lines `binary ROUND LAST_NAME [FIRST_NAME] DATE`: lookups of patient 1 + round % 4.
fn check_binary(lines: &[Vec<String>], rounds: usize, driver: &str) {
    let binary = lines_of(lines, "binary");
    assert_eq!(binary.len(), rounds, "{driver}: {lines:?}");
    for row in binary {
        let i = 1 + row[0].parse::<usize>().unwrap() % 4;
        let last = row.len() - 1;
        assert_eq!(row[1], format!("Lefèvre-{i}"), "{driver}: binary results");
        assert_eq!(
            row[last],
            format!("1992-07-0{i}"),
            "{driver}: binary results"
        );
    }
}

/// Through a direct connection: names, dates, diagnosis codes and notes are envelopes, and no
/// NIR of this run is stored as it was given (they are tokens).
async fn assert_stored_sealed(database: &str, prefix: &str) {
    let direct = cluster().connect(database).await;
    let patients = direct
        .query(
            "SELECT nir, last_name, first_name, birth_date FROM patients",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(patients.len(), 4);
    let given: Vec<String> = (1..=4).map(|i| nir(&format!("{prefix}0{i}"))).collect();
    for row in patients {
        let token: String = row.get(0);
        assert!(!given.contains(&token), "NIR stored in clear: {token}");
        for i in 1..4 {
            let stored: String = row.get(i);
            assert!(stored.starts_with("pgs1:"), "stored in clear: {stored}");
        }
    }
    for row in direct
        .query("SELECT diagnosis_code, notes FROM consultations", &[])
        .await
        .unwrap()
    {
        for i in 0..2 {
            let stored: String = row.get(i);
            assert!(stored.starts_with("pgs1:"), "stored in clear: {stored}");
        }
    }
}

/// node-postgres: untyped text parameters, a multi-row INSERT, JS Dates in local time with an
/// offset, a `$4::date` cast, a named prepared lookup, simple-query refusal, BEGIN/COMMIT.
#[tokio::test]
async fn node_postgres_works_unchanged() {
    let setup = Setup::new().await;
    let prefix = "18507750041";
    let mut command = Command::new("node");
    command
        .current_dir(node_dir())
        .arg("hospital_pg.js")
        .arg(setup.url())
        .arg(prefix);
    let lines = run(command).await;
    setup.check(&lines, prefix, "node-postgres").await;
}

/// postgres.js: a multi-row insert from objects, values written for the described types,
/// prepared statements, a refusal alone, in a Promise.all pipeline and in a one-Sync batch,
/// then the connection reused; sql.begin.
#[tokio::test]
async fn postgres_js_works_unchanged() {
    let setup = Setup::new().await;
    let prefix = "28507750042";
    let mut command = Command::new("node");
    command
        .current_dir(node_dir())
        .arg("hospital_postgres.js")
        .arg(setup.url())
        .arg(prefix);
    let lines = run(command).await;
    let context = format!("{lines:?}");
    assert_eq!(
        lines_of(&lines, "pipeline-refused"),
        vec![strings(&["0A000"])],
        "{context}"
    );
    assert_eq!(
        lines_of(&lines, "batch-refused"),
        vec![strings(&["0A000", "1"])],
        "{context}"
    );
    assert_eq!(
        lines_of(&lines, "pipeline"),
        vec![
            strings(&["before", "Lefèvre-1", "1992-07-01"]),
            strings(&["after", &nir(&format!("{prefix}02")), "1992-07-02"]),
            strings(&["last", "Lefèvre-4", "1992-07-04"]),
        ],
        "{context}"
    );
    setup.check(&lines, prefix, "postgres.js").await;
}

/// psycopg2: parameters interpolated on the client (`'…'::date`, `'…'::timestamptz`, quoted
/// strings) in simple queries, execute_values and executemany, a refusal in a transaction
/// block then rollback and reuse.
#[tokio::test]
async fn psycopg2_works_unchanged() {
    let setup = Setup::new().await;
    let prefix = "18507750043";
    let mut command = Command::new(python());
    command
        .arg(clients_dir().join("python/hospital_psycopg2.py"))
        .arg(setup.conninfo())
        .arg(prefix);
    let lines = run(command).await;
    setup.check(&lines, prefix, "psycopg2").await;
}

/// psycopg 3: server-side binding (str untyped, datetime.date as date), pipelined
/// executemany, binary parameters and results, statements prepared after five uses, the
/// refusal alone and inside pipeline mode, then reuse.
#[tokio::test]
async fn psycopg3_works_unchanged() {
    let setup = Setup::new().await;
    let prefix = "28507750044";
    let mut command = Command::new(python());
    command
        .arg(clients_dir().join("python/hospital_psycopg3.py"))
        .arg(setup.conninfo())
        .arg(prefix);
    let lines = run(command).await;
    let context = format!("{lines:?}");
    check_binary(&lines, 6, "psycopg 3");
    assert_eq!(
        lines_of(&lines, "pipeline-refused"),
        vec![strings(&["0A000"])],
        "{context}"
    );
    assert_eq!(
        lines_of(&lines, "pipeline"),
        vec![
            strings(&["before", "Lefèvre-1", "1992-07-01"]),
            strings(&["after", &nir(&format!("{prefix}02")), "1992-07-02"]),
            strings(&["binary", "Lefèvre-4", "1992-07-04"]),
        ],
        "{context}"
    );
    setup.check(&lines, prefix, "psycopg 3").await;
}

/// asyncpg: every statement prepared and described, parameters and results in binary,
/// pipelined executemany, an explicitly prepared statement, the refusal then reuse, a
/// transaction block.
#[tokio::test]
async fn asyncpg_works_unchanged() {
    let setup = Setup::new().await;
    let prefix = "18507750045";
    let mut command = Command::new(python());
    command
        .arg(clients_dir().join("python/hospital_asyncpg.py"))
        .arg(setup.url())
        .arg(prefix);
    let lines = run(command).await;
    check_binary(&lines, 4, "asyncpg");
    setup.check(&lines, prefix, "asyncpg").await;
}
