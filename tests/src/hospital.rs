//! The hospital example (`policies/examples/hospital.{sql,toml}`) in a fresh database of the
//! test cluster, with a fresh keyring, and pgseal protecting it.

use std::path::{Path, PathBuf};

use pgseal_keys::KeyringFile;

use crate::cluster::Cluster;
use crate::proxy::TestProxy;

/// The repository's `policies/examples` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples")
}

/// A database holding the hospital schema, and the policy and keyring to protect it.
pub struct Hospital {
    /// The database's name.
    pub database: String,
    /// The policy file.
    pub policy: PathBuf,
    /// The keyring file (0600, in a temporary directory).
    pub keyring: PathBuf,
    _dir: tempfile::TempDir,
}

impl Hospital {
    /// Creates a database, loads `hospital.sql` into it and writes a fresh keyring.
    pub fn create(cluster: &Cluster) -> Hospital {
        Self::load(cluster, cluster.create_database("hospital"))
    }

    /// The same, in a database whose default collation is ICU's for `icu_locale` (`fr-FR`).
    pub fn create_icu(cluster: &Cluster, icu_locale: &str) -> Hospital {
        Self::load(cluster, cluster.create_icu_database("hospital", icu_locale))
    }

    fn load(cluster: &Cluster, database: String) -> Hospital {
        let sql = examples_dir().join("hospital.sql");
        let output = cluster
            .psql(&database)
            .arg("-f")
            .arg(&sql)
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "loading hospital.sql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let keyring = dir.path().join("keyring.toml");
        KeyringFile::generate()
            .expect("a keyring")
            .write_new(&keyring)
            .expect("write the keyring");
        Hospital {
            database,
            policy: examples_dir().join("hospital.toml"),
            keyring,
            _dir: dir,
        }
    }

    /// pgseal in front of the cluster, protecting with the hospital policy.
    pub async fn proxy(&self, cluster: &Cluster) -> TestProxy {
        self.proxy_with(cluster, |_| {}).await
    }

    /// pgseal protecting with the hospital policy, after `adjust` has changed its configuration.
    pub async fn proxy_with(
        &self,
        cluster: &Cluster,
        adjust: impl FnOnce(&mut pgseal::config::ServeConfig),
    ) -> TestProxy {
        let (policy, keyring) = (self.policy.clone(), self.keyring.clone());
        TestProxy::start_with(cluster, move |config| {
            config.policy = Some(policy);
            config.keyring = Some(keyring);
            adjust(config);
        })
        .await
    }

    /// Connects through `proxy` as one of the example's roles (password: the role's name).
    pub async fn connect(&self, proxy: &TestProxy, role: &str) -> tokio_postgres::Client {
        let conninfo = proxy.conninfo(role, role, &self.database);
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting as {role} through pgseal: {e:?}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// The hospital policy with budgets a test can exhaust: ehr_admin gets 20 rows at once, 5 a
/// second after, 50 an hour; the application must name its end users, each of whom may take
/// 150 rows a day; roles in no class, 20 an hour. Written to `dir/budgets.toml`.
pub fn small_budgets_policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    let support = text
        .find("[classes.support.budget]")
        .expect("the support budget");
    let end = text[support..].find("on_cap").map(|i| support + i).unwrap();
    let end = end + text[end..].find('\n').unwrap();
    let mut text = format!(
        "{}[classes.support.budget]\nrate = \"5/second\"\nburst = 20\nper_hour = 50\naction = \"throttle\"\non_cap = \"block\"{}",
        &text[..support],
        &text[end..]
    );
    text = text.replace(
        "[classes.application]\nroles = [\"ehr_app\"]\ndefault = \"plaintext\"\n",
        "[classes.application]\nroles = [\"ehr_app\"]\ndefault = \"plaintext\"\nrequire_end_user = true\n\n[classes.application.end_user_budget]\nrate = \"1000/second\"\nburst = 1000\nper_day = 150\non_cap = \"block\"\n",
    );
    text = text.replace(
        "per_hour = 100\nper_day = 200",
        "per_hour = 20\nper_day = 20",
    );
    assert!(
        text.contains("require_end_user = true"),
        "the test policy did not take"
    );
    let path = dir.join("budgets.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The hospital example's policy with each `(from, to)` replacement made (every `from` must be
/// in it, so that a change to the example fails the test rather than its premise), written to
/// `dir/<name>`.
pub fn example_policy_with(dir: &Path, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(examples_dir().join("hospital.toml")).unwrap();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "hospital.toml no longer holds {from:?}"
        );
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The text values of the rows among a simple query's messages.
pub fn simple_rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

impl Hospital {
    /// Grants the cluster's trusted role (`pgseal_trust`, for raw-protocol tests that log in
    /// without a password) every privilege on the hospital tables.
    pub fn grant_trust_role(&self, cluster: &Cluster) {
        cluster
            .run_sql(
                &self.database,
                &format!(
                    "GRANT ALL ON public.patients, public.consultations TO {}",
                    crate::cluster::TRUST_ROLE
                ),
            )
            .expect("grant the trusted role");
    }
}

/// The search indexes [`indexed_policy`] gives the hospital's patient columns: last name,
/// e-mail and phone made randomized (search indexes need envelopes of their own) with every
/// kind of token between them (`first_name` has its own in the example).
pub const INDEXED_COLUMNS: &[(&str, &str)] = &[
    ("last_name", "{ prefix = 4, trigram = true, exact = true }"),
    ("birth_date", "{ exact = true, date = \"month\" }"),
    ("email", "{ trigram = true, exact = true }"),
    ("phone", "{ trigram = true }"),
    ("address", "{ trigram = true, bits = 10 }"),
];

/// The policy at `source` (the hospital example or a variant of it) with
/// [`INDEXED_COLUMNS`]' search indexes, written to `dir/<name>`.
pub fn indexed_policy(source: &Path, dir: &Path, name: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(source).expect("read the hospital policy");
    for (column, search) in INDEXED_COLUMNS {
        let header = format!("[columns.\"public.patients.{column}\"]\n");
        let at = text
            .find(&header)
            .unwrap_or_else(|| panic!("{column} moved in the hospital policy"))
            + header.len();
        let end = text[at..].find('\n').expect("a mode line") + at;
        assert!(
            text[at..end].starts_with("mode = "),
            "{column}'s first line is not its mode"
        );
        text.replace_range(
            at..end,
            &format!("mode = \"randomized\"\nsearch = {search}"),
        );
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the indexed policy");
    path
}

/// A valid NIR for patient `i`, different for every `i` below 49,950 (the column is tokenized:
/// any valid NIR will do).
pub fn nir_for(i: usize) -> String {
    let body = format!(
        "1{:02}{:02}75{:03}{:03}",
        50 + i % 50,
        1 + i % 12,
        1 + i % 999,
        1 + i / 999
    );
    let number: u64 = body.parse().expect("digits");
    format!("{body}{:02}", 97 - number % 97)
}
