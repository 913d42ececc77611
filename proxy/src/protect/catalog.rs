//! Where result columns come from: a per-database map from (table OID, attribute number) to
//! the policy's sealed columns, so that RowDescription's column origins — never the SELECT
//! list — decide what a value is.
//!
//! It is filled without extra credentials, by a catalog query pgseal sends on a session's own
//! connection while the server is idle (before the client's first statement, and again after
//! DDL), and shared by every session on the same database.

use crate::evaluate::collation::TextOrder;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pgseal_policies::{ColumnId, CompiledPolicy};

use super::column::Storage;
use crate::evaluate::unaccent::{PROBED_RANGES, UnaccentRules};

/// A sealed column as the catalog placed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedField {
    /// The policy's column.
    pub column: ColumnId,
    /// How the database stores it.
    pub storage: Storage,
}

/// A sealed table's columns, in table order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableColumns {
    /// Column names in attribute-number order (dropped columns left out).
    pub names: Vec<String>,
    /// For each of them, the sealed column it is, if any.
    pub sealed: Vec<Option<SealedField>>,
}

/// The catalog of one database, as of one load.
#[derive(Debug, Default)]
pub struct DatabaseCatalog {
    /// Bumped by every load; sessions compare it to know theirs is stale.
    pub generation: u64,
    by_origin: HashMap<(u32, i16), SealedField>,
    by_name: HashMap<(String, String), TableColumns>,
    storage: HashMap<ColumnId, Storage>,
    /// Views that read sealed tables (directly or through other views), as (schema, name).
    dependent_views: Vec<(String, String)>,
    /// The OIDs of sealed tables: rows with a column from one count against export budgets,
    /// whether that column is sealed or not.
    sealed_tables: std::collections::HashSet<u32>,
    /// The database's default collation, as `pg_database` gives it.
    pub collation: Option<Collation>,
    /// How text orders and folds case in it (or why pgseal cannot tell), from `collation`.
    text_order: Option<Result<Arc<TextOrder>, String>>,
    /// The validated `pgseal_search_*` CHECK constraints of sealed tables, by (schema, table,
    /// constraint name): their definitions say which search indexes are complete.
    search_checks: HashMap<(String, String, String), String>,
    /// Whether the load asked for the `unaccent` dictionary's rules (the first load of a
    /// database does; later ones keep what it found).
    unaccent_loaded: bool,
    /// The rules of the database's `unaccent` dictionary (`None`: it has none).
    unaccent: Option<Arc<UnaccentRules>>,
    /// Set once a newer catalog of the database replaces it, DDL invalidates it, or it outlives
    /// the age [`CatalogCache::store`] was given: sessions holding it then load the current
    /// one. A flag rather than a load time compared with the clock, because it is read before
    /// every statement.
    superseded: AtomicBool,
}

/// A database's default collation: what orders and compares its text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collation {
    /// `datlocprovider`: `c` (libc) or `i` (ICU); `c` before PostgreSQL 15.
    pub provider: String,
    /// `datcollate`.
    pub collate: String,
    /// `datctype` (what `lower`/`upper` and `ILIKE` fold by, under libc).
    pub ctype: String,
    /// `daticulocale` (PostgreSQL 15, 16) or `datlocale` (17+), for ICU.
    pub icu_locale: Option<String>,
}

impl DatabaseCatalog {
    /// Whether it is still its database's current catalog: loaded, and neither replaced,
    /// invalidated nor aged out since (search indexes completed by `pgseal migrate` on another
    /// connection are noticed by aging out).
    pub fn is_current(&self) -> bool {
        self.generation != 0 && !self.superseded.load(Ordering::Acquire)
    }

    /// How text orders and folds case in this database, for what pgseal evaluates itself.
    pub fn text_order(&self) -> Result<Arc<TextOrder>, String> {
        match &self.text_order {
            Some(order) => order.clone(),
            None => Err("its collation is not known yet".into()),
        }
    }

    /// The rules of the database's `unaccent` dictionary, when it has one.
    pub fn unaccent(&self) -> Option<Arc<UnaccentRules>> {
        self.unaccent.clone()
    }

