//! The plan: from the policy, the keyring, the catalog and the saved progress, what each sealed
//! column needs — a storage type change, a pass over its rows (from the start or resumed after
//! a key), or nothing — and the errors that must stop the migration before it changes anything
//! (missing tables and columns, tables without a single-column primary key, columns not marked
//! `migrating`, another operation half done, a column whose policy mode or key domain differs
//! from what the progress store recorded, a column PostgreSQL fills itself).

use std::fmt::Write as _;

use pgseal_keys::Keyring;
use pgseal_policies::catalog::holds_ciphertext;
use pgseal_policies::ident::quote_qualified;
use pgseal_policies::{CompiledPolicy, PlainType, SealMode, SealedColumn};

use super::progress::{self, ColumnState};
use super::{MigrateError, Operation};
use crate::protect::column::{ColumnCrypto, Storage};

/// What one column needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// A pass over its rows.
    Run {
        /// Resume after this primary key (text form), or start from the first row.
        after: Option<String>,
        /// The key version values are read under (tokens and pseudonyms; 0 when the envelope
        /// says it).
        from_version: u32,
        /// The key version values are written under (0 for plaintext).
        key_version: u32,
    },
    /// Nothing: why.
    Nothing(String),
}

/// One sealed column in the plan.
pub struct ColumnPlan {
    /// `schema.table.column`.
    pub name: String,
    /// The column's name in its table.
    pub column: String,
    /// The same, quoted for SQL.
    pub ident: String,
    /// Its mode.
    pub mode: SealMode,
    /// Its key-derivation domain.
    pub domain: String,
    /// Its declared (plaintext) type.
    pub plain_type: PlainType,
    /// Its storage type now, as `format_type` writes it (a domain's base type).
    pub storage_type: String,
    /// Its type now as the table declares it (a domain by its name).
    pub column_type: String,
    /// How values are stored once the type change (if any) is made.
    pub storage: Storage,
    /// The type the encryption changes it to first, if it cannot hold ciphertext.
    pub type_change: Option<String>,
    /// Its type before `encrypt` changed it, as `format_type` writes it (a domain by its
    /// name): now, when a type change is planned, else as the progress store recorded it.
    /// `decrypt` gives it back.
    pub original_type: Option<String>,
    /// Keys to read values with (tokens under the version they were made with).
    pub crypto: ColumnCrypto,
    /// Keys to write values with (tokens under the version they are remade with).
    pub target: ColumnCrypto,
    /// What the column needs.
    pub work: Work,
    /// Whether the policy marks it `migrating` (pgseal then reads both forms of an envelope
    /// column, and refuses a tokenized one).
    pub marked: bool,
}

/// One sealed table in the plan.
pub struct TablePlan {
    /// `schema.table`, as messages name it.
    pub qualified: String,
    /// `"schema"."table"`, for SQL.
    pub sql: String,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// The primary key column, quoted for SQL.
    pub key: String,
    /// The primary key column's name, as messages show it.
    pub key_name: String,
    /// The primary key's type, as `format_type` writes it.
    pub key_type: String,
    /// Rows in the table when planned.
    pub rows: i64,
    /// Its sealed columns.
    pub columns: Vec<ColumnPlan>,
}

/// What a migration will do.
pub struct MigrationPlan {
    /// The operation.
    pub operation: Operation,
    /// The sealed tables, in policy order.
    pub tables: Vec<TablePlan>,
    /// Things the operator must know (irreversible pseudonyms, versions to retire…).
    pub notes: Vec<String>,
}

