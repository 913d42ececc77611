//! Checking a policy against a database's catalog: every sealed column exists with a storage
//! type that fits its mode, every named role exists, and which login roles the policy leaves to
//! the default class.
//!
//! The catalog comes in as plain data ([`Catalog`]); reading it from PostgreSQL is the caller's
//! job (`pgseal policy check --database-url` does it), so this crate stays free of SQL clients.

use std::collections::{HashMap, HashSet};

use crate::ident::{quote_identifier, quote_qualified};
use crate::model::SealMode;
use crate::policy::CompiledPolicy;
use crate::source::Diagnostic;
use crate::types::PlainType;

/// A column as the catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogColumn {
    /// `pg_namespace.nspname`.
    pub schema: String,
    /// `pg_class.relname`.
    pub table: String,
    /// `pg_attribute.attname`.
    pub column: String,
    /// The storage type as `format_type(atttypid, atttypmod)` prints it
    /// (`character varying(15)`, `text`, `bytea`).
    pub storage_type: String,
}

/// A role as `pg_roles` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogRole {
    /// `rolname`.
    pub name: String,
    /// `rolcanlogin`.
    pub can_login: bool,
}

/// What a database holds, as far as a policy is concerned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The columns of the tables, views and materialized views in the database.
    pub columns: Vec<CatalogColumn>,
    /// The cluster's roles.
    pub roles: Vec<CatalogRole>,
}

/// The outcome of [`check_catalog`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogReport {
    /// Mismatches that make the policy wrong for this database, pointing into the policy file.
    pub problems: Vec<Diagnostic>,
    /// Facts worth knowing that are not errors (roles the policy does not name…).
    pub notes: Vec<String>,
}

/// True when ciphertext (an armored envelope or raw bytes) can be stored in a column of this
/// catalog type: `text`, `bytea`, or `varchar` without a length.
pub fn holds_ciphertext(storage_type: &str) -> bool {
    matches!(
        PlainType::parse(storage_type),
        Ok(PlainType::Text | PlainType::Bytea | PlainType::Varchar(None))
    )
}

/// Checks a compiled policy against a catalog.
pub fn check_catalog(policy: &CompiledPolicy, catalog: &Catalog) -> CatalogReport {
    let mut report = CatalogReport::default();
    let problem = |location, message: String| Diagnostic {
        file: policy.file().to_owned(),
        location: Some(location),
        message,
    };

    let mut storage: HashMap<(&str, &str, &str), &str> = HashMap::new();
    let mut tables: HashSet<(&str, &str)> = HashSet::new();
    for c in &catalog.columns {
        storage.insert(
            (c.schema.as_str(), c.table.as_str(), c.column.as_str()),
            c.storage_type.as_str(),
        );
        tables.insert((c.schema.as_str(), c.table.as_str()));
    }
    for column in policy.columns() {
        let name = column.qualified_name();
        let key = (
            column.schema.as_str(),
            column.table.as_str(),
            column.column.as_str(),
        );
        let Some(stored) = storage.get(&key) else {
            let why = if tables.contains(&(key.0, key.1)) {
                format!(
                    "sealed column {name} does not exist in the database (table {} has no column {})",
                    quote_qualified(&[key.0, key.1]),
                    quote_identifier(key.2)
                )
            } else {
                format!(
                    "sealed column {name} does not exist in the database (no table {})",
                    quote_qualified(&[key.0, key.1])
                )
            };
            report.problems.push(problem(column.declared_at, why));
            continue;
        };
        let fits = if column.mode.is_token() {
            PlainType::parse(stored).is_ok_and(|t| t == column.plain_type)
        } else {
            holds_ciphertext(stored)
        };
        if !fits {
            let needs = match column.mode {
                SealMode::Randomized | SealMode::Deterministic => {
                    "ciphertext needs text or bytea storage".to_owned()
                }
                SealMode::Pseudonym => "pseudonyms need text or bytea storage".to_owned(),
                _ => format!(
                    "tokens keep the declared type, so it must be stored as {}",
                    column.plain_type.sql_name()
                ),
            };
            report.problems.push(problem(
                column.declared_at,
                format!(
                    "sealed column {name} ({}) is stored as {stored}: {needs}",
                    column.mode
                ),
            ));
        }
    }

    let roles: HashMap<&str, &CatalogRole> =
        catalog.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut named = HashSet::new();
    for class in policy.classes() {
        for member in &class.members {
            named.insert(member.role.as_str());
            match roles.get(member.role.as_str()) {
                None => report.problems.push(problem(
                    member.declared_at,
                    format!(
                        "role {} (class {}) does not exist in the database",
                        quote_identifier(&member.role),
                        class.name
                    ),
                )),
                Some(role) if !role.can_login => report.notes.push(format!(
                    "role {} (class {}) cannot log in: pgseal gives a session the class of the \
                     role it authenticates as",
                    quote_identifier(&member.role),
                    class.name
                )),
                Some(_) => {}
            }
        }
    }
    // In file order, like the policy's own diagnostics.
    report.problems.sort_by_key(|p| p.location);
    let default = policy.class(crate::ClassId::DEFAULT);
    let default_view = default.views.first().map_or("ciphertext", |v| v.name());
    let mut unnamed: Vec<&str> = catalog
        .roles
        .iter()
        .filter(|r| r.can_login && !r.name.starts_with("pg_") && !named.contains(r.name.as_str()))
        .map(|r| r.name.as_str())
        .collect();
    unnamed.sort_unstable();
    for role in unnamed {
        report.notes.push(format!(
            "login role {} is in no class: it sees sealed columns as {default_view} and gets the \
             default budget",
            quote_identifier(role)
        ));
    }
    report
}
