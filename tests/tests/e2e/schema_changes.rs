//! An ORM's schema install and upgrade through pgseal with a policy: statements that neither
//! read nor write sealed values pass (including those the SQL parser cannot parse, such as
//! `ALTER SEQUENCE … RESTART WITH`), indexes on sealed columns as plain columns pass, and what
//! would store sealed values in clear or leave the policy naming nothing is refused, each with
//! a message saying what to do, the session staying usable.

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;

#[tokio::test]
async fn schema_upgrades_pass_and_what_would_unseal_is_refused() {
    let cluster = cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let owner = proxy.connect(cluster, &hospital.database).await;
    for sql in [
        "CREATE SEQUENCE IF NOT EXISTS \"seq_5\"",
        "ALTER SEQUENCE \"seq_5\" INCREMENT BY 1 RESTART WITH 1",
        "CREATE INDEX IF NOT EXISTS \"idx_last\" ON patients USING btree ((\"last_name\") varchar_pattern_ops)",
        // Again: the index exists.
        "CREATE INDEX IF NOT EXISTS \"idx_last\" ON patients USING btree ((\"last_name\") varchar_pattern_ops)",
        "CREATE INDEX IF NOT EXISTS idx_email ON public.patients (email text_pattern_ops)",
        "ALTER TABLE patients ADD COLUMN IF NOT EXISTS ward text DEFAULT 'A'",
        "ALTER TABLE patients ALTER COLUMN city TYPE varchar(120)",
        "COMMENT ON COLUMN patients.last_name IS 'nom de famille'",
        "CREATE TABLE IF NOT EXISTS ir_module (id serial PRIMARY KEY, name varchar DEFAULT 'base')",
    ] {
        owner
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    for (sql, fragment) in [
        (
            "ALTER TABLE patients ALTER COLUMN last_name TYPE varchar(100)",
            "policy's `type`",
        ),
        (
            "ALTER TABLE patients ALTER COLUMN last_name SET DEFAULT 'Martin'",
            "store values in clear",
        ),
        (
            "ALTER TABLE patients RENAME COLUMN last_name TO surname",
            "rename it on PostgreSQL directly",
        ),
        (
            "ALTER TABLE patients RENAME TO people",
            "policy naming nothing",
        ),
        ("ALTER SEQUENCE seq_5 OWNED BY patients.id", "sealed table"),
    ] {
        let error = owner
            .batch_execute(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} was not refused"));
        let db = error.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "0A000", "{sql}");
        assert!(db.message().contains(fragment), "{sql}: {}", db.message());
    }
    // Nothing changed that should not have, and the session goes on.
    let direct = cluster.connect(&hospital.database).await;
    let columns: Vec<String> = pgseal_tests::first_column(&direct, "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'patients' AND column_name IN ('last_name', 'surname')").await;
    assert_eq!(columns, vec!["last_name".to_string()]);
    let default: Option<String> = direct
        .query_one(
            "SELECT column_default::text FROM information_schema.columns WHERE table_name = 'patients' AND column_name = 'last_name'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, None);
    let indexes: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('idx_last', 'idx_email')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 2);
    owner.batch_execute("SELECT 1").await.unwrap();
    proxy.stop().await;
}