impl MigrationPlan {
    /// The plan as text, as `--dry-run` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pgseal migrate {}: plan", self.operation.name());
        for table in &self.tables {
            let _ = writeln!(
                out,
                "table {} ({} rows, primary key {} {})",
                table.qualified, table.rows, table.key_name, table.key_type
            );
            for column in &table.columns {
                let mut line = format!("  {} ({}): ", column.name, column.mode.name());
                if let Some(target) = &column.type_change {
                    let _ = write!(line, "type {} → {}; ", column.storage_type, target);
                }
                match &column.work {
                    Work::Run { after: None, .. } => line.push_str("rewrite every row"),
                    Work::Run {
                        after: Some(key), ..
                    } => {
                        let _ = write!(line, "resume after {} = {key}", table.key);
                    }
                    Work::Nothing(why) => line.push_str(why),
                }
                if self.operation == Operation::Encrypt && column.crypto.has_marker() {
                    line.push_str("; then CHECK pgseal.is_sealed");
                }
                if self.operation == Operation::Decrypt {
                    if let Some(target) = super::types::restore_target(column) {
                        let _ = write!(line, "; then type {} → {target}", column.storage_type);
                    }
                }
                let _ = writeln!(out, "{line}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// The primary key columns of a table, and whether it exists.
pub(crate) const KEY_SQL: &str = "\
SELECT c.oid IS NOT NULL,
       coalesce(array_agg(a.attname::text ORDER BY k.ord) FILTER (WHERE a.attname IS NOT NULL), '{}'),
       coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord)
                FILTER (WHERE a.attname IS NOT NULL), '{}')
FROM (SELECT $1::text AS nspname, $2::text AS relname) want
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = want.nspname
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = want.relname
     AND c.relkind IN ('r', 'p')
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
LEFT JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
     ON k.ord <= i.indnkeyatts
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
GROUP BY c.oid";

/// A column's storage type (a domain's base type for domain-typed columns), its type as
/// declared, and whether PostgreSQL fills it itself.
const COLUMN_SQL: &str = "\
SELECT CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END,
       format_type(a.atttypid, a.atttypmod),
       CASE WHEN a.attgenerated <> '' THEN 'a generation expression (GENERATED ALWAYS AS)'
            WHEN a.attidentity <> '' THEN 'an identity (GENERATED AS IDENTITY)'
            WHEN a.atthasdef THEN 'a DEFAULT'
            WHEN EXISTS (
                WITH RECURSIVE chain(oid) AS (
                    SELECT a.atttypid
                    UNION ALL
                    SELECT d.typbasetype FROM pg_catalog.pg_type d JOIN chain ON d.oid = chain.oid
                    WHERE d.typtype = 'd')
                SELECT FROM chain JOIN pg_catalog.pg_type d ON d.oid = chain.oid
                WHERE d.typtype = 'd' AND d.typdefaultbin IS NOT NULL)
            THEN 'a DEFAULT from its domain ' || format_type(a.atttypid, NULL) END
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0
  AND NOT a.attisdropped";

/// Reads the catalog and the saved progress and decides what every sealed column needs.
pub async fn plan(
    client: &tokio_postgres::Client,
    policy: &CompiledPolicy,
    keyring: &Keyring,
    operation: Operation,
) -> Result<MigrationPlan, MigrateError> {
    let states = progress::load(client).await?;
    if let Some(orphan) = progress::orphans(client).await?.into_iter().next() {
        return Err(orphan);
    }
    let mut tables = Vec::new();
    let mut notes = Vec::new();
    for sealed in policy.tables() {
        let qualified = quote_qualified(&[&sealed.schema, &sealed.table]);
        let row = client
            .query_one(KEY_SQL, &[&sealed.schema, &sealed.table])
            .await
            .map_err(|e| MigrateError::db(format!("reading {qualified}'s primary key"), &e))?;
        let exists: bool = row.get(0);
        let keys: Vec<String> = row.get(1);
        let key_types: Vec<String> = row.get(2);
        if !exists {
            return Err(MigrateError::MissingTable { table: qualified });
        }
        let (key_name, key_type) = match (keys.as_slice(), key_types.as_slice()) {
            ([], _) => return Err(MigrateError::NoPrimaryKey { table: qualified }),
            ([key], [ty]) => (key.clone(), ty.clone()),
            _ => {
                return Err(MigrateError::CompositeKey {
                    table: qualified,
                    count: keys.len(),
                });
            }
        };
        // Batches walk the primary key: rewriting it would move rows under the walk (and break
        // the foreign keys that point at it).
        if let Some(id) = sealed
            .columns
            .iter()
            .find(|id| policy.column(**id).column == key_name)
        {
            return Err(MigrateError::SealedKey {
                column: policy.column(*id).qualified_name(),
            });
        }
        let sql = format!(
            "{}.{}",
            super::sql_ident(&sealed.schema),
            super::sql_ident(&sealed.table)
        );
        let children: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhparent = $1::text::regclass)",
                &[&sql],
            )
            .await
            .map_err(|e| MigrateError::db(format!("reading {qualified}'s children"), &e))?
            .get(0);
        if children {
            return Err(MigrateError::HasChildren { table: qualified });
        }
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {sql}"), &[])
            .await
            .map_err(|e| MigrateError::db(format!("counting the rows of {qualified}"), &e))?
            .get(0);
        let mut columns = Vec::new();
        for id in &sealed.columns {
            let column = policy.column(*id);
            let found = client
                .query_opt(COLUMN_SQL, &[&column.schema, &column.table, &column.column])
                .await
                .map_err(|e| {
                    MigrateError::db(format!("reading {}'s type", column.qualified_name()), &e)
                })?
                .ok_or_else(|| MigrateError::MissingColumn {
                    column: column.qualified_name(),
                })?;
            let found = FoundColumn {
                storage_type: found.get(0),
                declared_type: found.get(1),
                filled_by_server: found.get(2),
            };
            let state = states.get(&(
                column.schema.clone(),
                column.table.clone(),
                column.column.clone(),
            ));
            columns.push(plan_column(
                column, found, state, keyring, operation, &mut notes,
            )?);
        }
        tables.push(TablePlan {
            qualified,
            sql,
            key: super::sql_ident(&key_name),
            key_name,
            schema: sealed.schema.clone(),
            table: sealed.table.clone(),
            key_type,
            rows,
            columns,
        });
    }
    let planned: Vec<(String, String)> = tables
        .iter()
        .map(|t| (t.schema.clone(), t.table.clone()))
        .collect();
    if let Some(stranded) = super::unique_indexes::stranded(client, &planned).await? {
        return Err(stranded);
    }
    Ok(MigrationPlan {
        operation,
        tables,
        notes,
    })
}

