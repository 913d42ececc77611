//! `pgseal migrate index`: builds the search indexes the policy declares, online and resumable.
//!
//! For each randomized column with `search = { … }`, on a table walked by its primary key:
//!
//! 1. `pgseal.is_sealed` is (re)installed, so the envelope CHECK accepts tokens after the armor;
//! 2. a `pgseal_search_<column>` CHECK requiring the index's tag (`split_part(col, '~', 2)`) is
//!    added `NOT VALID` — from then on every write must carry this index's tokens, so a pgseal
//!    still running an older policy is refused rather than leaving rows unindexed (reload every
//!    pgseal with the new policy first). One made with another tag (other settings, another
//!    key version) is dropped first: the proxy stops using that index at once;
//! 3. batches of rows whose value lacks the tag (keyset on the primary key, one transaction
//!    each, rows locked only for their batch) get their tokens: the envelope is kept, what
//!    follows it is remade from the opened value. Rows already stamped are skipped, so a
//!    killed run resumes where it was;
//! 4. a GIN index `pgseal_tokens_<column>` over `string_to_array(split_part(col, '~', 3), '.')`
//!    is built `CONCURRENTLY`, once the rows carry their tokens (an invalid one left by a
//!    killed run is dropped and rebuilt);
//! 5. the CHECK is validated. The proxy uses the index once its catalog shows the validated
//!    CHECK with the tag it computes itself (within 30 s): until then it scans, never missing a
//!    row.

use std::time::Instant;

use pgseal_keys::Keyring;
use pgseal_policies::{CompiledPolicy, SealMode};

use super::{MigrateError, Observer, Options, Report, sql_ident};
use crate::protect::column::ColumnCrypto;

/// One column's index to build.
struct IndexedColumn {
    name: String,
    column: String,
    ident: String,
    crypto: ColumnCrypto,
}