    /// Whether the `unaccent` rules were loaded (a load need not ask for them again).
    pub fn unaccent_loaded(&self) -> bool {
        self.unaccent_loaded
    }

    /// The sealed column at a RowDescription origin, if it is one.
    #[inline]
    pub fn origin(&self, table_oid: u32, attnum: i16) -> Option<SealedField> {
        if table_oid == 0 {
            return None;
        }
        self.by_origin.get(&(table_oid, attnum)).copied()
    }

    /// The columns of a sealed table, by name.
    pub fn table(&self, schema: &str, table: &str) -> Option<&TableColumns> {
        self.by_name.get(&(schema.to_string(), table.to_string()))
    }

    /// Whether a RowDescription origin is a column of a sealed table (sealed or not).
    #[inline]
    pub fn is_sealed_table(&self, table_oid: u32) -> bool {
        table_oid != 0 && self.sealed_tables.contains(&table_oid)
    }

    /// How the database stores a sealed column (text when the catalog does not know it: the
    /// storage pgseal's examples and migrator use).
    pub fn storage(&self, column: ColumnId) -> Storage {
        self.storage.get(&column).copied().unwrap_or(Storage::Text)
    }

    /// The first view reading sealed tables that a statement's identifiers name, as
    /// `schema.view` (a bare name counts as any schema's view of that name: fail closed).
    pub fn dependent_view_in(&self, identifiers: &[Vec<String>]) -> Option<String> {
        for name in identifiers {
            for (i, part) in name.iter().enumerate() {
                for (schema, view) in &self.dependent_views {
                    if part == view && (i == 0 || &name[i - 1] == schema) {
                        return Some(format!("{schema}.{view}"));
                    }
                }
            }
        }
        None
    }

    /// The definition of a validated `pgseal_search_*` CHECK constraint of a sealed table.
    pub fn search_check(&self, schema: &str, table: &str, name: &str) -> Option<&str> {
        self.search_checks
            .get(&(schema.to_string(), table.to_string(), name.to_string()))
            .map(String::as_str)
    }

    /// Whether the catalog knows any sealed column (false before the first load).
    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty()
    }
}

/// The catalog query for a policy's sealed tables. Its rows are
/// `(table oid, schema, table, attnum, column, storage type name)`.
pub fn query(policy: &CompiledPolicy, with_unaccent: bool) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let tables: Vec<String> = policy
        .tables()
        .iter()
        .map(|t| format!("({}, {})", quote(&t.schema), quote(&t.table)))
        .collect();
    let filter = if tables.is_empty() {
        "(NULL, NULL)".to_string()
    } else {
        tables.join(", ")
    };
    // The visible `unaccent` dictionary (how many) and its rules, as a JSON object of what it
    // makes of each character of the ranges its rules may cover (-4).
    let unaccent = if with_unaccent {
        let ranges: Vec<String> = PROBED_RANGES
            .iter()
            .map(|(lo, hi)| format!("({lo}, {hi})"))
            .collect();
        format!(
            " UNION ALL \
             SELECT NULL, NULL, NULL, -4, \
               (SELECT pg_catalog.count(*)::text FROM pg_catalog.pg_ts_dict d \
                WHERE d.dictname = 'unaccent' AND pg_catalog.pg_ts_dict_is_visible(d.oid)), \
               (SELECT pg_catalog.jsonb_object_agg(pg_catalog.chr(cp), \
                  pg_catalog.array_to_string(l, ''))::text \
                FROM pg_catalog.pg_ts_dict d \
                CROSS JOIN (VALUES {}) r(lo, hi) \
                CROSS JOIN LATERAL pg_catalog.generate_series(r.lo, r.hi) cp \
                CROSS JOIN LATERAL pg_catalog.ts_lexize(d.oid::pg_catalog.regdictionary, \
                  pg_catalog.chr(cp)) l \
                WHERE d.dictname = 'unaccent' AND pg_catalog.pg_ts_dict_is_visible(d.oid) \
                  AND l IS NOT NULL)",
            ranges.join(", ")
        )
    } else {
        String::new()
    };
    // Sealed tables' columns, then (attnum -1) every view that reads them, however deep, the
    // database's collation (-2), the validated CHECKs of complete search indexes (-3) and the
    // unaccent rules (-4).
    format!(
        "WITH RECURSIVE sealed AS (\
           SELECT c.oid FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           WHERE c.relkind IN ('r', 'p') AND (n.nspname, c.relname) IN (VALUES {filter})), \
         readers(oid) AS (\
           SELECT oid FROM sealed \
           UNION \
           SELECT r.ev_class FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
           JOIN readers ON readers.oid = d.refobjid \
           WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) \
         SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, t.typname::text \
         FROM sealed s JOIN pg_catalog.pg_class c ON c.oid = s.oid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         UNION ALL \
         SELECT v.oid, n.nspname, v.relname, -1, NULL, NULL \
         FROM readers JOIN pg_catalog.pg_class v ON v.oid = readers.oid \
         JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
         WHERE v.oid NOT IN (SELECT oid FROM sealed) \
         UNION ALL \
         SELECT NULL, pg_catalog.to_jsonb(d) ->> 'datlocprovider', d.datcollate::text, -2, \
           coalesce(pg_catalog.to_jsonb(d) ->> 'daticulocale', pg_catalog.to_jsonb(d) ->> 'datlocale'), d.datctype::text \
         FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database() \
         UNION ALL \
         SELECT c.oid, n.nspname, c.relname, -3, k.conname, pg_catalog.pg_get_constraintdef(k.oid) \
         FROM sealed s JOIN pg_catalog.pg_class c ON c.oid = s.oid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_constraint k ON k.conrelid = c.oid AND k.contype = 'c' \
           AND k.convalidated AND k.conname LIKE 'pgseal\\_search\\_%'{unaccent} \
         ORDER BY 1, 4"
    )
}

