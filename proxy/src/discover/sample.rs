//! Reading what discovery judges: the ordinary tables of non-system schemas, their columns
//! with type and keys from the catalog, and a bounded sample of each table's rows as text.
//!
//! Everything runs in one `READ ONLY` transaction with a `statement_timeout` and a
//! `lock_timeout`, so discovery takes no lock beyond a SELECT's and never waits long behind
//! one. A table's sample is `LIMIT N` rows (through `TABLESAMPLE SYSTEM` when the table is much
//! larger than N), each value cast to text and cut to [`MAX_VALUE_CHARS`] characters.

use super::DiscoverError;

/// The longest text read of one value: enough to judge it, bounded whatever the column holds.
pub const MAX_VALUE_CHARS: usize = 4096;

/// One column of a table, with its sampled values.
#[derive(Debug, Clone, Default)]
pub struct ColumnSample {
    /// The column's name.
    pub name: String,
    /// Its type as `format_type` prints it (a domain's base type for domain-typed columns).
    pub storage_type: String,
    /// A character type: its content is judged.
    pub text_like: bool,
    /// A date or timestamp type.
    pub date_like: bool,
    /// An integer or numeric type.
    pub numeric: bool,
    /// What the schema says of it as a key.
    pub keys: Keys,
    /// The sampled non-null values, as text (empty for columns not sampled).
    pub values: Vec<String>,
    /// The sampled row of each value (same length as `values`): values of one table with the
    /// same row index come from the same row.
    pub rows: Vec<u32>,
    /// Sampled rows where it is null.
    pub nulls: usize,
    /// Sampled values that could not be read as text.
    pub unreadable: usize,
}

/// What the schema says of a column as a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keys {
    /// The column alone is the primary key.
    pub primary: bool,
    /// A unique index or constraint is on the column alone.
    pub unique: bool,
    /// The column is part of a foreign key, referencing or referenced.
    pub foreign: bool,
    /// An index starts with the column: it is looked up by value.
    pub indexed: bool,
}

/// One table and its sampled columns.
#[derive(Debug, Clone, Default)]
pub struct TableSample {
    /// The schema's name.
    pub schema: String,
    /// The table's name.
    pub table: String,
    /// The planner's estimate of the table's rows (0 when never analysed).
    pub estimated_rows: f64,
    /// Rows sampled.
    pub rows: usize,
    /// Its columns, in order.
    pub columns: Vec<ColumnSample>,
    /// Why its rows could not be sampled (no privilege, the statement timeout): its columns
    /// are then judged by name alone.
    pub unread: Option<String>,
}

/// Starts discovery's transaction: `READ ONLY`, with `statement_timeout_ms`, a 5 s
/// `lock_timeout` and ISO dates. Discovery never commits it: drop it or roll it back.
pub async fn begin(
    client: &mut tokio_postgres::Client,
    statement_timeout_ms: u64,
) -> Result<tokio_postgres::Transaction<'_>, DiscoverError> {
    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| DiscoverError::db("starting a read-only transaction", &e))?;
    transaction
        .batch_execute(&format!(
            "SET LOCAL statement_timeout = {statement_timeout_ms}; \
             SET LOCAL lock_timeout = 5000; SET LOCAL DateStyle = ISO"
        ))
        .await
        .map_err(|e| DiscoverError::db("setting the transaction's timeouts", &e))?;
    Ok(transaction)
}

/// Reads the catalog and samples up to `sample_rows` rows of every ordinary table, inside
/// discovery's transaction (see [`begin`]).
pub async fn sample_database(
    transaction: &mut tokio_postgres::Transaction<'_>,
    sample_rows: u32,
) -> Result<Vec<TableSample>, DiscoverError> {
    let mut tables = read_catalog(transaction).await?;
    for table in &mut tables {
        // A table that cannot be read does not stop the others: its savepoint is rolled back.
        let mut savepoint = transaction
            .savepoint("pgseal_discover")
            .await
            .map_err(|e| DiscoverError::db("setting a savepoint", &e))?;
        match sample_table(&mut savepoint, table, sample_rows).await {
            Ok(()) => savepoint
                .commit()
                .await
                .map_err(|e| DiscoverError::db("releasing a savepoint", &e))?,
            Err(why) => {
                table.unread = Some(why.to_string());
                for column in &mut table.columns {
                    column.values.clear();
                    column.rows.clear();
                    column.nulls = 0;
                    column.unreadable = 0;
                }
                table.rows = 0;
                savepoint
                    .rollback()
                    .await
                    .map_err(|e| DiscoverError::db("rolling back a savepoint", &e))?;
            }
        }
    }
    Ok(tables)
}

