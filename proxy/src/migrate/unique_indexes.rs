//! Unique indexes over tokenized columns, set aside while their tokens are rewritten.
//!
//! Tokens keep the plaintext's format, so a value's new token may be another row's value not
//! rewritten yet (a NIR token that is some other patient's real NIR; a version-2 token equal to
//! a version-1 token still waiting): a unique index would refuse the batch, and the migration
//! could never finish. FF1 is a permutation of each column's values, so a unique index whose
//! keys are plain columns is unique again once every row is rewritten. Before the first token
//! pass on a table, each such index covering a column to rewrite is recorded in
//! `pgseal.migration_index` (its definition, its constraint, its CLUSTER mark and comment)
//! and dropped, in one transaction. Once the table's token passes are done it is built again
//! with `CREATE UNIQUE INDEX CONCURRENTLY` (the application reads and writes meanwhile), its
//! constraint attached to it, and the record deleted.
//!
//! Uniqueness is therefore not enforced from the set-aside to the rebuild: pgseal refuses
//! statements on the column meanwhile (it is marked `migrating`), so only writes bypassing
//! pgseal could break it, and the rebuild then fails naming the index and how to find the
//! duplicates. Refused before any change, since they could not be set aside safely: an index a
//! foreign key depends on, one that is the table's REPLICA IDENTITY, an expression or partial
//! index over the column (its uniqueness over tokens is not its uniqueness over plaintext),
//! and an exclusion constraint over it. An index that only INCLUDEs the column is left alone.

use std::time::Duration;

use super::MigrateError;
use super::plan::{ColumnPlan, TablePlan};
use super::sql_ident;
use super::types::ddl;

/// The record of set-aside indexes, created with the progress store.
pub const INSTALL_SQL: &str = "\
CREATE TABLE IF NOT EXISTS pgseal.migration_index (
    schema_name    text NOT NULL,
    table_name     text NOT NULL,
    index_name     text NOT NULL,
    index_sql      text NOT NULL,
    constraint_sql text,
    after_sql      text,
    dropped_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name, index_name)
);
COMMENT ON TABLE pgseal.migration_index IS
    'pgseal migrate: unique indexes dropped while tokens are rewritten, rebuilt after (do not edit)';";

/// The unique indexes and exclusion constraints of a table that involve one of the given
/// columns (as a key, an INCLUDE column, in an expression or a predicate), with what decides
/// whether they can be set aside, and the statements that rebuild them (built by the server,
/// so names and literals are quoted by `format`).
const FIND_SQL: &str = "\
SELECT ic.relname::text,
       con.conname::text,
       EXISTS (SELECT FROM pg_catalog.pg_constraint f
               WHERE f.contype = 'f' AND f.conindid = i.indexrelid),
       i.indisreplident,
       coalesce(con.contype = 'x', false),
       i.indexprs IS NOT NULL OR i.indpred IS NOT NULL,
       EXISTS (SELECT FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE k.ord <= i.indnkeyatts AND a.attname = ANY ($2)),
       replace(pg_get_indexdef(i.indexrelid), 'CREATE UNIQUE INDEX ',
               'CREATE UNIQUE INDEX CONCURRENTLY ')
         || coalesce((SELECT format(' TABLESPACE %I', spcname) FROM pg_catalog.pg_tablespace
                      WHERE oid = ic.reltablespace AND ic.reltablespace <> 0), ''),
       CASE WHEN con.oid IS NOT NULL AND con.contype = 'u' THEN
            format('ALTER TABLE %s ADD CONSTRAINT %I UNIQUE USING INDEX %I%s', $1::text::regclass, con.conname,
                   ic.relname,
                   CASE WHEN con.condeferred THEN ' DEFERRABLE INITIALLY DEFERRED'
                        WHEN con.condeferrable THEN ' DEFERRABLE' ELSE '' END) END,
       nullif(concat_ws('; ',
           CASE WHEN i.indisclustered THEN format('ALTER TABLE %s CLUSTER ON %I', $1::text::regclass,
                coalesce(con.conname, ic.relname)) END,
           CASE WHEN obj_description(i.indexrelid, 'pg_class') IS NOT NULL THEN
                format('COMMENT ON INDEX %I.%I IS %L', n.nspname, coalesce(con.conname, ic.relname),
                       obj_description(i.indexrelid, 'pg_class')) END), ''),
       CASE WHEN con.oid IS NOT NULL THEN format('ALTER TABLE %s DROP CONSTRAINT %I', $1::text::regclass, con.conname)
            ELSE format('DROP INDEX %I.%I', n.nspname, ic.relname) END
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = ic.relnamespace
LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
     AND con.contype IN ('u', 'p', 'x')
