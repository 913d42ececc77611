//! Several rows inserted at once as one array per column, `INSERT … SELECT * FROM
//! UNNEST($1::varchar(15)[], $2::text[], $3::date[], …)` (Django's bulk_create): every element
//! of a sealed column's array is sealed, bound (text or binary arrays) or written as a literal;
//! what pgseal cannot seal element by element is refused, never stored in clear.

use pgseal_tests::cluster;
use pgseal_tests::hospital::Hospital;
use time::{Date, Month};
use tokio_postgres::Client;

const INSERT: &str = "INSERT INTO patients (nir, last_name, first_name, birth_date, city) \
     SELECT * FROM UNNEST($1::varchar(15)[], $2::text[], ($3)::text[], $4::date[], $5::text[]) \
     RETURNING id";

/// The patients' rows read back through pgseal, in id order.
async fn read_back(app: &Client) -> Vec<(String, Option<String>, Option<String>, Option<Date>)> {
    app.query(
        "SELECT nir, last_name, first_name, birth_date FROM patients ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// No plaintext among the stored rows of `patients`.
async fn assert_sealed_at_rest(hospital: &Hospital, plaintexts: &[&str]) {
    let direct = cluster::cluster().connect(&hospital.database).await;
    let stored: String = direct
        .query_one(
            "SELECT coalesce(string_agg(p::text, ' '), '') FROM patients p",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for plaintext in plaintexts {
        assert!(!stored.contains(plaintext), "{plaintext:?} stored in clear");
    }
}

#[tokio::test]
async fn every_element_of_a_sealed_columns_array_is_sealed() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    let day = Date::from_calendar_date(1985, Month::May, 17).unwrap();

    // Bound (tokio-postgres sends arrays in binary), with NULLs, quotes, commas, braces and a
    // backslash among the elements.
    let nirs = vec!["185057510000154", "285057510100270", "185057510200389"];
    let last = vec![Some("O'Brien, \"Jr\""), None, Some("Lef{è}vre\\")];
    let first = vec![Some("Élodie"), Some("Jean Luc"), None];
    let births = vec![Some(day), None, Some(day)];
    let cities = vec![Some("Lyon"), None, Some("Paris")];
    let ids = app
        .query(INSERT, &[&nirs, &last, &first, &births, &cities])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);

    // Written as literals, as psycopg writes them when it binds on the client (a list of
    // dates under its own cast).
    app.simple_query(
        "INSERT INTO patients (nir, last_name, birth_date) SELECT * FROM UNNEST(\
         ('{285057510300408,185057510400527}')::varchar(15)[], \
         ('{\"Du Pont\",NULL}')::text[], \
         (('{1999-12-31,NULL}')::date[])::date[])",
    )
    .await
    .unwrap();

    let rows = read_back(&app).await;
    let plain = |s: Option<&str>| s.map(str::to_string);
    assert_eq!(
        rows,
        vec![
            (nirs[0].into(), plain(last[0]), plain(first[0]), births[0]),
            (nirs[1].into(), None, plain(first[1]), None),
            (nirs[2].into(), plain(last[2]), None, births[2]),
            (
                "285057510300408".into(),
                Some("Du Pont".into()),
                None,
                Some(Date::from_calendar_date(1999, Month::December, 31).unwrap())
            ),
            ("185057510400527".into(), None, None, None),
        ]
    );
    assert_sealed_at_rest(
        &hospital,
        &[
            "O'Brien",
            "Lef{",
            "Élodie",
            "Jean Luc",
            "Du Pont",
            "1985-05-17",
            "1999-12-31",
        ],
    )
    .await;
    // The unsealed column went in as written.
    let direct = cluster.connect(&hospital.database).await;
    let cities: i64 = direct
        .query_one(
            "SELECT count(*) FROM patients WHERE city IN ('Lyon', 'Paris')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cities, 2);
    proxy.stop().await;
}

#[tokio::test]
async fn arrays_pgseal_cannot_seal_element_by_element_are_refused() {
    let cluster = cluster::cluster();
    let hospital = Hospital::create(cluster);
    let proxy = hospital.proxy(cluster).await;
    let app = hospital.connect(&proxy, "ehr_app").await;
    for (sql, sqlstate) in [
        // Built by a function, not written or bound.
        (
            "INSERT INTO patients (nir, last_name) SELECT * FROM UNNEST('{285057510500643}'::varchar(15)[], ARRAY['Computed'])",
            "0A000",
        ),
        // Without a cast to an array type: the elements' type is the server's to infer.
        (
            "INSERT INTO patients (nir, last_name) SELECT * FROM UNNEST('{285057510500643}'::varchar(15)[], '{Uncast}')",
            "0A000",
        ),
        // A second dimension.
        (
            "INSERT INTO patients (nir, last_name) SELECT * FROM UNNEST('{285057510500643}'::varchar(15)[], '{{Nested}}'::text[])",
            "22P02",
        ),
        // WITH ORDINALITY adds a column: the arrays no longer line up with the targets.
        (
            "INSERT INTO patients (nir, last_name) SELECT * FROM UNNEST('{285057510500643}'::varchar(15)[], '{Ordinal}'::text[]) WITH ORDINALITY",
            "0A000",
        ),
    ] {
        let error = app.simple_query(sql).await.unwrap_err();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some(sqlstate),
            "{sql}: {error}"
        );
    }
    // Roles that do not read the columns in clear may not write them, arrays included.
    for role in ["ehr_billing", "ehr_admin"] {
        let other = hospital.connect(&proxy, role).await;
        let error = other
            .query(
                "INSERT INTO patients (nir, last_name) SELECT * FROM UNNEST($1::varchar(15)[], $2::text[])",
                &[&vec!["285057510500643"], &vec!["Stolen"]],
            )
            .await
            .unwrap_err();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("42501"),
            "{role}: {error}"
        );
        pgseal_tests::assert_usable(&other).await;
    }
    assert_sealed_at_rest(
        &hospital,
        &["Computed", "Uncast", "Nested", "Ordinal", "Stolen"],
    )
    .await;
    let direct = cluster.connect(&hospital.database).await;
    let stored: i64 = direct
        .query_one("SELECT count(*) FROM patients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    pgseal_tests::assert_usable(&app).await;
    proxy.stop().await;
}
