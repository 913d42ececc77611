//! The primary-key guard held on a table while its tokens or pseudonyms are rewritten.
//!
//! A pass walks the table in primary-key order and tokens cannot be told from plaintext, so a
//! row whose key moved past the pass's position would be tokenized twice (its value lost) and
//! one that moved behind it would stay plaintext. While such a pass is unfinished, a trigger
//! refuses any UPDATE that changes the table's primary key (SQLSTATE 55000, naming the reason).
//! It is created before the pass's first batch and dropped once the pass is done; a killed run
//! leaves it in place until the run that finishes the pass.

use super::MigrateError;
use super::plan::TablePlan;
use super::types::ddl;

/// The trigger's name (one per table).
pub const TRIGGER: &str = "pgseal_migrate_key_guard";

/// The trigger function, shared by every guarded table.
const FUNCTION_SQL: &str = "\
CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE OR REPLACE FUNCTION pgseal.refuse_key_change() RETURNS trigger
    LANGUAGE plpgsql AS $f$
BEGIN
    RAISE EXCEPTION 'the primary key of %.% cannot change while pgseal migrate rewrites its tokens',
        TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = '55000',
              HINT = 'run pgseal migrate again until it finishes, which removes this trigger '
                     '(pgseal_migrate_key_guard); drop it yourself only if the migration is abandoned';
END
$f$;
COMMENT ON FUNCTION pgseal.refuse_key_change() IS
    'pgseal migrate: refuses primary-key changes while a token pass is unfinished';";

/// Puts the guard on `table` (again, if a killed run left it).
pub async fn install(
    client: &tokio_postgres::Client,
    table: &TablePlan,
) -> Result<(), MigrateError> {
    client
        .batch_execute(FUNCTION_SQL)
        .await
        .map_err(|e| MigrateError::db("creating pgseal.refuse_key_change", &e))?;
    let key = &table.key;
    ddl(
        client,
        &format!(
            "DROP TRIGGER IF EXISTS {TRIGGER} ON {sql}; \
             CREATE TRIGGER {TRIGGER} BEFORE UPDATE OF {key} ON {sql} FOR EACH ROW \
             WHEN (OLD.{key} IS DISTINCT FROM NEW.{key}) \
             EXECUTE FUNCTION pgseal.refuse_key_change()",
            sql = table.sql
        ),
        &format!("guarding {}'s primary key", table.qualified),
    )
    .await
}

/// Takes the guard off `table` if it is there (a run killed after its last token pass left it).
pub async fn remove(
    client: &tokio_postgres::Client,
    table: &TablePlan,
) -> Result<(), MigrateError> {
    let present: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger \
             WHERE tgrelid = $1::text::regclass AND tgname = $2)",
            &[&table.sql, &TRIGGER],
        )
        .await
        .map_err(|e| {
            MigrateError::db(
                format!("looking for {}'s primary-key guard", table.qualified),
                &e,
            )
        })?
        .get(0);
    if !present {
        return Ok(());
    }
    ddl(
        client,
        &format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {}", table.sql),
        &format!("removing {}'s primary-key guard", table.qualified),
    )
    .await
}