/// Builds a catalog from the catalog query's rows (text values).
pub fn build(
    policy: &CompiledPolicy,
    rows: &[Vec<Option<String>>],
    generation: u64,
) -> DatabaseCatalog {
    let mut catalog = DatabaseCatalog {
        generation,
        ..DatabaseCatalog::default()
    };
    for row in rows {
        let field = |i: usize| row.get(i).and_then(|v| v.as_deref());
        if field(3) == Some("-4") {
            catalog.unaccent_loaded = true;
            catalog.unaccent = match (field(4), field(5)) {
                (Some(count), rules) if count != "0" => match rules {
                    None => Some(Arc::new(UnaccentRules::default())),
                    Some(json) => UnaccentRules::from_json(json).map(Arc::new),
                },
                _ => None,
            };
            continue;
        }
        if let (Some(collate), Some("-2")) = (field(2), field(3)) {
            let ctype = field(5).unwrap_or(collate);
            let provider = field(1).unwrap_or("c");
            catalog.text_order = Some(
                TextOrder::from_catalog(provider, collate, ctype, field(4))
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
            );
        }
        if let (Some(collate), Some("-2")) = (field(2), field(3)) {
            catalog.collation = Some(Collation {
                provider: field(1).unwrap_or("c").to_string(),
                collate: collate.to_string(),
                icu_locale: field(4).map(str::to_string),
                ctype: field(5).unwrap_or(collate).to_string(),
            });
            continue;
        }
        if let (Some(schema), Some(table), Some("-3"), Some(name), Some(def)) =
            (field(1), field(2), field(3), field(4), field(5))
        {
            catalog.search_checks.insert(
                (schema.to_string(), table.to_string(), name.to_string()),
                def.to_string(),
            );
            continue;
        }
        if let (Some(schema), Some(view), Some("-1")) = (field(1), field(2), field(3)) {
            catalog
                .dependent_views
                .push((schema.to_string(), view.to_string()));
            continue;
        }
        let (Some(oid), Some(schema), Some(table), Some(attnum), Some(column), Some(typname)) =
            (field(0), field(1), field(2), field(3), field(4), field(5))
        else {
            continue;
        };
        let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<i16>()) else {
            continue;
        };
        catalog.sealed_tables.insert(oid);
        let storage = if typname == "bytea" {
            Storage::Bytea
        } else {
            Storage::Text
        };
        let sealed = policy
            .column_id(schema, table, column)
            .map(|id| SealedField {
                column: id,
                storage,
            });
        if let Some(sealed) = sealed {
            catalog.by_origin.insert((oid, attnum), sealed);
            catalog.storage.insert(sealed.column, storage);
        }
        let entry = catalog
            .by_name
            .entry((schema.to_string(), table.to_string()))
            .or_default();
        entry.names.push(column.to_string());
        entry.sealed.push(sealed);
    }
    catalog
}

