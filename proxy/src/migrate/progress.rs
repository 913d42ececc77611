//! The progress store: `pgseal.migration`, one row per sealed column saying which operation last
//! ran on it, under which key versions, how far it got (the last primary key of the last
//! committed batch) and whether it finished. Each batch updates it in its own transaction, so
//! after a kill the saved position is exactly what was committed: tokens and pseudonyms, which
//! cannot be told from plaintext, are never rewritten twice. It also records what the column
//! was sealed as (mode and key domain, so a policy changed under a half-done or sealed column
//! is refused) and its type before `encrypt` changed it (which `decrypt` gives back).

use std::collections::HashMap;

use super::plan::{ColumnPlan, TablePlan};
use super::{MigrateError, Operation};

/// The store's schema, created once (the same schema holds `pgseal.is_sealed`).
const INSTALL_SQL: &str = "\
CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE TABLE IF NOT EXISTS pgseal.migration (
    schema_name  text NOT NULL,
    table_name   text NOT NULL,
    column_name  text NOT NULL,
    operation    text NOT NULL CHECK (operation IN ('encrypt', 'rotate', 'decrypt')),
    from_version integer NOT NULL,
    key_version  integer NOT NULL,
    last_key     text,
    done         boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name, column_name)
);
ALTER TABLE pgseal.migration
    ADD COLUMN IF NOT EXISTS mode text,
    ADD COLUMN IF NOT EXISTS key_domain text,
    ADD COLUMN IF NOT EXISTS original_type text;
COMMENT ON TABLE pgseal.migration IS
    'pgseal migrate: where each sealed column''s last migration got to (do not edit)';";

/// What the store says of one column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnState {
    /// The last operation started on it.
    pub operation: Operation,
    /// The key version its tokens were read under (0 for envelopes and plaintext).
    pub from_version: u32,
    /// The key version its values are written under (0 for plaintext).
    pub key_version: u32,
    /// The primary key of the last row of the last committed batch.
    pub last_key: Option<String>,
    /// Whether the operation finished.
    pub done: bool,
    /// The mode the column was migrated in (absent in stores older than this field).
    pub mode: Option<String>,
    /// The key domain the column was migrated in.
    pub domain: Option<String>,
    /// The column's type before `encrypt` changed it (`date`, a domain, `character(10)`…).
    pub original_type: Option<String>,
}

/// Whether the table `name` (`pgseal.migration`…) exists: the stores are made on first use.
pub(crate) async fn relation_exists(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<bool, MigrateError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .map_err(|e| MigrateError::db(format!("looking for {name}"), &e))?
        .get(0))
}

/// Every column's state, by (schema, table, column); empty when the store does not exist yet.
pub async fn load(
    client: &tokio_postgres::Client,
) -> Result<HashMap<(String, String, String), ColumnState>, MigrateError> {
    if !relation_exists(client, "pgseal.migration").await? {
        return Ok(HashMap::new());
    }
    // The fields added later are read through `to_jsonb`, so a store made by an older pgseal
    // (without them) still loads: `install` adds them before anything is written.
    let rows = client
        .query(
            "SELECT schema_name, table_name, column_name, operation, from_version, key_version, \
             last_key, done, to_jsonb(m) ->> 'mode', to_jsonb(m) ->> 'key_domain', \
             to_jsonb(m) ->> 'original_type' FROM pgseal.migration m",
            &[],
        )
        .await
        .map_err(|e| MigrateError::db("reading pgseal.migration", &e))?;
    let mut states = HashMap::new();
    for row in rows {
        let operation: String = row.get(3);
        let Some(operation) = Operation::parse(&operation) else {
            continue;
        };
        let from: i32 = row.get(4);
        let key: i32 = row.get(5);
        states.insert(
            (row.get(0), row.get(1), row.get(2)),
            ColumnState {
                operation,
                from_version: u32::try_from(from).unwrap_or(0),
                key_version: u32::try_from(key).unwrap_or(0),
                last_key: row.get(6),
                done: row.get(7),
                mode: row.get(8),
                domain: row.get(9),
                original_type: row.get(10),
            },
        );
    }
    Ok(states)
}

/// The records of tokenized or pseudonym columns (or of columns whose mode an older store did
/// not record) that name a column no longer in the database, as refusals. Such a column was
/// renamed or dropped: under a new name it would have no record, and a migration would take
/// its tokens for plaintext. A finished `decrypt` left plaintext and is not counted.
pub async fn orphans(client: &tokio_postgres::Client) -> Result<Vec<MigrateError>, MigrateError> {
    if !relation_exists(client, "pgseal.migration").await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT m.schema_name, m.table_name, m.column_name, m.operation, m.done \
             FROM pgseal.migration m \
             WHERE NOT (m.operation = 'decrypt' AND m.done) \
               AND coalesce(to_jsonb(m) ->> 'mode', '') NOT IN ('randomized', 'deterministic') \
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a \
                   JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   WHERE n.nspname = m.schema_name AND c.relname = m.table_name \
                     AND a.attname = m.column_name AND a.attnum > 0 AND NOT a.attisdropped) \
             ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(|e| MigrateError::db("reading pgseal.migration", &e))?;
    Ok(rows
        .iter()
        .map(|row| {
            let (schema, table, column): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            let operation: String = row.get(3);
            let done: bool = row.get(4);
            MigrateError::Orphan {
                column: format!("{schema}.{table}.{column}"),
                record: format!(
                    "{} {operation}",
                    if done { "a finished" } else { "an unfinished" }
                ),
                delete: format!(
                    "DELETE FROM pgseal.migration WHERE schema_name = '{}' AND table_name = '{}' \
                     AND column_name = '{}'",
                    schema.replace('\'', "''"),
                    table.replace('\'', "''"),
                    column.replace('\'', "''")
                ),
            }
        })
        .collect())
}