/// Builds every search index of `policy` in the database `client` is connected to (straight
/// to PostgreSQL, as the tables' owner).
pub async fn build(
    client: &mut tokio_postgres::Client,
    policy: &CompiledPolicy,
    keyring: &Keyring,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let mut report = Report::default();
    super::start_session(client, options).await?;
    super::constraints::install_functions(client).await?;
    for table in policy.tables() {
        let columns = indexed_columns(policy, keyring, table)?;
        if columns.is_empty() {
            continue;
        }
        let (qualified, sql) = table_names(table);
        let (key, key_type) = primary_key(client, &table.schema, &table.table, &qualified).await?;
        for column in &columns {
            check_storage(client, &sql, column).await?;
        }
        let mut pending = Vec::new();
        for column in &columns {
            if prepare(client, &sql, column, observer).await? {
                pending.push(column);
            }
        }
        if !pending.is_empty() {
            let rows: i64 = client
                .query_one(&format!("SELECT count(*) FROM {sql}"), &[])
                .await
                .map_err(|e| MigrateError::db(format!("counting the rows of {qualified}"), &e))?
                .get(0);
            observer.table(&qualified, u64::try_from(rows).unwrap_or(0));
            stamp_rows(
                client,
                &sql,
                &qualified,
                &key,
                &key_type,
                &pending,
                options,
                observer,
                &mut report,
            )
            .await?;
        }
        // Built once the rows carry their tokens: a third smaller than one grown while they
        // are stamped.
        for column in &columns {
            ensure_gin(client, &table.schema, &sql, column).await?;
        }
        for column in pending {
            let index = column.crypto.index().ok_or_else(|| no_index(column))?;
            client
                .batch_execute(&format!(
                    "ALTER TABLE {sql} VALIDATE CONSTRAINT {}",
                    sql_ident(&index.constraint)
                ))
                .await
                .map_err(|e| {
                    MigrateError::db(
                        format!(
                            "validating {} on {} (a value without this index's tokens was \
                             written meanwhile, bypassing pgseal or through a pgseal with \
                             another policy; reload every pgseal with this policy and run again)",
                            index.constraint, column.name
                        ),
                        &e,
                    )
                })?;
            observer.note(&format!(
                "{}: search index complete ({}, CHECK {} validated)",
                column.name, index.index_name, index.constraint
            ));
        }
    }
    super::end_session(client).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The randomized columns of `table` that the policy gives a search index, with their keys.
fn indexed_columns(
    policy: &CompiledPolicy,
    keyring: &Keyring,
    table: &pgseal_policies::SealedTable,
) -> Result<Vec<IndexedColumn>, MigrateError> {
    let mut columns = Vec::new();
    for id in &table.columns {
        let column = policy.column(*id);
        if column.search.is_none() || column.mode != SealMode::Randomized {
            continue;
        }
        let crypto = ColumnCrypto::new(column, keyring).map_err(|problem| MigrateError::Keys {
            column: column.qualified_name(),
            problem,
        })?;
        columns.push(IndexedColumn {
            name: column.qualified_name(),
            column: column.column.clone(),
            ident: sql_ident(&column.column),
            crypto,
        });
    }
    Ok(columns)
}

/// A table's name as messages print it (`public.patients`) and as SQL quotes it.
fn table_names(table: &pgseal_policies::SealedTable) -> (String, String) {
    (
        pgseal_policies::ident::quote_qualified(&[&table.schema, &table.table]),
        format!("{}.{}", sql_ident(&table.schema), sql_ident(&table.table)),
    )
}

/// What `build` would do, read in a read-only transaction and changing nothing: for each
/// indexed column, the state of its CHECK and GIN index and how many rows lack its tokens.
/// One line per column.
pub async fn dry_run(
    client: &mut tokio_postgres::Client,
    policy: &CompiledPolicy,
    keyring: &Keyring,
) -> Result<Vec<String>, MigrateError> {
    client
        .batch_execute("BEGIN READ ONLY")
        .await
        .map_err(|e| MigrateError::db("starting a read-only transaction", &e))?;
    let lines = read_plan(client, policy, keyring).await;
    // Ends it whatever happened (the connection is closed after a dry run anyway).
    let _ = client.batch_execute("ROLLBACK").await;
    lines
}

async fn read_plan(
    transaction: &tokio_postgres::Client,
    policy: &CompiledPolicy,
    keyring: &Keyring,
) -> Result<Vec<String>, MigrateError> {
    let mut lines = Vec::new();
    for table in policy.tables() {
        let columns = indexed_columns(policy, keyring, table)?;
        if columns.is_empty() {
            continue;
        }
        let (qualified, sql) = table_names(table);
        primary_key(transaction, &table.schema, &table.table, &qualified).await?;
        for column in &columns {
            check_storage(transaction, &sql, column).await?;
            let index = column.crypto.index().ok_or_else(|| no_index(column))?;
            let check = existing_check(transaction, &sql, &index.constraint).await?;
            let tag_literal = format!("'{}'", index.tag);
            let check = match check {
                None => "to add".to_string(),
                Some((_, definition)) if !definition.contains(&tag_literal) => {
                    "made with other settings or keys: to replace".to_string()
                }
                Some((true, _)) => "validated".to_string(),
                Some((false, _)) => "not valid yet: to validate".to_string(),
            };
            let lacking: i64 = transaction
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {sql} WHERE {col} IS NOT NULL \
                         AND split_part({col}, '~', 2) IS DISTINCT FROM $1",
                        col = column.ident
                    ),
                    &[&index.tag],
                )
                .await
                .map_err(|e| {
                    MigrateError::db(format!("counting {}'s rows to stamp", column.name), &e)
                })?
                .get(0);
            let gin = match super::unique_indexes::validity(
                transaction,
                &table.schema,
                &index.index_name,
                &format!("looking for {}", index.index_name),
            )
            .await?
            {
                Some(true) => "present",
                Some(false) => "invalid: to rebuild",
                None => "to build",
            };
            lines.push(format!(
                "{}: CHECK {} {check}; {lacking} rows to stamp; GIN index {} {gin}",
                column.name, index.constraint, index.index_name
            ));
        }
    }
    Ok(lines)
}

