//! The guard left on a sealed column: `pgseal.is_sealed(text)` and `pgseal.is_sealed(bytea)`,
//! two small SQL functions that tell an envelope's shape (no key needed; an armor may carry
//! search tokens after a `~`), and a CHECK constraint
//! `pgseal_sealed_<column>` on every fully sealed randomized or deterministic column, so a write
//! that bypasses pgseal cannot store plaintext there. `migrate decrypt` drops it first.
//!
//! The constraint is added `NOT VALID` (a brief lock) and then validated (a scan that lets the
//! application read and write meanwhile).

use super::sql_ident;
use pgseal_keys::envelope::{FORMAT_VERSION, MAGIC, OVERHEAD};

use super::MigrateError;
use super::plan::{ColumnPlan, TablePlan};
use super::types::ddl;

/// The functions' definitions, from the envelope layout of `pgseal-keys`.
fn functions_sql() -> String {
    // The armor encodes the envelope after its magic and format byte, in unpadded base64.
    let body = OVERHEAD - MAGIC.len() - 1;
    let min_chars = (body * 4).div_ceil(3);
    let head: String = MAGIC
        .iter()
        .chain(std::iter::once(&FORMAT_VERSION))
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE OR REPLACE FUNCTION pgseal.is_sealed(value text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $f$ SELECT value ~ '^pgs1:[A-Za-z0-9_-]{{{min_chars},}}(~[A-Za-z0-9_-]+~([A-Za-z0-9_-]+([.][A-Za-z0-9_-]+)*)?)?$' $f$;
CREATE OR REPLACE FUNCTION pgseal.is_sealed(value bytea) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $f$ SELECT length(value) >= {OVERHEAD} AND substring(value FROM 1 FOR 4) = '\\x{head}'::bytea $f$;
COMMENT ON FUNCTION pgseal.is_sealed(text) IS 'pgseal: whether a value has the shape of an armored envelope';
COMMENT ON FUNCTION pgseal.is_sealed(bytea) IS 'pgseal: whether a value has the shape of a binary envelope';"
    )
}

/// Creates (or updates) `pgseal.is_sealed`.
pub async fn install_functions(client: &tokio_postgres::Client) -> Result<(), MigrateError> {
    client
        .batch_execute(&functions_sql())
        .await
        .map_err(|e| MigrateError::db("creating pgseal.is_sealed", &e))
}

/// The constraint's name: `pgseal_sealed_<column>`; a name longer than PostgreSQL's 63 bytes
/// is cut and ends with a hash of the column's name, so two long names never collide.
pub fn name(column: &ColumnPlan) -> String {
    named("pgseal_sealed_", &column.column)
}

/// `prefix` then the column's name, cut to PostgreSQL's 63 bytes as [`name`] does.
pub fn named(prefix: &str, column: &str) -> String {
    let name = format!("{prefix}{column}");
    if name.len() <= 63 {
        return name;
    }
    let hash = format!("{:016x}", crate::audit::fnv1a(column.as_bytes()));
    let mut cut = name;
    while cut.len() > 63 - 1 - hash.len() {
        cut.pop();
    }
    format!("{cut}_{hash}")
}

/// Whether the constraint exists, and whether it is validated.
async fn state(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
) -> Result<Option<bool>, MigrateError> {
    client
        .query_opt(
            "SELECT convalidated FROM pg_catalog.pg_constraint \
             WHERE conrelid = $1::text::regclass AND conname = $2",
            &[&table.sql, &name(column)],
        )
        .await
        .map(|row| row.map(|r| r.get(0)))
        .map_err(|e| MigrateError::db(format!("looking for {}'s constraint", column.name), &e))
}

/// Whether the column's constraint is there and validated (so it holds no plaintext).
pub async fn is_validated(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
) -> Result<bool, MigrateError> {
    Ok(state(client, table, column).await? == Some(true))
}

/// Adds and validates the constraint on a fully sealed column; false when it was there.
pub async fn add(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
) -> Result<bool, MigrateError> {
    let constraint = sql_ident(&name(column));
    let existed = match state(client, table, column).await? {
        Some(true) => return Ok(false),
        Some(false) => true,
        None => {
            ddl(
                client,
                &format!(
                    "ALTER TABLE {} ADD CONSTRAINT {constraint} CHECK (pgseal.is_sealed({})) NOT VALID",
                    table.sql, column.ident
                ),
                &format!("adding a CHECK constraint on {}", column.name),
            )
            .await?;
            false
        }
    };
    ddl(
        client,
        &format!("ALTER TABLE {} VALIDATE CONSTRAINT {constraint}", table.sql),
        &format!("validating the CHECK constraint on {}", column.name),
    )
    .await?;
    Ok(!existed)
}

/// Drops the constraint if it is there; true when it was.
pub async fn drop(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    column: &ColumnPlan,
) -> Result<bool, MigrateError> {
    if state(client, table, column).await?.is_none() {
        return Ok(false);
    }
    ddl(
        client,
        &format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            table.sql,
            sql_ident(&name(column))
        ),
        &format!("dropping the CHECK constraint on {}", column.name),
    )
    .await?;
    Ok(true)
}

/// How many values of each envelope column of `columns` are sealed (`sealed`) or not, in one
/// scan of the table.
pub async fn count(
    client: &tokio_postgres::Client,
    table: &TablePlan,
    columns: &[&ColumnPlan],
    sealed: bool,
) -> Result<Vec<i64>, MigrateError> {
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let not = if sealed { "" } else { "NOT " };
    let counts: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "count(*) FILTER (WHERE {c} IS NOT NULL AND {not}pgseal.is_sealed({c}))",
                c = c.ident
            )
        })
        .collect();
    let row = client
        .query_one(
            &format!("SELECT {} FROM {}", counts.join(", "), table.sql),
            &[],
        )
        .await
        .map_err(|e| MigrateError::db(format!("counting the forms of {}", table.qualified), &e))?;
    Ok((0..columns.len()).map(|i| row.get(i)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_functions_follow_the_envelope_layout() {
        let sql = functions_sql();
        assert!(sql.contains("'\\x70677301'::bytea"), "{sql}");
        assert!(
            sql.contains(&format!("length(value) >= {OVERHEAD}")),
            "{sql}"
        );
        // 37 bytes after the magic and format byte: 50 base64 characters at least.
        assert!(sql.contains("{50,}"), "{sql}");
    }
}
