//! Drivers users use, unchanged, through pgseal on the hospital example: each client program
//! is written as its users write it (tests/clients/), run against pgseal, and its output and
//! the stored forms checked. A missing driver or runtime fails the test (CI installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;

/// PgJDBC's jar as Debian's libpostgresql-jdbc-java installs it.
pub(crate) const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Compiles the PgJDBC client into a temporary directory.
fn compile_jdbc_client(out: &Path) {
    compile_jdbc(out, "HospitalClient.java");
}

/// Compiles `tests/clients/jdbc/<source>` into `out`.
pub(crate) fn compile_jdbc(out: &Path, source: &str) {
    assert!(
        Path::new(PGJDBC_JAR).exists(),
        "{PGJDBC_JAR} is missing: apt-get install libpostgresql-jdbc-java default-jdk-headless"
    );
    let status = Command::new("javac")
        .arg("-d")
        .arg(out)
        .arg(clients_dir().join("jdbc").join(source))
        .status()
        .expect("run javac (apt-get install default-jdk-headless)");
    assert!(status.success(), "javac failed");
}

/// Runs the PgJDBC client; returns its output lines split on tabs.
fn run_jdbc(classes: &Path, url: &str, nir_prefix: &str) -> Vec<Vec<String>> {
    let output = Command::new("java")
        .arg("-cp")
        .arg(format!("{PGJDBC_JAR}:{}", classes.display()))
        .arg("HospitalClient")
        .arg(url)
        .arg(nir_prefix)
        .output()
        .expect("run java");
    assert!(
        output.status.success(),
        "the PgJDBC client failed ({url}):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn lines_of<'a>(lines: &'a [Vec<String>], kind: &str) -> Vec<&'a [String]> {
    lines
        .iter()
        .filter(|l| l[0] == kind)
        .map(|l| &l[1..])
        .collect()
}

/// PgJDBC, both ways it sends strings (`stringtype=varchar`, its default, declares varchar;
/// `unspecified` declares nothing): batch inserts with setString and setDate, setTimestamp,
/// named statements past prepareThreshold, a refusal mid-session and reuse, a transaction.
#[tokio::test]
async fn pgjdbc_works_unchanged() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let classes = tempfile::tempdir().unwrap();
    compile_jdbc_client(classes.path());
    for (run, (stringtype, prefix)) in [("varchar", "18507750012"), ("unspecified", "28507750013")]
        .into_iter()
        .enumerate()
    {
        let url = format!(
            "jdbc:postgresql://127.0.0.1:{}/{}?user=ehr_app&password=ehr_app&sslmode=disable&stringtype={stringtype}",
            proxy.port(),
            hospital.database
        );
        // pgseal runs in this test's runtime: the client waits on a thread of its own.
        let dir = classes.path().to_path_buf();
        let lines = tokio::task::spawn_blocking(move || run_jdbc(&dir, &url, prefix))
            .await
            .unwrap();
        assert_eq!(
            lines_of(&lines, "batch"),
            vec![&["3".to_string()][..]],
            "{stringtype}"
        );
        assert_eq!(
            lines_of(&lines, "consultation"),
            vec![&["1".to_string()][..]]
        );
        let rows = lines_of(&lines, "row");
        assert_eq!(rows.len(), 8, "{stringtype}: {lines:?}");
        for row in rows {
            let round: usize = row[0].parse().unwrap();
            let i = 1 + round % 3;
            assert_eq!(
                &row[1..],
                &[
                    format!("Lefèvre-{i}"),
                    "Élodie".to_string(),
                    format!("1992-07-0{i}")
                ],
                "{stringtype}"
            );
        }
        assert_eq!(
            lines_of(&lines, "refused"),
            vec![&["0A000".to_string()][..]]
        );
        assert_eq!(
            lines_of(&lines, "count"),
            vec![&[(3 * (run + 1)).to_string()][..]]
        );
        assert_eq!(lines_of(&lines, "update"), vec![&["1".to_string()][..]]);
        assert_eq!(
            lines_of(&lines, "date"),
            vec![&["1990-01-31".to_string()][..]]
        );
    }
    // Stored sealed: no name, first name or date in clear.
    let direct = cluster.connect(&hospital.database).await;
    for row in direct
        .query(
            "SELECT last_name, first_name, birth_date FROM patients",
            &[],
        )
        .await
        .unwrap()
    {
        for i in 0..3 {
            let stored: String = row.get(i);
            assert!(stored.starts_with("pgs1:"), "stored in clear: {stored}");
        }
    }
    proxy.stop().await;
}