/// Sets a column's search index aside before `decrypt` or `rotate`: its CHECK goes (pgseal
/// then scans; the values `decrypt` writes, and those written under another key version after
/// `keys retire`, have none of its tokens) and, for `decrypt`, its GIN index too. Run
/// `pgseal migrate index` after `rotate` and `keys retire` to build it again. True when
/// something was dropped.
pub async fn set_aside(
    client: &tokio_postgres::Client,
    table: &super::TablePlan,
    column: &super::ColumnPlan,
    drop_index: bool,
) -> Result<bool, MigrateError> {
    let constraint = super::constraints::named("pgseal_search_", &column.column);
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_constraint \
             WHERE conrelid = $1::text::regclass AND conname = $2)",
            &[&table.sql, &constraint],
        )
        .await
        .map_err(|e| MigrateError::db(format!("looking for {constraint}"), &e))?
        .get(0);
    if exists {
        super::types::ddl(
            client,
            &format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                table.sql,
                sql_ident(&constraint)
            ),
            &format!("dropping {constraint}"),
        )
        .await?;
    }
    if !drop_index {
        return Ok(exists);
    }
    let index = super::constraints::named("pgseal_tokens_", &column.column);
    let qualified = format!("{}.{}", sql_ident(&table.schema), sql_ident(&index));
    let had_index: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .map_err(|e| MigrateError::db(format!("looking for {index}"), &e))?
        .get(0);
    if had_index {
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"))
            .await
            .map_err(|e| MigrateError::db(format!("dropping {index}"), &e))?;
    }
    Ok(exists || had_index)
}

fn no_index(column: &IndexedColumn) -> MigrateError {
    MigrateError::Database {
        what: format!("{}: no search index in the policy", column.name),
        message: "internal: the column lost its index".into(),
        code: None,
    }
}

/// The table's single-column primary key and its type.
async fn primary_key(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    qualified: &str,
) -> Result<(String, String), MigrateError> {
    let row = client
        .query_one(super::plan::KEY_SQL, &[&schema, &table])
        .await
        .map_err(|e| MigrateError::db(format!("reading {qualified}'s primary key"), &e))?;
    let exists: bool = row.get(0);
    let keys: Vec<String> = row.get(1);
    let types: Vec<String> = row.get(2);
    if !exists {
        return Err(MigrateError::MissingTable {
            table: qualified.to_string(),
        });
    }
    match (keys.as_slice(), types.as_slice()) {
        ([], _) => Err(MigrateError::NoPrimaryKey {
            table: qualified.to_string(),
        }),
        ([key], [ty]) => Ok((sql_ident(key), ty.clone())),
        _ => Err(MigrateError::CompositeKey {
            table: qualified.to_string(),
            count: keys.len(),
        }),
    }
}

/// Search tokens follow the text armor: the column must be stored as text.
async fn check_storage(
    client: &tokio_postgres::Client,
    sql: &str,
    column: &IndexedColumn,
) -> Result<(), MigrateError> {
    let ty: Option<String> = client
        .query_opt(
            "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1::text::regclass AND attname = $2 AND NOT attisdropped",
            &[&sql, &column.column],
        )
        .await
        .map_err(|e| MigrateError::db(format!("reading {}'s type", column.name), &e))?
        .map(|row| row.get(0));
    match ty.as_deref() {
        None => Err(MigrateError::MissingColumn {
            column: column.name.clone(),
        }),
        Some("text") | Some("character varying") => Ok(()),
        Some(other) => Err(MigrateError::Database {
            what: format!(
                "{}: a search index needs the column stored as text",
                column.name
            ),
            message: format!(
                "it is stored as {other}; run `pgseal migrate encrypt` first (it stores \
                 randomized columns as text)"
            ),
            code: None,
        }),
    }
}

