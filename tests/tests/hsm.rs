//! `pgseal keys wrap/unwrap` and every keyring-loading command with a keyring wrapped by a
//! real SoftHSM token: the token is created by each test in a temporary directory
//! (`SOFTHSM2_CONF` set for the child processes). Fails, never skips, without `softhsm2-util`
//! or the module: install `softhsm2`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pgseal_tests::hospital::Hospital;
use pgseal_tests::proxy::ProxyProcess;
use pgseal_tests::{cluster, pgseal_binary};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "pgseal-test";
const PIN: &str = "4321";

struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl SoftHsm {
    fn new() -> SoftHsm {
        assert!(
            Path::new(MODULE).is_file(),
            "{MODULE} is missing: install SoftHSM (apt-get install softhsm2)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let output = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN])
            .args(["--so-pin", "87654321", "--pin", PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util is missing: install SoftHSM (apt-get install softhsm2)");
        assert!(
            output.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SoftHsm { dir, conf }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs pgseal with SOFTHSM2_CONF and, when given, PGSEAL_HSM_PIN.
    fn pgseal(&self, pin: Option<&str>, args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new(pgseal_binary());
        command
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .env_remove("PGSEAL_HSM_PIN");
        if let Some(pin) = pin {
            command.env("PGSEAL_HSM_PIN", pin);
        }
        let output = command.output().expect("run pgseal");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn wrap(&self, plain: &Path, out: &Path, create: bool) -> (bool, String, String) {
        let mut args = vec![
            "keys",
            "wrap",
            "--keyring",
            plain.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--module",
            MODULE,
            "--token",
            TOKEN,
            "--key",
            "kek",
        ];
        if create {
            args.push("--create-key");
        }
        self.pgseal(Some(PIN), &args)
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn wrap_list_rotate_unwrap_and_refusals() {
    let hsm = SoftHsm::new();
    let plain = hsm.path("plain.toml");
    let wrapped = hsm.path("wrapped.toml");
    let (ok, _, err) = hsm.pgseal(None, &["keys", "generate", "--out", s(&plain)]);
    assert!(ok, "{err}");

    // Without --create-key the KEK must exist.
    let (ok, _, err) = hsm.wrap(&plain, &wrapped, false);
    assert!(!ok && err.contains("no key labelled \"kek\""), "{err}");
    let (ok, out, err) = hsm.wrap(&plain, &wrapped, true);
    assert!(ok, "{err}");
    assert!(out.contains("key created"), "{out}");

    let plain_text = std::fs::read_to_string(&plain).unwrap();
    let key = plain_text
        .lines()
        .find_map(|l| l.strip_prefix("key = \""))
        .unwrap()
        .trim_end_matches('"');
    let text = std::fs::read_to_string(&wrapped).unwrap();
    assert!(!text.contains(key) && !text.contains(&key[..12]), "{text}");
    assert!(text.contains(&format!("token = \"{TOKEN}\"")), "{text}");

    // list and rotate through the HSM; the PIN from a file works too.
    let pin_file = hsm.path("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (ok, _, err) = hsm.pgseal(Some(PIN), &["keys", "rotate", "--keyring", s(&wrapped)]);
    assert!(ok, "{err}");
    let (ok, out, err) = hsm.pgseal(
        None,
        &[
            "keys",
            "list",
            "--keyring",
            s(&wrapped),
            "--hsm-pin-file",
            s(&pin_file),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("wrapped by key \"kek\""), "{out}");
    assert!(out.contains("2        active"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&wrapped)
            .unwrap()
            .matches("wrapped = ")
            .count(),
        2
    );

    // Failures name their cause.
    let list = |pin: Option<&str>, extra: &[&str]| {
        let mut args = vec!["keys", "list", "--keyring", s(&wrapped)];
        args.extend_from_slice(extra);
        hsm.pgseal(pin, &args)
    };
    let (ok, _, err) = list(None, &[]);
    assert!(!ok && err.contains("needs its user PIN"), "{err}");
    let (ok, _, err) = list(Some("0000"), &[]);
    assert!(!ok && err.contains("wrong PIN"), "{err}");
    let (ok, _, err) = list(Some(PIN), &["--hsm-module", "/nonexistent/p11.so"]);
    assert!(
        !ok && err.contains("/nonexistent/p11.so") && err.contains("cannot be loaded"),
        "{err}"
    );
    let other_token = text.replace(&format!("token = \"{TOKEN}\""), "token = \"elsewhere\"");
    let moved = hsm.path("other-token.toml");
    write_private(&moved, &other_token);
    let (ok, _, err) = hsm.pgseal(Some(PIN), &["keys", "list", "--keyring", s(&moved)]);
    assert!(
        !ok && err.contains("no token labelled \"elsewhere\""),
        "{err}"
    );
    let bad = hsm.path("tampered.toml");
    let mut t = std::fs::read_to_string(&wrapped).unwrap();
    let at = t.find("wrapped = \"").unwrap() + 11;
    let flipped = if &t[at..at + 1] == "A" { "B" } else { "A" };
    t.replace_range(at..at + 1, flipped);
    write_private(&bad, &t);
    let (ok, _, err) = hsm.pgseal(Some(PIN), &["keys", "list", "--keyring", s(&bad)]);
    assert!(!ok && err.contains("failed authentication"), "{err}");
    // serve refuses to start the same way, never falling back.
    let (ok, _, err) = hsm.pgseal(
        Some("0000"),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--policy",
            s(&pgseal_tests::hospital::examples_dir().join("hospital.toml")),
            "--keyring",
            s(&wrapped),
        ],
    );
    assert!(!ok && err.contains("wrong PIN"), "{err}");

    // Unwrap gives back a plain keyring with the same keys.
    let back = hsm.path("back.toml");
    let (ok, _, err) = hsm.pgseal(
        Some(PIN),
        &[
            "keys",
            "unwrap",
            "--keyring",
            s(&wrapped),
            "--out",
            s(&back),
        ],
    );
    assert!(ok, "{err}");
    let back_text = std::fs::read_to_string(&back).unwrap();
    assert!(back_text.contains(key) && back_text.contains("format = 1"));
    let (ok, _, err) = hsm.pgseal(
        Some(PIN),
        &[
            "keys",
            "unwrap",
            "--keyring",
            s(&back),
            "--out",
            s(&hsm.path("x")),
        ],
    );
    assert!(!ok && err.contains("not wrapped"), "{err}");
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// `pgseal serve` with the wrapped keyring writes what the plain keyring reads, and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_wrapped_keyring_seals_as_the_plain_one() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let hsm = SoftHsm::new();
    let wrapped = hsm.path("wrapped.toml");
    let (ok, _, err) = hsm.wrap(&hospital.keyring, &wrapped, true);
    assert!(ok, "{err}");

    let conf = hsm.conf.to_str().unwrap().to_string();
    let proxy = ProxyProcess::start(
        &[
            "--upstream",
            &cluster.address(),
            "--policy",
            s(&hospital.policy),
            "--keyring",
            s(&wrapped),
        ],
        &[("SOFTHSM2_CONF", &conf), ("PGSEAL_HSM_PIN", PIN)],
    );
    let app = connect_app(proxy.port, &hospital.database).await;
    app.simple_query(
        "INSERT INTO patients (nir, last_name, first_name, birth_date, email) VALUES \
         ('255081416802538', 'Wrapped', 'Hsm', '1955-08-14', 'hsm@exemple.fr')",
    )
    .await
    .unwrap();
    let row = app
        .query_one(
            "SELECT nir FROM patients WHERE email = $1",
            &[&"hsm@exemple.fr"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "255081416802538");
    drop(app);
    proxy.terminate();
    let (status, logs) = proxy.wait(Duration::from_secs(30));
    assert!(status.success(), "{logs}");

    // The plain keyring (in-process pgseal) finds and opens what the wrapped one sealed.
    let plain = hospital.proxy(cluster).await;
    let app = hospital.connect(&plain, "ehr_app").await;
    let row = app
        .query_one(
            "SELECT nir, first_name FROM patients WHERE email = $1",
            &[&"hsm@exemple.fr"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "255081416802538");
    assert_eq!(row.get::<_, String>(1), "Hsm");
    // Stored sealed, not in clear.
    let direct = cluster.connect(&hospital.database).await;
    let clear = direct
        .query_one(
            "SELECT count(*) FROM patients WHERE email::text = 'hsm@exemple.fr' \
             OR nir::text = '255081416802538' OR last_name::text = 'Wrapped'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(clear.get::<_, i64>(0), 0);
}

const NEXT_TOKEN: &str = "pgseal-next";
/// Not hexadecimal, so it cannot turn up by chance in a keyring id or a MAC.
const NEXT_PIN: &str = "pin-next-5678";

/// `GET path` on the admin endpoint: the whole answer.
/// `ehr_app` connected through the pgseal listening on `port` to `database`.
async fn connect_app(port: u16, database: &str) -> tokio_postgres::Client {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=ehr_app password=ehr_app dbname={database} sslmode=disable"
    );
    let (app, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    app
}

/// The command and operation of each keyring record of a trail, in order.
fn key_operations(trail: &str) -> Vec<(&str, &str)> {
    trail
        .lines()
        .filter(|l| l.contains("\"type\":\"keys\""))
        .map(|l| {
            (
                json_str(l, "command").unwrap(),
                json_str(l, "operation").unwrap(),
            )
        })
        .collect()
}

/// Checks that a `/healthz` answer is ready and names the wrapped keyring `wrapped` (id `id`),
/// unwrapped through `token`'s key `key`, after the policies in force.
fn healthz_names(health: &str, wrapped: &Path, id: &str, token: &str, key: &str) {
    let body = health.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.starts_with("ok\npolicies: generation 1\n"), "{body}");
    assert!(
        body.ends_with(&format!(
            "\nkeyring: file {}, id {id}, versions 1, active 1\nhsm: module {MODULE}, token \
             \"{token}\", key \"{key}\"\n",
            wrapped.display()
        )),
        "{body}"
    );
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The value of `"field":"…"` in a JSON line (enough for the labels this test writes).
fn json_str<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let end = line[start..].find('"')?;
    Some(&line[start..start + end])
}

/// The keyring id a `keys list` prints.
fn keyring_id(hsm: &SoftHsm, pin: &str, keyring: &Path) -> String {
    let (ok, out, err) = hsm.pgseal(Some(pin), &["keys", "list", "--keyring", s(keyring)]);
    assert!(ok, "{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("keyring id "))
        .unwrap_or_else(|| panic!("no keyring id in {out}"))
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    id
}

/// Rotating the key-encryption key end to end: data sealed through a keyring wrapped on one
/// token is read back, and looked up, through the same keyring rewrapped onto another token
/// after the first token was deleted; a rewrap to a missing key, or while `serve` holds the
/// audit trail, changes nothing; every HSM operation is in the audit trail, which verifies;
/// `/healthz` names the keyring and the HSM labels it runs with, and never the PIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotation_audit_and_health_end_to_end() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let hsm = SoftHsm::new();
    let output = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", NEXT_TOKEN])
        .args(["--so-pin", "87654321", "--pin", NEXT_PIN])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let next_pin_file = hsm.path("next-pin");
    write_private(&next_pin_file, &format!("{NEXT_PIN}\n"));
    let wrapped = hsm.path("wrapped.toml");
    let trail = hsm.path("audit.jsonl");
    let plain_keys: Vec<String> = std::fs::read_to_string(&hospital.keyring)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("key = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .collect();
    assert!(!plain_keys.is_empty());

    // Wrap, recorded in the trail.
    let (ok, _, err) = hsm.pgseal(
        Some(PIN),
        &[
            "keys",
            "wrap",
            "--keyring",
            s(&hospital.keyring),
            "--out",
            s(&wrapped),
            "--module",
            MODULE,
            "--token",
            TOKEN,
            "--key",
            "kek",
            "--create-key",
            "--audit",
            s(&trail),
        ],
    );
    assert!(ok, "{err}");
    let id = keyring_id(&hsm, PIN, &wrapped);

    // serve #1 with the first token: writes a row, tells /healthz which HSM key it runs with.
    let conf = hsm.conf.to_str().unwrap().to_string();
    let serve = |pin: &str, admin: u16| {
        ProxyProcess::start(
            &[
                "--upstream",
                &cluster.address(),
                "--policy",
                s(&hospital.policy),
                "--keyring",
                s(&wrapped),
                "--audit",
                s(&trail),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ],
            &[("SOFTHSM2_CONF", &conf), ("PGSEAL_HSM_PIN", pin)],
        )
    };
    let admin = pgseal_tests::cluster::free_port().unwrap();
    let proxy = serve(PIN, admin);
    let health = http_get(admin, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    healthz_names(&health, &wrapped, &id, TOKEN, "kek");
    let app = connect_app(proxy.port, &hospital.database).await;
    app.simple_query(
        "INSERT INTO patients (nir, last_name, first_name, birth_date, email) VALUES \
         ('255081416802538', 'Rewrapped', 'Kek', '1955-08-14', 'kek@exemple.fr')",
    )
    .await
    .unwrap();
    drop(app);

    // While serve holds the trail, a keys command given the same trail is refused up front.
    let before = std::fs::read(&wrapped).unwrap();
    let rewrap = |extra: &[&str]| {
        let mut args = vec![
            "keys",
            "rewrap",
            "--keyring",
            s(&wrapped),
            "--new-token",
            NEXT_TOKEN,
            "--new-hsm-pin-file",
            s(&next_pin_file),
            "--audit",
            s(&trail),
        ];
        args.extend_from_slice(extra);
        hsm.pgseal(Some(PIN), &args)
    };
    let (ok, _, err) = rewrap(&["--new-key", "kek2", "--create-key"]);
    assert!(
        !ok && err.contains("being written by another pgseal process"),
        "{err}"
    );
    assert_eq!(std::fs::read(&wrapped).unwrap(), before);
    proxy.terminate();
    let (status, logs) = proxy.wait(Duration::from_secs(30));
    assert!(status.success(), "{logs}");
    assert!(logs.contains("keyring unwrapped through the HSM"), "{logs}");

    // A rewrap to a key that is not on the new token fails, naming it; the file is untouched.
    let (ok, _, err) = rewrap(&["--new-key", "kek2"]);
    assert!(
        !ok && err.contains(&format!(
            "no key labelled \"kek2\" on token \"{NEXT_TOKEN}\""
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(&wrapped).unwrap(), before);

    // The real rewrap, generating the new key on the other token.
    let (ok, out, err) = rewrap(&["--new-key", "kek2", "--create-key"]);
    assert!(ok, "{err}");
    assert!(out.contains("rewrapped from key \"kek\""), "{out}");
    let text = std::fs::read_to_string(&wrapped).unwrap();
    assert!(
        text.contains(&format!("token = \"{NEXT_TOKEN}\"")) && text.contains("key = \"kek2\""),
        "{text}"
    );
    for key in &plain_keys {
        assert!(!text.contains(key.as_str()) && !text.contains(&key[..12]));
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&wrapped).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(keyring_id(&hsm, NEXT_PIN, &wrapped), id);

    // The old token, and the old key with it, is gone.
    let output = Command::new("softhsm2-util")
        .args(["--delete-token", "--token", TOKEN])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (ok, _, err) = hsm.pgseal(
        Some(NEXT_PIN),
        &["keys", "list", "--keyring", s(&hsm.path("wrapped.toml"))],
    );
    assert!(ok, "{err}");

    // serve #2 with the rewrapped keyring: reads the row sealed before, finds it by a sealed
    // value (same deterministic seal), and /healthz names the new token and key.
    let admin = pgseal_tests::cluster::free_port().unwrap();
    let proxy = serve(NEXT_PIN, admin);
    let health = http_get(admin, "/healthz");
    healthz_names(&health, &wrapped, &id, NEXT_TOKEN, "kek2");
    assert!(!health.contains(NEXT_PIN) && !health.contains("pin-next"));
    let app = connect_app(proxy.port, &hospital.database).await;
    let row = app
        .query_one(
            "SELECT nir, last_name, first_name FROM patients WHERE email = $1",
            &[&"kek@exemple.fr"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "255081416802538");
    assert_eq!(row.get::<_, String>(1), "Rewrapped");
    assert_eq!(row.get::<_, String>(2), "Kek");
    drop(app);
    proxy.terminate();
    let (status, logs) = proxy.wait(Duration::from_secs(30));
    assert!(status.success(), "{logs}");

    // The trail: every HSM operation, in order, with labels and never a key or PIN; intact.
    let lines = std::fs::read_to_string(&trail).unwrap();
    let keys: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("\"type\":\"keys\""))
        .collect();
    let operations = key_operations(&lines);
    assert_eq!(
        operations,
        [
            ("keys wrap", "wrap"),
            ("serve", "unwrap"),
            ("keys rewrap", "rewrap"),
            ("serve", "unwrap"),
        ],
        "{lines}"
    );
    for line in &keys {
        assert_eq!(json_str(line, "keyring_id"), Some(id.as_str()), "{line}");
    }
    assert!(keys[0].contains(&format!(
        "\"hsm\":{{\"module\":\"{MODULE}\",\"token\":\"{TOKEN}\",\"key\":\"kek\"}}"
    )));
    assert!(keys[0].contains("\"key_created\":true"), "{}", keys[0]);
    assert!(
        keys[2].contains(&format!(
            "\"hsm\":{{\"module\":\"{MODULE}\",\"token\":\"{NEXT_TOKEN}\",\"key\":\"kek2\"}},\
             \"previous_hsm\":{{\"module\":\"{MODULE}\",\"token\":\"{TOKEN}\",\"key\":\"kek\"}}"
        )),
        "{}",
        keys[2]
    );
    assert!(keys[3].contains("\"key\":\"kek2\""), "{}", keys[3]);
    for key in &plain_keys {
        assert!(!lines.contains(key.as_str()) && !lines.contains(&key[..12]));
    }
    assert!(
        !lines.contains("pin-next") && !lines.contains("\"pin"),
        "{lines}"
    );
    let (ok, out, err) = hsm.pgseal(
        Some(NEXT_PIN),
        &["audit", "verify", s(&trail), "--keyring", s(&wrapped)],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("intact") && out.contains("4 keyring event(s)"),
        "{out}"
    );

    // The commands that unwrap a keyring to do other work record it too, in the trail given
    // with --audit (their own here): keys list, a migration's dry run, audit verify.
    let tools = hsm.path("tools.jsonl");
    for args in [
        vec![
            "keys",
            "list",
            "--keyring",
            s(&wrapped),
            "--audit",
            s(&tools),
        ],
        vec![
            "migrate",
            "rotate",
            "--database-url",
            &cluster.url(&hospital.database),
            "--policy",
            s(&hospital.policy),
            "--keyring",
            s(&wrapped),
            "--dry-run",
            "--audit",
            s(&tools),
        ],
        vec![
            "audit",
            "verify",
            s(&trail),
            "--keyring",
            s(&wrapped),
            "--audit",
            s(&tools),
        ],
    ] {
        let (ok, out, err) = hsm.pgseal(Some(NEXT_PIN), &args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let recorded = std::fs::read_to_string(&tools).unwrap();
    let unwraps = key_operations(&recorded);
    assert_eq!(
        unwraps,
        [
            ("keys list", "unwrap"),
            ("migrate", "unwrap"),
            ("audit verify", "unwrap")
        ],
        "{recorded}"
    );
    assert!(!recorded.contains(NEXT_PIN));
    let (ok, out, err) = hsm.pgseal(
        Some(NEXT_PIN),
        &["audit", "verify", s(&tools), "--keyring", s(&wrapped)],
    );
    assert!(ok && out.contains("3 keyring event(s)"), "{out}{err}");
}
