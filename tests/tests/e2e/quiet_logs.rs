//! No patient value in any log: pgseal run as its binary at `--log-level trace`, in both log
//! formats, through a workload that writes, looks up, reads and gets refused with values in
//! its statements; then every value is searched for in pgseal's log and in PostgreSQL's. Each
//! refusal leaves a warn line naming the role, database, SQLSTATE, reason and fingerprint, and
//! PostgreSQL's log names pgseal and the same fingerprint.

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use pgseal_tests::proxy::ProxyProcess;

/// Values that appear in the workload's statements and parameters, never in a log.
const VALUES: &[&str] = &[
    "Zéphyrine",
    "Quasimodo",
    "zephyrine.q@exemple.fr",
    "0612398745",
    "1 rue des Oubliettes",
    "1985-05-17",
];

#[tokio::test]
async fn no_value_reaches_a_log_at_trace_level_and_refusals_are_traceable() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    for format in ["json", "human"] {
        let proxy = ProxyProcess::start(
            &[
                "--upstream",
                &cluster.address(),
                "--policy",
                hospital.policy.to_str().unwrap(),
                "--keyring",
                hospital.keyring.to_str().unwrap(),
                "--log-level",
                "trace",
                "--log-format",
                format,
            ],
            &[],
        );
        let connect = |role: &str| {
            format!(
                "host=127.0.0.1 port={} user={role} password={role} dbname={}",
                proxy.port, hospital.database
            )
        };
        let (app, connection) = tokio_postgres::connect(&connect("ehr_app"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let nir = if format == "json" {
            "185057500150084"
        } else {
            "185057500150185"
        };
        let nir = {
            // A valid control key for the body.
            let body: u64 = nir[..13].parse().unwrap();
            format!("{}{:02}", &nir[..13], 97 - body % 97)
        };
        app.execute(
            "INSERT INTO patients (nir, last_name, first_name, email, phone, address) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&nir, &VALUES[1], &VALUES[0], &VALUES[2], &VALUES[3], &VALUES[4]],
        )
        .await
        .unwrap();
        app.simple_query(&format!(
            "UPDATE patients SET birth_date = '{}' WHERE last_name = '{}'",
            VALUES[5], VALUES[1]
        ))
        .await
        .unwrap();
        let rows = app
            .query("SELECT first_name FROM patients WHERE nir = $1", &[&nir])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(0), VALUES[0]);
        // Refused, with values in the text: an impossible operation, an unparseable statement,
        // a lookup by a role that may not.
        let refused = [
            format!(
                "SELECT id FROM patients WHERE last_name = '{}' ORDER BY length(first_name)",
                VALUES[1]
            ),
            format!(
                "SELECT id FROM patients WHERE last_name = '{}' ORDER BY",
                VALUES[1]
            ),
            format!(
                "SELECT id FROM patients WHERE last_name SIMILAR TO '{}%'",
                VALUES[0]
            ),
        ];
        for sql in &refused {
            assert!(app.simple_query(sql).await.is_err(), "{sql}");
        }
        let (admin, connection) =
            tokio_postgres::connect(&connect("ehr_admin"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let lookup = format!("SELECT id FROM patients WHERE email = '{}'", VALUES[2]);
        let error = admin.simple_query(&lookup).await.unwrap_err();
        assert_eq!(error.code().unwrap().code(), "42501");
        drop((app, admin));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        let logs = proxy.logs();
        for value in VALUES.iter().copied().chain([nir.as_str()]) {
            assert!(
                !logs.contains(value),
                "{format}: pgseal's log holds {value:?}:\n{logs}"
            );
        }
        let refusals: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("pgseal refused a statement"))
            .collect();
        assert_eq!(refusals.len(), 4, "{format}: {logs}");
        for line in &refusals {
            assert!(line.contains("WARN"), "{line}");
            for field in ["role", "database", "sqlstate", "reason", "fingerprint"] {
                assert!(line.contains(field), "{format}: no {field} in {line}");
            }
        }
        assert!(
            refusals
                .iter()
                .any(|l| l.contains("ehr_admin") && l.contains("permission"))
        );
        assert!(
            refusals
                .iter()
                .any(|l| l.contains("ehr_app") && l.contains("unsupported"))
        );
        proxy.terminate();
    }
    // PostgreSQL's log names pgseal and the refusal, never the value.
    let server_log = std::fs::read_to_string(cluster.server_log()).unwrap();
    assert!(
        server_log
            .contains("pgseal refused this statement (SQLSTATE 42501, permission; fingerprint "),
        "{server_log}"
    );
    for value in VALUES {
        assert!(
            !server_log.contains(value),
            "PostgreSQL's log holds {value:?}"
        );
    }
}
