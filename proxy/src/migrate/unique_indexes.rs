//! Unique indexes over tokenized columns, set aside while their tokens are rewritten.
//!
//! Tokens keep the plaintext's format, so a value's new token may be another row's value not
//! rewritten yet (a NIR token that is some other patient's real NIR; a version-2 token equal to
//! a version-1 token still waiting): a unique index would refuse the batch, and the migration
//! could never finish. Since FF1 is a permutation, the column is unique again once every row is
//! rewritten. So before the first token pass on a table, each unique index covering a column
//! to rewrite is recorded in `pgseal.migration_index` and dropped, in one transaction (one
//! simple query: it commits whole or not at all); once the table's token passes are done, it is
//! built again from its recorded definition and the record deleted, in one transaction. A killed run leaves the record, and the run that finishes the
//! passes rebuilds it. Meanwhile pgseal refuses statements on the column (it is marked
//! `migrating`), so only writes bypassing pgseal could break uniqueness, and the rebuild would
//! then name the index. An index that a foreign key depends on is refused before any change.

use super::plan::{ColumnPlan, TablePlan};
use super::types::ddl;
use super::{MigrateError, sql_ident};

/// The record of set-aside indexes, created with the progress store.
pub const INSTALL_SQL: &str = "\
CREATE TABLE IF NOT EXISTS pgseal.migration_index (
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    index_name  text NOT NULL,
    restore_sql text NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name, index_name)
);
COMMENT ON TABLE pgseal.migration_index IS
    'pgseal migrate: unique indexes dropped while tokens are rewritten, rebuilt after (do not edit)';";

/// The unique indexes of a table covering one of the given columns (as a key column, or in an
/// expression or predicate, which `pg_depend` records), whether they back a constraint, their definitions, and whether a
/// foreign key depends on them.
const FIND_SQL: &str = "\
SELECT ic.relname::text,
       con.conname::text,
       pg_get_indexdef(i.indexrelid),
       CASE WHEN con.oid IS NOT NULL THEN pg_get_constraintdef(con.oid) END,
       EXISTS (SELECT FROM pg_catalog.pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
     AND con.contype IN ('u', 'p')
WHERE i.indrelid = $1::text::regclass AND i.indisunique
  AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = i.indrelid AND a.attname = ANY($2)
                AND (a.attnum = ANY (i.indkey::int2[])
                     OR EXISTS (SELECT FROM pg_catalog.pg_depend d
                                WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                  AND d.objid = i.indexrelid AND d.refobjid = i.indrelid
                                  AND d.refobjsubid = a.attnum)))
ORDER BY 1";

/// The unique indexes of `table` covering one of `columns`; refuses one a foreign key depends
/// on (it cannot be dropped without the foreign key).
async fn find(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
) -> Result<Vec<tokio_postgres::Row>, MigrateError> {
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
    if let Some(row) = rows.iter().find(|row| row.get::<_, bool>(4)) {
        return Err(MigrateError::UniqueReferenced {
            table: table.qualified.clone(),
            index: row.get(0),
        });
    }
    Ok(rows)
}

/// Refuses, before any change, a unique index over `columns` that a foreign key depends on.
pub async fn check(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
) -> Result<(), MigrateError> {
    find(client, table, columns).await.map(|_| ())
}

/// Records and drops every unique index of `table` covering one of `columns`.
pub async fn set_aside(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
) -> Result<Vec<String>, MigrateError> {
    let rows = find(client, table, columns).await?;
    let mut dropped = Vec::new();
    for row in &rows {
        let index: String = row.get(0);
        let constraint: Option<String> = row.get(1);
        let index_def: String = row.get(2);
        let constraint_def: Option<String> = row.get(3);
        let (drop, restore) = match (constraint, constraint_def) {
            (Some(name), Some(definition)) => (
                format!(
                    "ALTER TABLE {} DROP CONSTRAINT {}",
                    table.sql,
                    sql_ident(&name)
                ),
                format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {definition}",
                    table.sql,
                    sql_ident(&name)
                ),
            ),
            _ => (
                format!(
                    "DROP INDEX {}.{}",
                    sql_ident(&table.schema),
                    sql_ident(&index)
                ),
                index_def,
            ),
        };
        ddl(
            client,
            &format!(
                "INSERT INTO pgseal.migration_index \
                 (schema_name, table_name, index_name, restore_sql) VALUES ({}, {}, {}, {}) \
                 ON CONFLICT DO NOTHING; {drop}",
                literal(&table.schema),
                literal(&table.table),
                literal(&index),
                literal(&restore)
            ),
            &format!("setting {}'s unique index {index} aside", table.qualified),
        )
        .await?;
        dropped.push(index);
    }
    Ok(dropped)
}

/// Builds again every index of `table` set aside by [`set_aside`] (in this run or a killed
/// one); returns their names.
pub async fn restore(
    client: &tokio_postgres::Client,
    table: &TablePlan,
) -> Result<Vec<String>, MigrateError> {
    if !super::progress::relation_exists(client, "pgseal.migration_index").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT index_name, restore_sql FROM pgseal.migration_index \
             WHERE schema_name = $1 AND table_name = $2 ORDER BY index_name",
            &[&table.schema, &table.table],
        )
        .await
        .map_err(|e| MigrateError::db("reading pgseal.migration_index", &e))?;
    let mut restored = Vec::new();
    for row in rows {
        let index: String = row.get(0);
        let restore: String = row.get(1);
        ddl(
            client,
            &format!(
                "{restore}; DELETE FROM pgseal.migration_index \
                 WHERE schema_name = {} AND table_name = {} AND index_name = {}",
                literal(&table.schema),
                literal(&table.table),
                literal(&index)
            ),
            &format!("building {}'s unique index {index} again", table.qualified),
        )
        .await?;
        restored.push(index);
    }
    Ok(restored)
}

/// A SQL string literal (standard-conforming strings, quotes doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