WHERE i.indrelid = $1::text::regclass
  AND (i.indisunique OR con.contype = 'x')
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = i.indrelid AND a.attname = ANY ($2)
                AND (a.attnum = ANY (i.indkey::int2[])
                     OR EXISTS (SELECT FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                  AND d.objid = i.indexrelid AND d.refobjid = i.indrelid
                                  AND d.refobjsubid = a.attnum)))
ORDER BY 1";

/// One index to set aside.
struct Aside {
    index: String,
    index_sql: String,
    constraint_sql: Option<String>,
    after_sql: Option<String>,
    drop_sql: String,
}

/// The indexes of `table` to set aside for rewriting `columns`; refuses, before any change,
/// the ones that cannot be.
async fn find(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
) -> Result<Vec<Aside>, MigrateError> {
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = columns.iter().map(|c| c.column.as_str()).collect();
    let rows = client
        .query(FIND_SQL, &[&table.sql, &names])
        .await
        .map_err(|e| {
            MigrateError::db(format!("reading {}'s unique indexes", table.qualified), &e)
        })?;
    let mut aside = Vec::new();
    for row in rows {
        let index: String = row.get(0);
        let refuse = |why: &'static str| MigrateError::UniqueUnsafe {
            table: table.qualified.clone(),
            index: index.clone(),
            why,
        };
        if row.get::<_, bool>(2) {
            return Err(refuse(
                "a foreign key depends on it (drop the foreign key for the migration and add it \
                 again after)",
            ));
        }
        if row.get::<_, bool>(3) {
            return Err(refuse(
                "it is the table's REPLICA IDENTITY, which logical replication needs for every \
                 UPDATE (set REPLICA IDENTITY to the primary key or FULL for the migration)",
            ));
        }
        if row.get::<_, bool>(4) {
            return Err(refuse(
                "it is an exclusion constraint, which tokens cannot keep (drop it for the \
                 migration)",
            ));
        }
        if row.get::<_, bool>(5) {
            return Err(refuse(
                "it is an expression or partial index, whose uniqueness over tokens is not its \
                 uniqueness over plaintext (drop it, or make it a plain unique index)",
            ));
        }
        if !row.get::<_, bool>(6) {
            // The column is only INCLUDEd: its values do not make the index's keys.
            continue;
        }
        aside.push(Aside {
            index,
            index_sql: row.get(7),
            constraint_sql: row.get(8),
            after_sql: row.get(9),
            drop_sql: row.get(10),
        });
    }
    Ok(aside)
}

/// Refuses, before any change, a unique index over `columns` that cannot be set aside.
pub async fn check(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
) -> Result<(), MigrateError> {
    find(client, table, columns).await.map(|_| ())
}

/// How many times a transaction of this module is tried again after a lock timeout.
const RETRIES: u32 = 10;

