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
    let conninfo = format!(
        "host=127.0.0.1 port={} user=ehr_app password=ehr_app dbname={} sslmode=disable",
        proxy.port, hospital.database
    );
    let (app, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
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