/// Creates the store if it is missing.
pub async fn install(client: &tokio_postgres::Client) -> Result<(), MigrateError> {
    client
        .batch_execute(INSTALL_SQL)
        .await
        .map_err(|e| MigrateError::db("creating pgseal.migration", &e))?;
    client
        .batch_execute(super::unique_indexes::INSTALL_SQL)
        .await
        .map_err(|e| MigrateError::db("creating pgseal.migration_index", &e))
}

fn version(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Records that `operation` starts (or resumes) on a column, after `after`, with the column's
/// mode and key domain, and for `encrypt` the column's original type (`ColumnPlan::original_type`,
/// known before its type changes): the first one recorded is kept, since later runs see the
/// changed type; an encrypt after a finished decrypt records it anew.
pub async fn begin(
    client: &impl tokio_postgres::GenericClient,
    table: &TablePlan,
    column: &ColumnPlan,
    operation: Operation,
    from_version: u32,
    key_version: u32,
    after: Option<&str>,
) -> Result<(), MigrateError> {
    client
        .execute(
            "INSERT INTO pgseal.migration AS m (schema_name, table_name, column_name, operation, \
             from_version, key_version, last_key, done, mode, key_domain, original_type) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $9, \
                     CASE WHEN $4 = 'encrypt' THEN $10::text END) \
             ON CONFLICT (schema_name, table_name, column_name) DO UPDATE SET \
             operation = EXCLUDED.operation, from_version = EXCLUDED.from_version, \
             key_version = EXCLUDED.key_version, last_key = EXCLUDED.last_key, done = false, \
             mode = EXCLUDED.mode, key_domain = EXCLUDED.key_domain, \
             original_type = CASE \
                 WHEN EXCLUDED.operation <> 'encrypt' THEN m.original_type \
                 WHEN m.operation = 'decrypt' AND m.done THEN EXCLUDED.original_type \
                 ELSE coalesce(m.original_type, EXCLUDED.original_type) END, \
             updated_at = now()",
            &[
                &table.schema,
                &table.table,
                &column_column(column),
                &operation.name(),
                &version(from_version),
                &version(key_version),
                &after,
                &column.mode.name(),
                &column.domain,
                &column.original_type,
            ],
        )
        .await
        .map_err(|e| MigrateError::db(format!("saving {}'s progress", column.name), &e))?;
    Ok(())
}

/// The column's name as the store keys it (unquoted).
fn column_column(column: &ColumnPlan) -> String {
    column.column.clone()
}

/// Saves the position of `columns` after a batch, in the batch's transaction.
pub async fn advance(
    tx: &tokio_postgres::Transaction<'_>,
    table: &TablePlan,
    columns: &[String],
    last_key: &str,
) -> Result<(), MigrateError> {
    tx.execute(
        "UPDATE pgseal.migration SET last_key = $4, updated_at = now() \
         WHERE schema_name = $1 AND table_name = $2 AND column_name = ANY($3)",
        &[&table.schema, &table.table, &columns, &last_key],
    )
    .await
    .map_err(|e| MigrateError::db(format!("saving {}'s progress", table.qualified), &e))?;
    Ok(())
}

/// Marks `columns` done.
pub async fn finish(
    client: &impl tokio_postgres::GenericClient,
    table: &TablePlan,
    columns: &[String],
) -> Result<(), MigrateError> {
    client
        .execute(
            "UPDATE pgseal.migration SET done = true, updated_at = now() \
             WHERE schema_name = $1 AND table_name = $2 AND column_name = ANY($3)",
            &[&table.schema, &table.table, &columns],
        )
        .await
        .map_err(|e| MigrateError::db(format!("saving {}'s progress", table.qualified), &e))?;
    Ok(())
}

/// Sends a column back to its first row for `operation` (another pass over an envelope
/// column).
pub async fn restart(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
    operation: Operation,
) -> Result<(), MigrateError> {
    client
        .execute(
            "UPDATE pgseal.migration SET operation = $4, last_key = NULL, done = false, \
             updated_at = now() \
             WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
            &[
                &table.schema,
                &table.table,
                &column_column(column),
                &operation.name(),
            ],
        )
        .await
        .map_err(|e| MigrateError::db(format!("saving {}'s progress", column.name), &e))?;
    Ok(())
}

/// The unquoted names of columns, as the store keys them.
pub fn names(columns: &[&ColumnPlan]) -> Vec<String> {
    columns.iter().map(|c| column_column(c)).collect()
}