/// The column's keys as the migrator uses them: never refusing (the proxy refuses a tokenized
/// column marked `migrating`; the migrator is what it waits for), tokens under `token_version`
/// when given.
fn crypto(
    column: &SealedColumn,
    keyring: &Keyring,
    token_version: Option<u32>,
) -> Result<ColumnCrypto, MigrateError> {
    let keys_error = |problem| MigrateError::Keys {
        column: column.qualified_name(),
        problem,
    };
    let mut unmarked = column.clone();
    unmarked.migrating = false;
    let crypto = ColumnCrypto::new(&unmarked, keyring).map_err(keys_error)?;
    match token_version {
        Some(v) if v != crypto.token_version() => crypto.with_token_version(v).map_err(keys_error),
        _ => Ok(crypto),
    }
}

/// What the catalog says of a sealed column.
struct FoundColumn {
    /// Its storage type (a domain's base type).
    storage_type: String,
    /// Its type as declared (a domain by its name).
    declared_type: String,
    /// What makes PostgreSQL write values of its own into it, if anything.
    filled_by_server: Option<String>,
}

/// Refuses a column whose policy mode or key domain is not the one its migration recorded:
/// its stored values are under the recorded ones, and reading them (or resuming) under others
/// would make garbage of tokens. A column opened by a finished `decrypt` holds plaintext, so
/// any policy may seal it again.
fn check_recorded(column: &SealedColumn, state: Option<&ColumnState>) -> Result<(), MigrateError> {
    let Some(state) = state else { return Ok(()) };
    if state.operation == Operation::Decrypt && state.done {
        return Ok(());
    }
    let mode_changed = state
        .mode
        .as_deref()
        .is_some_and(|m| m != column.mode.name());
    let domain_changed = state.domain.as_ref().is_some_and(|d| *d != column.domain);
    if mode_changed || domain_changed {
        return Err(MigrateError::PolicyChanged {
            column: column.qualified_name(),
            recorded: format!(
                "{} in key domain {}",
                state.mode.as_deref().unwrap_or(column.mode.name()),
                state.domain.as_deref().unwrap_or(&column.domain)
            ),
            now: format!("{} in key domain {}", column.mode.name(), column.domain),
            operation: state.operation.name(),
        });
    }
    Ok(())
}