/// A CHECK of the table `sql`, when it exists: whether it is validated, and its definition.
async fn existing_check(
    client: &tokio_postgres::Client,
    sql: &str,
    constraint: &str,
) -> Result<Option<(bool, String)>, MigrateError> {
    Ok(client
        .query_opt(
            "SELECT convalidated, pg_catalog.pg_get_constraintdef(oid) \
             FROM pg_catalog.pg_constraint \
             WHERE conrelid = $1::text::regclass AND conname = $2",
            &[&sql, &constraint],
        )
        .await
        .map_err(|e| MigrateError::db(format!("looking for {constraint}"), &e))?
        .map(|row| (row.get::<_, bool>(0), row.get::<_, String>(1))))
}

/// Puts the CHECK (`NOT VALID`) and the GIN index in place; false when the index is already
/// complete (its CHECK validated with this tag).
async fn prepare(
    client: &tokio_postgres::Client,
    sql: &str,
    column: &IndexedColumn,
    observer: &mut dyn Observer,
) -> Result<bool, MigrateError> {
    let index = column.crypto.index().ok_or_else(|| no_index(column))?;
    let existing = existing_check(client, sql, &index.constraint).await?;
    let tag_literal = format!("'{}'", index.tag);
    let complete = match &existing {
        Some((validated, definition)) if definition.contains(&tag_literal) => *validated,
        Some(_) => {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {sql} DROP CONSTRAINT {}",
                    sql_ident(&index.constraint)
                ))
                .await
                .map_err(|e| MigrateError::db(format!("dropping {}", index.constraint), &e))?;
            observer.note(&format!(
                "{}: search index made with other settings or keys: rebuilding",
                column.name
            ));
            false
        }
        None => false,
    };
    if existing.is_none()
        || !existing
            .as_ref()
            .is_some_and(|(_, d)| d.contains(&tag_literal))
    {
        client
            .batch_execute(&format!(
                "ALTER TABLE {sql} ADD CONSTRAINT {} CHECK ({col} IS NULL OR \
                 split_part({col}, '~', 2) = {tag_literal}) NOT VALID",
                sql_ident(&index.constraint),
                col = column.ident,
            ))
            .await
            .map_err(|e| MigrateError::db(format!("adding {}", index.constraint), &e))?;
    }
    Ok(!complete)
}

/// The GIN index over the tokens, built concurrently (rebuilt when a killed run left it
/// invalid). `schema` is the table's.
async fn ensure_gin(
    client: &tokio_postgres::Client,
    schema: &str,
    sql: &str,
    column: &IndexedColumn,
) -> Result<(), MigrateError> {
    let index = column.crypto.index().ok_or_else(|| no_index(column))?;
    let qualified_index = format!("{}.{}", sql_ident(schema), sql_ident(&index.index_name));
    let valid = super::unique_indexes::validity(
        client,
        schema,
        &index.index_name,
        &format!("looking for {}", index.index_name),
    )
    .await?;
    match valid {
        Some(true) => return Ok(()),
        Some(false) => client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY {qualified_index}"))
            .await
            .map_err(|e| MigrateError::db(format!("dropping {}", index.index_name), &e))?,
        None => {}
    }
    client
        .batch_execute(&format!(
            "CREATE INDEX CONCURRENTLY {} ON {sql} USING gin ({})",
            sql_ident(&index.index_name),
            crate::evaluate::candidates::tokens_sql(&column.ident)
        ))
        .await
        .map_err(|e| MigrateError::db(format!("building {}", index.index_name), &e))
}