/// Records and drops every unique index of `table` covering one of `columns`; returns their
/// names.
pub async fn set_aside(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
) -> Result<Vec<String>, MigrateError> {
    let mut dropped = Vec::new();
    for aside in find(client, table, columns).await? {
        let what = format!(
            "setting {}'s unique index {} aside",
            table.qualified, aside.index
        );
        let mut attempt = 0;
        loop {
            let result = async {
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO pgseal.migration_index (schema_name, table_name, index_name, \
                     index_sql, constraint_sql, after_sql) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT DO NOTHING",
                    &[
                        &table.schema,
                        &table.table,
                        &aside.index,
                        &aside.index_sql,
                        &aside.constraint_sql,
                        &aside.after_sql,
                    ],
                )
                .await?;
                tx.batch_execute(&aside.drop_sql).await?;
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e) => {
                    let err = MigrateError::db(&what, &e);
                    if !err.is_transient() || attempt >= RETRIES {
                        return Err(err);
                    }
                    attempt += 1;
                    crate::timer::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        dropped.push(aside.index);
    }
    Ok(dropped)
}

/// The records of set-aside indexes of tables this run does not migrate: only a run on their
/// table rebuilds them, so they are refused by name rather than forgotten.
pub async fn stranded(
    client: &tokio_postgres::Client,
    tables: &[(String, String)],
) -> Result<Option<MigrateError>, MigrateError> {
    if !super::progress::relation_exists(client, "pgseal.migration_index").await? {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT schema_name, table_name, string_agg(index_name, ', ' ORDER BY index_name) \
             FROM pgseal.migration_index GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| MigrateError::db("reading pgseal.migration_index", &e))?;
    Ok(rows
        .iter()
        .find(|row| {
            let key = (row.get::<_, String>(0), row.get::<_, String>(1));
            !tables.contains(&key)
        })
        .map(|row| MigrateError::StrandedIndexes {
            table: format!("{}.{}", row.get::<_, String>(0), row.get::<_, String>(1)),
            indexes: row.get(2),
        }))
}

/// Builds again every index of `table` set aside by [`set_aside`] (in this run or a killed
/// one); returns their names.
pub async fn restore(
    client: &mut tokio_postgres::Client,
    table: &TablePlan,
) -> Result<Vec<String>, MigrateError> {
    if !super::progress::relation_exists(client, "pgseal.migration_index").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT index_name, index_sql, constraint_sql, after_sql FROM pgseal.migration_index \
             WHERE schema_name = $1 AND table_name = $2 ORDER BY index_name",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|e| MigrateError::db("reading pgseal.migration_index", &e))?;
    let mut restored = Vec::new();
    for row in rows {
        let index: String = row.get(0);
        let index_sql: String = row.get(1);
        let constraint_sql: Option<String> = row.get(2);
        let after_sql: Option<String> = row.get(3);
        build(client, table, &index, &index_sql).await?;
        let tx = client.transaction().await.map_err(|e| {
            MigrateError::db(format!("attaching {}'s index {index}", table.qualified), &e)
        })?;
        let attach = async {
            for sql in constraint_sql.iter().chain(after_sql.iter()) {
                tx.batch_execute(sql).await?;
            }
            tx.execute(
                "DELETE FROM pgseal.migration_index \
                 WHERE schema_name = $1 AND table_name = $2 AND index_name = $3",
                &[&table.schema, &table.table, &index],
            )
            .await?;
            tx.commit().await
        };
        attach.await.map_err(|e| {
            MigrateError::db(format!("attaching {}'s index {index}", table.qualified), &e)
        })?;
        restored.push(index);
    }
    Ok(restored)
}

/// Whether the index `schema.name` is valid (`None`: there is none), for an index built
/// concurrently that a killed run may have left invalid; `what` names the step in errors.
pub(crate) async fn validity(
    client: &tokio_postgres::Client,
    schema: &str,
    name: &str,
    what: &str,
) -> Result<Option<bool>, MigrateError> {
    Ok(client
        .query_opt(
            "SELECT i.indisvalid FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .map_err(|e| MigrateError::db(what, &e))?
        .map(|row| row.get(0)))
}

/// Builds one index concurrently: a valid index of that name (a run killed after building it)
/// is kept, an invalid one (a build that failed) is dropped and built again. Duplicates written
/// meanwhile stop it with the query that finds them.
async fn build(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    index: &str,
    index_sql: &str,
) -> Result<(), MigrateError> {
    let what = format!("building {}'s unique index {index} again", table.qualified);
    let valid = validity(client, &table.schema, index, &what).await?;
    let drop_sql = format!(
        "DROP INDEX IF EXISTS {}.{}",
        sql_ident(&table.schema),
        sql_ident(index)
    );
    match valid {
        Some(true) => return Ok(()),
        Some(false) => ddl(client, &drop_sql, &what).await?,
        None => {}
    }
    let mut attempt = 0;
    loop {
        let Err(e) = client.batch_execute(index_sql).await else {
            return Ok(());
        };
        // A concurrent build that fails leaves an invalid index behind.
        ddl(client, &drop_sql, &what).await?;
        let err = MigrateError::db(&what, &e);
        if let MigrateError::Database {
            code: Some(code), ..
        } = &err
            && code == "23505"
        {
            return Err(MigrateError::UniqueDuplicates {
                table: table.qualified.clone(),
                index: index.to_string(),
            });
        }
        if !err.is_transient() || attempt >= RETRIES {
            return Err(err);
        }
        attempt += 1;
        crate::timer::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
    }
}
