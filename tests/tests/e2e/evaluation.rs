//! Filters and sorts on sealed columns, evaluated inside pgseal, end to end on the hospital
//! example: the server gets a superset, the client exactly what PostgreSQL would return.

use pgseal_tests::cluster;
use pgseal_tests::hospital::{Hospital, simple_rows};

#[tokio::test]
async fn sorted_and_filtered_on_sealed_names() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create_icu(cluster, "fr-FR");
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    crate::protection::insert_patients(&app).await;
    let rows = app
        .simple_query("SELECT last_name, first_name FROM patients ORDER BY last_name DESC LIMIT 5")
        .await
        .expect("sorted by a sealed name");
    eprintln!("{:?}", simple_rows(&rows));
    let rows = app
        .query(
            "SELECT id, last_name FROM patients WHERE last_name ILIKE $1 ORDER BY first_name",
            &[&"%E%"],
        )
        .await
        .expect("searched by a sealed name");
    for r in &rows {
        eprintln!("{:?} {:?}", r.get::<_, i64>(0), r.get::<_, String>(1));
    }
    let rows = app
        .query(
            "SELECT id FROM patients WHERE birth_date BETWEEN $1 AND $2",
            &[
                &time::macros::date!(1980 - 01 - 01),
                &time::macros::date!(1990 - 01 - 01),
            ],
        )
        .await
        .expect("a range of sealed birth dates");
    assert_eq!(rows.len(), 1);
    proxy.stop().await;
}
