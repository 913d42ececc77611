//! The `pgseal` binary as users run it: help and version, options from flags, environment and
//! a config file, logs (human and JSON, one line per session end), graceful shutdown on
//! SIGTERM, and psql driven as a process through it.

use std::process::Command;
use std::time::{Duration, Instant};

use pgseal_tests::cluster::SCRAM_ROLE;
use pgseal_tests::proxy::ProxyProcess;
use pgseal_tests::{Cluster, cluster, pgseal_binary};

fn pgseal(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(pgseal_binary())
        .args(args)
        .output()
        .expect("run pgseal");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// psql through pgseal on `port` as the SCRAM test role.
fn psql(cluster: &Cluster, port: u16, sslmode: &str, sql: &str) -> std::process::Output {
    Command::new(cluster.client_program("psql"))
        .env("PGPASSWORD", SCRAM_ROLE)
        .env("PGSSLMODE", sslmode)
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-U", SCRAM_ROLE, "-d", "postgres", "-c", sql])
        .output()
        .expect("run psql")
}

#[test]
fn help_and_version_read_well() {
    let (ok, out, _) = pgseal(&["--version"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("pgseal {}", env!("CARGO_PKG_VERSION")));
    let (ok, out, _) = pgseal(&["--help"]);
    assert!(ok);
    for word in ["serve", "keys", "policy"] {
        assert!(out.contains(word), "--help does not mention {word}: {out}");
    }
    let (ok, out, _) = pgseal(&["serve", "--help"]);
    assert!(ok);
    for flag in [
        "--listen",
        "--upstream",
        "--tls-cert",
        "--upstream-tls",
        "--max-message-size",
        "--startup-timeout",
        "--max-connections",
        "--config",
        "PGSEAL_UPSTREAM",
    ] {
        assert!(out.contains(flag), "serve --help does not mention {flag}");
    }
}

#[test]
fn bad_options_are_refused_with_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgseal.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nupstraem = \"db:5432\"\n",
    )
    .unwrap();
    let (ok, _, err) = pgseal(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("upstraem") && err.contains("pgseal.toml"),
        "{err}"
    );

    let (ok, _, err) = pgseal(&["serve", "--upstream", "db"]);
    assert!(!ok);
    assert!(
        err.contains("--upstream") && err.contains("HOST:PORT"),
        "{err}"
    );

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let (ok, _, err) = pgseal(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
    ]);
    assert!(!ok);
    assert!(
        err.contains("TLS certificate") && err.contains("missing.pem"),
        "{err}"
    );
}

#[test]
fn options_from_a_file_and_the_environment_and_json_session_logs() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgseal.toml");
    // The file names a wrong upstream; the environment overrides it.
    std::fs::write(
        &config,
        "upstream = \"127.0.0.1:1\"\nlog-format = \"json\"\nstartup-timeout = \"5s\"\n",
    )
    .unwrap();
    let proxy = ProxyProcess::start(
        &["--config", config.to_str().unwrap()],
        &[("PGSEAL_UPSTREAM", &cluster.address())],
    );
    let output = psql(cluster, proxy.port, "disable", "SELECT current_user");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), SCRAM_ROLE);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let logs = proxy.logs();
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("session ended") && l.contains(SCRAM_ROLE))
        {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no session-end line in: {logs}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(event["role"], SCRAM_ROLE);
    assert_eq!(event["database"], "postgres");
    assert_eq!(event["application_name"], "psql");
    assert_eq!(event["end"], "client_terminate");
    assert!(event["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(event["duration_ms"].is_u64());
    assert!(event["bytes_from_client"].as_u64().unwrap() > 0);
    assert!(event["bytes_to_client"].as_u64().unwrap() > 0);
    // The readiness probe (a connection that sent nothing) is not worth a warning, as in
    // PostgreSQL.
    assert!(!proxy.logs().contains("WARN"), "{}", proxy.logs());
}

#[test]
fn psql_works_through_pgseal_in_the_clear_and_over_tls() {
    let cluster = cluster();
    let certs = cluster.certificates();
    let proxy = ProxyProcess::start(
        &[
            "--upstream",
            &cluster.address(),
            "--tls-cert",
            certs.proxy_cert.to_str().unwrap(),
            "--tls-key",
            certs.proxy_key.to_str().unwrap(),
        ],
        &[],
    );
    let sql = "CREATE TEMP TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g; \
               SELECT count(*), sum(id) FROM t";
    for sslmode in ["disable", "require"] {
        let output = psql(cluster, proxy.port, sslmode, sql);
        assert!(
            output.status.success(),
            "{sslmode}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "1000|500500"
        );
    }
    let output = psql(cluster, proxy.port, "require", "SELECT 1/0");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("division by zero"));
}

#[tokio::test]
async fn sigterm_lets_running_statements_finish_and_refuses_new_clients() {
    let cluster = cluster();
    let proxy = ProxyProcess::start(
        &["--upstream", &cluster.address(), "--shutdown-grace", "20s"],
        &[],
    );
    let conninfo = format!(
        "host=127.0.0.1 port={} user={SCRAM_ROLE} password={SCRAM_ROLE} dbname=postgres",
        proxy.port
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let running = tokio::spawn(async move {
        let row = client
            .query_one("SELECT pg_sleep(1.5)::text || 'done'", &[])
            .await;
        (row.map(|r| r.get::<_, String>(0)), client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
            .await
            .is_err(),
        "pgseal still accepts connections after SIGTERM"
    );
    let (row, client) = running.await.unwrap();
    assert_eq!(row.unwrap(), "done");
    drop(client);
    let _ = connection.await;
    let (status, logs) = tokio::task::spawn_blocking(move || proxy.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success(), "{status}: {logs}");
    assert!(logs.contains("SIGTERM received"), "{logs}");
}

#[tokio::test]
async fn sessions_still_open_after_the_grace_period_are_ended_with_57p01() {
    let cluster = cluster();
    let proxy = ProxyProcess::start(
        &[
            "--upstream",
            &cluster.address(),
            "--shutdown-grace",
            "300ms",
        ],
        &[],
    );
    let conninfo = format!(
        "host=127.0.0.1 port={} user={SCRAM_ROLE} password={SCRAM_ROLE} dbname=postgres",
        proxy.port
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
    proxy.terminate();
    let error = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error.as_db_error().map(|e| e.code().code()),
        Some("57P01"),
        "{error:?}"
    );
    let (status, _) = tokio::task::spawn_blocking(move || proxy.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success());
}

#[test]
fn protection_options_are_checked_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let examples = pgseal_tests::hospital::examples_dir();
    let policy = examples.join("hospital.toml");
    let policy = policy.to_str().unwrap();

    // A policy without a keyring.
    let (ok, _, err) = pgseal(&["serve", "--listen", "127.0.0.1:0", "--policy", policy]);
    assert!(!ok);
    assert!(err.contains("--policy needs a keyring"), "{err}");

    // A broken policy: every problem is listed with its line.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "version = 1\n[columns.\"public.patients.nir\"]\nmode = \"rot13\"\ntype = \"text\"\n",
    )
    .unwrap();
    let keyring = dir.path().join("keyring.toml");
    let (ok, _, err) = pgseal(&["keys", "generate", "--out", keyring.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = pgseal(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--policy",
        broken.to_str().unwrap(),
        "--keyring",
        keyring.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("broken.toml:3") && err.contains("rot13"),
        "{err}"
    );

    // A keyring others can read is refused, naming the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = pgseal(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--policy",
        policy,
        "--keyring",
        keyring.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("chmod 600"), "{err}");
}