/// The catalogs of every database pgseal serves, shared by its sessions.
#[derive(Default)]
pub struct CatalogCache {
    databases: Mutex<HashMap<String, Arc<DatabaseCatalog>>>,
    generations: AtomicU64,
}

impl CatalogCache {
    /// The current catalog of `database` (empty until a session loads it).
    pub fn get(&self, database: &str) -> Arc<DatabaseCatalog> {
        let databases = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        databases.get(database).cloned().unwrap_or_default()
    }

    /// A fresh generation number for a load about to start.
    pub fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Stores a newly loaded catalog, unless a newer one is already there. With `max_age`, the
    /// stored catalog ages out that long after (a timer on the calling tokio runtime marks it
    /// superseded; outside a runtime, it does not age).
    pub fn store(
        &self,
        database: &str,
        catalog: DatabaseCatalog,
        max_age: Option<std::time::Duration>,
    ) -> Arc<DatabaseCatalog> {
        let mut databases = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        let current = databases.get(database);
        if let Some(current) = current
            && current.generation > catalog.generation
        {
            return Arc::clone(current);
        }
        let mut catalog = catalog;
        if !catalog.unaccent_loaded
            && let Some(current) = current
            && current.unaccent_loaded
        {
            catalog.unaccent_loaded = true;
            catalog.unaccent = current.unaccent.clone();
        }
        let catalog = Arc::new(catalog);
        if let Some(replaced) = databases.insert(database.to_string(), Arc::clone(&catalog)) {
            replaced.superseded.store(true, Ordering::Release);
        }
        drop(databases);
        if let Some(age) = max_age
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let aging = Arc::downgrade(&catalog);
            runtime.spawn(async move {
                crate::timer::sleep(age).await;
                if let Some(catalog) = aging.upgrade() {
                    catalog.superseded.store(true, Ordering::Release);
                }
            });
        }
        catalog
    }

    /// Marks `database`'s catalog stale (after DDL), so the next idle session reloads it.
    pub fn invalidate(&self, database: &str) {
        let mut databases = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stale) = databases.remove(database) {
            stale.superseded.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn loaded(generation: u64) -> DatabaseCatalog {
        DatabaseCatalog {
            generation,
            ..DatabaseCatalog::default()
        }
    }

    #[test]
    fn a_catalog_stops_being_current_when_replaced_or_invalidated() {
        let cache = CatalogCache::default();
        assert!(!cache.get("h").is_current(), "never loaded");
        let first = cache.store("h", loaded(1), None);
        assert!(first.is_current());
        // An older load finishing late does not replace the newer one.
        let second = cache.store("h", loaded(3), None);
        assert!(Arc::ptr_eq(&cache.store("h", loaded(2), None), &second));
        assert!(!first.is_current() && second.is_current());
        cache.invalidate("h");
        assert!(!second.is_current());
    }

    #[tokio::test(start_paused = true)]
    async fn a_catalog_given_an_age_ages_out() {
        let cache = CatalogCache::default();
        let aging = cache.store("h", loaded(1), Some(Duration::from_secs(30)));
        let lasting = cache.store("other", loaded(2), None);
        crate::timer::sleep(Duration::from_secs(29)).await;
        assert!(aging.is_current());
        crate::timer::sleep(Duration::from_secs(2)).await;
        assert!(!aging.is_current(), "aged out after 30 s");
        assert!(lasting.is_current(), "no age, no aging");
    }
}