fn plan_column(
    column: &SealedColumn,
    found: FoundColumn,
    state: Option<&ColumnState>,
    keyring: &Keyring,
    operation: Operation,
    notes: &mut Vec<String>,
) -> Result<ColumnPlan, MigrateError> {
    let name = column.qualified_name();
    check_recorded(column, state)?;
    let FoundColumn {
        storage_type,
        declared_type,
        filled_by_server,
    } = found;
    let marker = matches!(column.mode, SealMode::Randomized | SealMode::Deterministic);
    let storage = if storage_type == "bytea" {
        Storage::Bytea
    } else {
        Storage::Text
    };
    let type_change = (operation == Operation::Encrypt
        && !column.mode.is_token()
        && !holds_ciphertext(&storage_type))
    .then(|| "text".to_string());
    let original_type = if type_change.is_some() {
        Some(declared_type.clone())
    } else {
        state.and_then(|s| s.original_type.clone())
    };
    let base = crypto(column, keyring, None)?;
    let default_token = base.token_version();
    let active = keyring.active_version();
    let unfinished = |state: &ColumnState| MigrateError::Unfinished {
        column: name.clone(),
        unfinished: state.operation.name(),
        last: match &state.last_key {
            Some(key) => format!("stopped after key {key}"),
            None => "no batch committed".into(),
        },
    };
    let not_marked = || MigrateError::NotMarked {
        column: name.clone(),
        operation: operation.name(),
    };
    // The version tokens are under now, as far as the progress knows.
    let sealed_version = match state {
        Some(s) if s.done && s.operation != Operation::Decrypt => s.key_version,
        _ => default_token,
    };

    let (work, read_version, write_version) = match operation {
        Operation::Encrypt => {
            let work = match state {
                Some(s) if s.operation == Operation::Encrypt && !s.done => Work::Run {
                    after: s.last_key.clone(),
                    from_version: 0,
                    key_version: s.key_version,
                },
                Some(s) if s.done && s.operation != Operation::Decrypt => {
                    Work::Nothing(format!("already sealed ({} done)", s.operation.name()))
                }
                Some(s) if !s.done && !marker => return Err(unfinished(s)),
                // Tokens and pseudonyms cannot be told from plaintext: without a record of a
                // migration and without the mark that says it holds plaintext, the column is
                // taken as sealed (it may have been filled through pgseal from the start), never
                // tokenized again.
                None if !marker && !column.migrating => {
                    notes.push(format!(
                        "{name}: no migration of this {} column is on record and it is not \
                         marked `migrating`: taken as already sealed; if it holds plaintext, \
                         mark it and run encrypt again",
                        column.mode.name()
                    ));
                    Work::Nothing("taken as sealed (not marked, no record)".into())
                }
                _ => Work::Run {
                    after: None,
                    from_version: 0,
                    key_version: if marker { active } else { default_token },
                },
            };
            let version = match &work {
                Work::Run { key_version, .. } => *key_version,
                Work::Nothing(_) => sealed_version,
            };
            (work, None, Some(version).filter(|_| !marker))
        }
        Operation::Rotate => {
            if column.mode == SealMode::Pseudonym {
                notes.push(format!(
                    "{name}: pseudonyms cannot be remade (their plaintext is gone); they stay \
                     under key version {sealed_version}, and new ones are made under the oldest \
                     readable version, so keep that version until the column is dropped"
                ));
                (
                    Work::Nothing("pseudonyms stay as they are".into()),
                    None,
                    None,
                )
            } else if marker {
                let after = match state {
                    Some(s)
                        if s.operation == Operation::Rotate
                            && !s.done
                            && s.key_version == active =>
                    {
                        s.last_key.clone()
                    }
                    Some(s) if s.operation != Operation::Rotate && !s.done => {
                        return Err(unfinished(s));
                    }
                    _ => None,
                };
                (
                    Work::Run {
                        after,
                        from_version: 0,
                        key_version: active,
                    },
                    None,
                    None,
                )
            } else {
                match state {
                    Some(s)
                        if !s.done
                            && s.operation == Operation::Rotate
                            && s.key_version == active =>
                    {
                        (
                            Work::Run {
                                after: s.last_key.clone(),
                                from_version: s.from_version,
                                key_version: active,
                            },
                            Some(s.from_version),
                            Some(active),
                        )
                    }
                    Some(s) if !s.done => return Err(unfinished(s)),
                    Some(s) if s.operation == Operation::Decrypt => {
                        return Err(MigrateError::NotSealed {
                            column: name.clone(),
                            why: "pgseal migrate decrypt opened it".into(),
                        });
                    }
                    _ if sealed_version == active => (
                        Work::Nothing(format!("tokens already under key version {active}")),
                        Some(active),
                        Some(active),
                    ),
                    _ => {
                        notes.push(format!(
                            "{name}: tokens are remade under key version {active}; pgseal reads \
                             tokens under the oldest readable version, so retire every version \
                             below {active} (`pgseal keys retire --version N`, from version \
                             {sealed_version} up) and restart pgseal before removing the \
                             column's `migrating` mark (new pseudonyms are then made under \
                             version {active} too)"
                        ));
                        (
                            Work::Run {
                                after: None,
                                from_version: sealed_version,
                                key_version: active,
                            },
                            Some(sealed_version),
                            Some(active),
                        )
                    }
                }
            }
        }
        Operation::Decrypt => {
            if column.mode == SealMode::Pseudonym {
                notes.push(format!(
                    "{name}: pseudonyms are irreversible and stay as they are; drop or replace \
                     the column yourself"
                ));
                (
                    Work::Nothing("pseudonyms cannot be opened".into()),
                    None,
                    None,
                )
            } else {
                let work = match state {
                    Some(s) if s.operation == Operation::Decrypt && !s.done => Work::Run {
                        after: s.last_key.clone(),
                        from_version: s.from_version,
                        key_version: 0,
                    },
                    Some(s) if s.operation == Operation::Decrypt => {
                        Work::Nothing("already opened (decrypt done)".into())
                    }
                    Some(s) if !s.done && !marker => return Err(unfinished(s)),
                    _ => Work::Run {
                        after: None,
                        from_version: sealed_version,
                        key_version: 0,
                    },
                };
                let from = match &work {
                    Work::Run { from_version, .. } => *from_version,
                    Work::Nothing(_) => sealed_version,
                };
                (work, Some(from).filter(|_| !marker), None)
            }
        }
    };
    // Tokens and pseudonyms cannot be told from plaintext: pgseal must refuse the column while
    // it changes. Envelopes being re-sealed are read by pgseal under any readable version.
    let needs_mark = matches!(work, Work::Run { .. })
        && (operation != Operation::Rotate || !marker)
        && !column.migrating;
    if needs_mark {
        return Err(not_marked());
    }
    if let Some(filler) = filled_by_server
        .filter(|_| operation == Operation::Encrypt && matches!(work, Work::Run { .. }))
    {
        return Err(MigrateError::FilledByServer {
            column: name,
            filler,
        });
    }
    let read = crypto(column, keyring, read_version)?;
    let target = crypto(column, keyring, write_version)?;
    Ok(ColumnPlan {
        ident: super::sql_ident(&column.column),
        column: column.column.clone(),
        name,
        mode: column.mode,
        domain: column.domain.clone(),
        plain_type: column.plain_type,
        storage_type,
        column_type: declared_type,
        storage,
        type_change,
        original_type,
        crypto: read,
        target,
        work,
        marked: column.migrating,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::values::transform;

    const POLICY: &str = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
migrating = true

[columns."public.patients.birth_date"]
mode = "randomized"
type = "date"
migrating = true

[columns."public.patients.last_name"]
mode = "deterministic"
type = "text"
"#;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::from_toml("t.toml", POLICY).unwrap_or_else(|e| panic!("{e}"))
    }

    fn column<'a>(policy: &'a CompiledPolicy, name: &str) -> &'a SealedColumn {
        let id = policy.column_id("public", "patients", name).unwrap();
        policy.column(id)
    }

    fn planned(
        policy: &CompiledPolicy,
        keyring: &Keyring,
        name: &str,
        storage: &str,
        state: Option<&ColumnState>,
        operation: Operation,
    ) -> Result<ColumnPlan, MigrateError> {
        let mut notes = Vec::new();
        plan_column(
            column(policy, name),
            FoundColumn {
                storage_type: storage.into(),
                declared_type: storage.into(),
                filled_by_server: None,
            },
            state,
            keyring,
            operation,
            &mut notes,
        )
    }

    fn state(
        operation: Operation,
        key_version: u32,
        last: Option<&str>,
        done: bool,
    ) -> ColumnState {
        ColumnState {
            operation,
            from_version: 0,
            key_version,
            last_key: last.map(str::to_string),
            done,
            mode: None,
            domain: None,
            original_type: None,
        }
    }

    #[test]
    fn encrypt_changes_types_where_needed_resumes_and_refuses_unmarked_columns() {
        let policy = policy();
        let keyring = pgseal_keys::KeyringFile::generate().unwrap().into_keyring();
        let birth = planned(
            &policy,
            &keyring,
            "birth_date",
            "date",
            None,
            Operation::Encrypt,
        )
        .unwrap();
        assert_eq!(birth.type_change.as_deref(), Some("text"));
        let nir = planned(
            &policy,
            &keyring,
            "nir",
            "character varying(15)",
            Some(&state(Operation::Encrypt, 1, Some("42"), false)),
            Operation::Encrypt,
        )
        .unwrap();
        assert_eq!(nir.type_change, None, "tokens keep their type");
        assert!(matches!(nir.work, Work::Run { after: Some(ref k), .. } if k == "42"));
        let done = planned(
            &policy,
            &keyring,
            "nir",
            "character varying(15)",
            Some(&state(Operation::Encrypt, 1, Some("99"), true)),
            Operation::Encrypt,
        )
        .unwrap();
        assert!(matches!(done.work, Work::Nothing(_)));
        let half_decrypted = planned(
            &policy,
            &keyring,
            "nir",
            "character varying(15)",
            Some(&state(Operation::Decrypt, 0, Some("7"), false)),
            Operation::Encrypt,
        );
        assert!(matches!(
            half_decrypted,
            Err(MigrateError::Unfinished { .. })
        ));
        let unmarked = planned(
            &policy,
            &keyring,
            "last_name",
            "text",
            None,
            Operation::Encrypt,
        );
        assert!(matches!(unmarked, Err(MigrateError::NotMarked { .. })));
    }

    #[test]
    fn a_policy_that_no_longer_says_what_was_recorded_is_refused_until_decrypt_finished() {
        let policy = policy();
        let nir = column(&policy, "nir");
        let mut recorded = state(Operation::Encrypt, 1, Some("42"), false);
        recorded.mode = Some("tokenize-digits".into());
        recorded.domain = Some(nir.domain.clone());
        let refused = check_recorded(nir, Some(&recorded)).unwrap_err();
        assert!(
            refused.to_string().contains(
                "recorded it as tokenize-digits in key domain public.patients.nir, but the \
                 policy now says tokenize-nir in key domain public.patients.nir"
            ),
            "{refused}"
        );
        recorded.mode = Some("tokenize-nir".into());
        recorded.domain = Some("elsewhere".into());
        assert!(check_recorded(nir, Some(&recorded)).is_err());
        recorded.domain = Some(nir.domain.clone());
        assert!(check_recorded(nir, Some(&recorded)).is_ok());
        // Opened back to plaintext: any policy may seal it again; an old store records nothing.
        let mut opened = state(Operation::Decrypt, 0, Some("99"), true);
        opened.mode = Some("randomized".into());
        assert!(check_recorded(nir, Some(&opened)).is_ok());
        assert!(check_recorded(nir, Some(&state(Operation::Encrypt, 1, None, false))).is_ok());
    }

    #[test]
    fn values_seal_once_reseal_under_the_active_version_and_open_back() {
        let policy = policy();
        let mut file = pgseal_keys::KeyringFile::generate().unwrap();
        let v1 = pgseal_keys::KeyringFile::from_toml_str(&file.to_toml())
            .unwrap()
            .into_keyring();
        let birth = planned(&policy, &v1, "birth_date", "text", None, Operation::Encrypt).unwrap();
        let sealed = transform(Operation::Encrypt, &birth, "1976-04-20")
            .unwrap()
            .unwrap();
        assert!(sealed.starts_with("pgs1:"));
        assert_eq!(
            transform(Operation::Encrypt, &birth, &sealed).unwrap(),
            None
        );

        file.rotate().unwrap();
        let v2 = file.into_keyring();
        let rotate = planned(&policy, &v2, "birth_date", "text", None, Operation::Rotate).unwrap();
        let resealed = transform(Operation::Rotate, &rotate, &sealed)
            .unwrap()
            .unwrap();
        assert_ne!(resealed, sealed);
        assert_eq!(
            transform(Operation::Rotate, &rotate, &resealed).unwrap(),
            None
        );
        assert!(transform(Operation::Rotate, &rotate, "1976-04-20").is_err());

        let decrypt =
            planned(&policy, &v2, "birth_date", "text", None, Operation::Decrypt).unwrap();
        assert_eq!(
            transform(Operation::Decrypt, &decrypt, &resealed)
                .unwrap()
                .as_deref(),
            Some("1976-04-20")
        );
        assert_eq!(
            transform(Operation::Decrypt, &decrypt, "1976-04-20").unwrap(),
            None
        );
        assert!(transform(Operation::Encrypt, &birth, "not a date").is_err());
    }
}