/// Reads the columns of every ordinary table (and partitioned table, partitions left out) in
/// schemas other than PostgreSQL's own and pgseal's, with the table's estimated row count.
async fn read_catalog(
    transaction: &tokio_postgres::Transaction<'_>,
) -> Result<Vec<TableSample>, DiscoverError> {
    let rows = transaction
        .query(CATALOG_SQL, &[])
        .await
        .map_err(|e| DiscoverError::db("reading the catalog", &e))?;
    let mut tables: Vec<TableSample> = Vec::new();
    for row in rows {
        let read = |i: usize| -> Result<String, DiscoverError> {
            row.try_get::<_, String>(i)
                .map_err(|e| DiscoverError::db("reading the catalog", &e))
        };
        let flag = |i: usize| row.try_get::<_, bool>(i).unwrap_or(false);
        let (schema, table) = (read(0)?, read(1)?);
        let estimated_rows = row.try_get::<_, f64>(9).unwrap_or(0.0);
        let category = row.try_get::<_, String>(4).unwrap_or_default();
        let storage_type = read(3)?;
        let column = ColumnSample {
            name: read(2)?,
            text_like: category == "S",
            date_like: category == "D",
            numeric: category == "N",
            storage_type,
            keys: Keys {
                primary: flag(5),
                unique: flag(6),
                foreign: flag(7),
                indexed: flag(8),
            },
            ..ColumnSample::default()
        };
        match tables.last_mut() {
            Some(last) if last.schema == schema && last.table == table => {
                last.columns.push(column);
            }
            _ => tables.push(TableSample {
                schema,
                table,
                estimated_rows,
                rows: 0,
                columns: vec![column],
                unread: None,
            }),
        }
    }
    Ok(tables)
}

/// Whether discovery samples a column's values: character and date columns, and numeric ones
/// that may hold a NIR.
pub fn sampled(column: &ColumnSample) -> bool {
    column.text_like || column.date_like || may_hold_nir(column)
}

/// Whether a numeric column is wide enough to hold a NIR as a number (`bigint`, `numeric`).
pub fn may_hold_nir(column: &ColumnSample) -> bool {
    column.numeric
        && (column.storage_type == "bigint" || column.storage_type.starts_with("numeric"))
}

/// Samples a table's character and date columns, and the numeric ones that may hold a NIR
/// (the others are judged by name and keys).
async fn sample_table(
    transaction: &mut tokio_postgres::Transaction<'_>,
    table: &mut TableSample,
    sample_rows: u32,
) -> Result<(), DiscoverError> {
    let sampled: Vec<usize> = (0..table.columns.len())
        .filter(|&i| sampled(&table.columns[i]))
        .collect();
    if sampled.is_empty() {
        return Ok(());
    }
    let qualified = qualified_table(table);
    let tablesample = tablesample(table.estimated_rows, sample_rows);
    let list = sampled
        .iter()
        .map(|&i| as_text(None, &table.columns[i].name))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = transaction
        .query(
            &format!("SELECT {list} FROM {qualified}{tablesample} LIMIT {sample_rows}"),
            &[],
        )
        .await
        .map_err(|e| DiscoverError::db(format!("sampling {qualified}"), &e))?;
    table.rows = rows.len();
    for (at, row) in rows.iter().enumerate() {
        let at = u32::try_from(at).unwrap_or(u32::MAX);
        for (position, &i) in sampled.iter().enumerate() {
            let column = &mut table.columns[i];
            match row.try_get::<_, Option<String>>(position) {
                Ok(Some(value)) => {
                    column.values.push(value);
                    column.rows.push(at);
                }
                Ok(None) => column.nulls += 1,
                Err(_) => column.unreadable += 1,
            }
        }
    }
    Ok(())
}

/// `"schema"."table"` of a sampled table, for SQL.
pub fn qualified_table(table: &TableSample) -> String {
    format!("{}.{}", sql_ident(&table.schema), sql_ident(&table.table))
}

/// The `TABLESAMPLE` clause reading about twice `sample_rows` rows from random pages of a table
/// estimated far larger than the sample, and nothing otherwise.
pub fn tablesample(estimated_rows: f64, sample_rows: u32) -> String {
    if estimated_rows > 10.0 * f64::from(sample_rows) {
        let percent = (200.0 * f64::from(sample_rows) / estimated_rows).clamp(0.0001, 100.0);
        format!(" TABLESAMPLE SYSTEM ({percent:.4})")
    } else {
        String::new()
    }
}

/// A column read as text, cut to [`MAX_VALUE_CHARS`] characters (of the table aliased `alias`).
pub fn as_text(alias: Option<&str>, column: &str) -> String {
    match alias {
        Some(alias) => format!(
            "left({alias}.{}::text, {MAX_VALUE_CHARS})",
            sql_ident(column)
        ),
        None => format!("left({}::text, {MAX_VALUE_CHARS})", sql_ident(column)),
    }
}

/// An identifier for SQL, always double-quoted.
pub fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Columns of ordinary and partitioned tables outside system schemas (and pgseal's own), with
/// their type, its category, and what the schema says of each as a key.
const CATALOG_SQL: &str = "\
SELECT n.nspname::text, c.relname::text, a.attname::text,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END,
       (SELECT b.typcategory::text FROM pg_catalog.pg_type b
         WHERE b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END),
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1
                  AND i.indkey[0] = a.attnum),
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1
                  AND i.indkey[0] = a.attnum),
       EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                WHERE k.contype = 'f'
                  AND ((k.conrelid = c.oid AND a.attnum = ANY (k.conkey))
                    OR (k.confrelid = c.oid AND a.attnum = ANY (k.confkey)))),
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum),
       greatest(c.reltuples, 0)::float8
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgseal')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname, c.relname, a.attnum";