/// Stamps every row whose indexed values lack their tag, batch by batch.
#[allow(clippy::too_many_arguments)]
async fn stamp_rows(
    client: &mut tokio_postgres::Client,
    sql: &str,
    qualified: &str,
    key: &str,
    key_type: &str,
    columns: &[&IndexedColumn],
    options: &Options,
    observer: &mut dyn Observer,
    report: &mut Report,
) -> Result<(), MigrateError> {
    let lacking: Vec<String> = columns
        .iter()
        .filter_map(|c| {
            let index = c.crypto.index()?;
            Some(format!(
                "(t.{col} IS NOT NULL AND split_part(t.{col}, '~', 2) IS DISTINCT FROM '{tag}')",
                col = c.ident,
                tag = index.tag
            ))
        })
        .collect();
    let selected: Vec<&str> = columns.iter().map(|c| c.ident.as_str()).collect();
    // Qualified by the table's alias: a bare `ORDER BY id` would sort by the output column
    // `id::text`, as text.
    let select = format!(
        "SELECT t.{key}::text, {cols} FROM {sql} AS t \
         WHERE ($1::text IS NULL OR t.{key} > $1::text::{key_type}) \
         AND ({lacking}) ORDER BY t.{key} LIMIT {limit} FOR UPDATE",
        cols = selected
            .iter()
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        lacking = lacking.join(" OR "),
        limit = options.batch_size,
    );
    let sets: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = v.new{i}", c.ident))
        .collect();
    let guards: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("t.{} IS NOT DISTINCT FROM v.old{i}", c.ident))
        .collect();
    let arrays: Vec<String> = (0..columns.len())
        .map(|i| format!("${}::text[], ${}::text[]", 2 * i + 2, 2 * i + 3))
        .collect();
    let names: Vec<String> = (0..columns.len())
        .map(|i| format!("old{i}, new{i}"))
        .collect();
    let update = format!(
        "UPDATE {sql} AS t SET {sets} FROM unnest($1::text[], {arrays}) AS v(k, {names}) \
         WHERE t.{key} = v.k::{key_type} AND {guards}",
        sets = sets.join(", "),
        arrays = arrays.join(", "),
        names = names.join(", "),
        guards = guards.join(" AND "),
    );
    let mut after: Option<String> = None;
    loop {
        let started = Instant::now();
        let transaction = client
            .transaction()
            .await
            .map_err(|e| MigrateError::db(format!("starting a batch of {qualified}"), &e))?;
        let rows = transaction
            .query(&select, &[&after])
            .await
            .map_err(|e| MigrateError::db(format!("reading a batch of {qualified}"), &e))?;
        if rows.is_empty() {
            break;
        }
        let mut keys = Vec::with_capacity(rows.len());
        let mut olds: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(rows.len()); columns.len()];
        let mut news: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(rows.len()); columns.len()];
        for row in &rows {
            let key_text: String = row.get(0);
            for (i, column) in columns.iter().enumerate() {
                let stored: Option<String> = row.get(i + 1);
                let new = match &stored {
                    Some(value) => match column.crypto.restamp(value) {
                        Ok(Some(new)) => Some(new),
                        Ok(None) => Some(value.clone()),
                        Err(problem) => {
                            return Err(MigrateError::Value {
                                table: qualified.to_string(),
                                key_column: key.to_string(),
                                key: key_text,
                                problem: Box::new(problem),
                            });
                        }
                    },
                    None => None,
                };
                olds[i].push(stored);
                news[i].push(new);
            }
            keys.push(key_text);
        }
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&keys];
        for i in 0..columns.len() {
            params.push(&olds[i]);
            params.push(&news[i]);
        }
        let changed = transaction
            .execute(&update, &params)
            .await
            .map_err(|e| MigrateError::db(format!("stamping a batch of {qualified}"), &e))?;
        transaction
            .commit()
            .await
            .map_err(|e| MigrateError::db(format!("committing a batch of {qualified}"), &e))?;
        report.batches += 1;
        report.rows_scanned += rows.len() as u64;
        report.values_changed += changed;
        report.batch_time += started.elapsed();
        observer.advance(rows.len() as u64);
        after = keys.last().cloned();
    }
    Ok(())
}
