//! Field protection: what pgseal does to the values of sealed columns — sealing on the way
//! in, opening and rendering each role's view on the way out — and the shared state it needs
//! (the policy, every sealed column's keys, the catalog of each database, cached analyses).

pub mod catalog;
pub mod column;
pub mod date_settings;
pub mod datetime;
pub mod datetime_style;
pub mod numeric;
pub mod set;
pub mod values;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgseal_keys::Keyring;
use pgseal_policies::{ColumnId, CompiledPolicy};
use thiserror::Error;

use crate::analyze::{self, Analysis, AnalyzeError};
use catalog::CatalogCache;
use column::ColumnCrypto;

/// What pgseal does with statements it cannot analyse that mention no sealed table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unanalysable {
    /// Forward them, unless they may run server-side code (`$` quoting, `DO`, functions):
    /// they name no sealed table, but dynamic SQL could reach one.
    Forward,
    /// Refuse them too (the default: fail closed).
    #[default]
    Refuse,
}

/// Why protection could not be set up.
#[derive(Debug, Error)]
pub enum ProtectionError {
    /// A sealed column's keys could not be derived.
    #[error("keys for {column}: {source}")]
    Keys {
        /// The column.
        column: String,
        /// Why.
        source: pgseal_keys::Error,
    },
}

/// How long a database's catalog is trusted when the policy has search indexes: an index that
/// `pgseal migrate index` completes (on its own connection) is used from the next load on.
const SEARCH_CATALOG_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// How many distinct statement texts keep their analysis before the cache starts over.
const ANALYSIS_CACHE_LIMIT: usize = 4096;

/// The most bytes of statement text the analysis cache keeps (statements may be as long as
/// `--max-message-size`): past it, the cache starts over.
const ANALYSIS_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Analyses by statement text, bounded in entries and in bytes of text.
#[derive(Default)]
struct AnalysisCache {
    analyses: HashMap<String, Arc<Result<Analysis, AnalyzeError>>>,
    bytes: usize,
}

impl AnalysisCache {
    fn get(&self, sql: &str) -> Option<Arc<Result<Analysis, AnalyzeError>>> {
        self.analyses.get(sql).cloned()
    }

    /// Keeps an analysis; applications use a bounded set of statement texts, and one that
    /// generates texts without end (literals inlined) only makes the cache start over.
    fn insert(&mut self, sql: &str, analysis: Arc<Result<Analysis, AnalyzeError>>) {
        if self.analyses.len() >= ANALYSIS_CACHE_LIMIT
            || self.bytes.saturating_add(sql.len()) > ANALYSIS_CACHE_BYTES
        {
            self.analyses.clear();
            self.bytes = 0;
        }
        if self.analyses.insert(sql.to_string(), analysis).is_none() {
            self.bytes += sql.len();
        }
    }
}

/// The protection shared by every session of a proxy.
pub struct Protection {
    /// The compiled policy.
    pub policy: Arc<CompiledPolicy>,
    columns: Vec<ColumnCrypto>,
    /// Each database's catalog.
    pub catalogs: CatalogCache,
    analyses: Mutex<AnalysisCache>,
    /// Simple-protocol texts known to need nothing of pgseal, by shape (numbers masked).
    pub inert: crate::session::protected::InertTexts,
    /// See [`Protection::catalog_max_age`].
    catalog_max_age: Option<std::time::Duration>,
    /// What to do with statements that cannot be analysed and mention no sealed table.
    pub unanalysable: Unanalysable,
    /// Every account's export budget.
    pub budgets: crate::budget::Budgets,
    /// The audit trail, when one is configured.
    pub audit: Option<crate::audit::AuditLog>,
    /// The proxy's metrics.
    pub metrics: Arc<crate::admin::Metrics>,
    /// How much a statement pgseal filters or sorts itself may hold and scan.
    pub evaluation_caps: crate::evaluate::rows::Caps,
    /// A digest of what it was loaded from (the policy file's bytes, the keyring's, the
    /// settings that change planning): two protections with one digest protect alike, so a
    /// reload that leaves a database's digest as it was asks nothing of its sessions.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Protection {
    /// Names the policy only: never keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("policy", &self.policy.file())
            .finish_non_exhaustive()
    }
}

impl Protection {
    /// Derives every sealed column's keys.
    pub fn new(
        policy: CompiledPolicy,
        keyring: &Keyring,
        unanalysable: Unanalysable,
    ) -> Result<Self, ProtectionError> {
        let columns = policy
            .columns()
            .iter()
            .map(|column| {
                ColumnCrypto::new(column, keyring).map_err(|source| ProtectionError::Keys {
                    column: column.qualified_name(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let policy = Arc::new(policy);
        let catalog_max_age = columns
            .iter()
            .any(|c| c.index().is_some())
            .then_some(SEARCH_CATALOG_MAX_AGE);
        Ok(Protection {
            catalog_max_age,
            budgets: crate::budget::Budgets::in_memory(
                Arc::clone(&policy),
                crate::budget::MonotonicClock::shared(),
            ),
            audit: None,
            metrics: Arc::new(crate::admin::Metrics::new()),
            policy,
            columns,
            catalogs: CatalogCache::default(),
            analyses: Mutex::new(AnalysisCache::default()),
            inert: Default::default(),
            unanalysable,
            evaluation_caps: crate::evaluate::rows::Caps::default(),
            digest: [0; 32],
        })
    }

    /// A sealed column's keys.
    pub fn column(&self, id: ColumnId) -> &ColumnCrypto {
        &self.columns[id.index()]
    }

    /// How long a loaded catalog is trusted (`None`: until DDL through pgseal invalidates it).
    /// Only a policy with search indexes reloads on age: their completion is in the catalog.
    pub fn catalog_max_age(&self) -> Option<std::time::Duration> {
        self.catalog_max_age
    }

    /// A column's search index, when it is complete in this database: its
    /// `pgseal_search_<column>` CHECK is validated and requires the tag of this policy's
    /// settings and keys, so every stored value carries the tokens pgseal would compute.
    pub fn complete_index(
        &self,
        catalog: &catalog::DatabaseCatalog,
        id: ColumnId,
    ) -> Option<&column::ColumnIndex> {
        let index = self.column(id).index()?;
        if catalog.storage(id) != column::Storage::Text {
            return None;
        }
        let sealed = self.policy.column(id);
        let definition = catalog.search_check(&sealed.schema, &sealed.table, &index.constraint)?;
        definition
            .contains(&format!("'{}'", index.tag))
            .then_some(index)
    }

    /// The refusal for a statement touching `columns` when one of them cannot be served while
    /// `pgseal migrate` runs (a tokenized or pseudonym column marked `migrating`).
    pub fn migration_refusal(
        &self,
        columns: impl IntoIterator<Item = ColumnId>,
    ) -> Option<column::ProtectError> {
        columns
            .into_iter()
            .find_map(|id| self.column(id).migration_refusal())
    }

    /// The analysis of a statement text, from the cache or freshly made.
    pub fn analyze(&self, sql: &str) -> Arc<Result<Analysis, AnalyzeError>> {
        {
            let cache = self.analyses.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = cache.get(sql) {
                return found;
            }
        }
        let analysis = Arc::new(analyze::analyze(sql, &self.policy));
        self.analyses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql, Arc::clone(&analysis));
        analysis
    }
}

#[cfg(test)]
mod analysis_cache_tests {
    use super::*;

    fn analysis() -> Arc<Result<Analysis, AnalyzeError>> {
        Arc::new(Ok(Analysis {
            statements: Vec::new(),
        }))
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_bytes() {
        let mut cache = AnalysisCache::default();
        let long = "x".repeat(ANALYSIS_CACHE_BYTES / 3);
        for n in 0..2 {
            cache.insert(&format!("{n}{long}"), analysis());
        }
        assert_eq!(cache.analyses.len(), 2);
        // A third would pass the bound: the cache starts over with it.
        cache.insert(&format!("2{long}"), analysis());
        assert_eq!(cache.analyses.len(), 1);
        assert!(cache.bytes <= ANALYSIS_CACHE_BYTES);
        // One text longer than the bound is kept alone.
        let huge = "y".repeat(ANALYSIS_CACHE_BYTES + 1);
        cache.insert(&huge, analysis());
        assert_eq!(cache.analyses.len(), 1);
        assert!(cache.get(&huge).is_some());
        // The same text again counts once.
        cache.insert("SELECT 1", analysis());
        cache.insert("SELECT 1", analysis());
        assert_eq!(cache.bytes, "SELECT 1".len());
    }

    #[test]
    fn the_cache_keeps_a_bounded_number_of_texts() {
        let mut cache = AnalysisCache::default();
        for n in 0..=ANALYSIS_CACHE_LIMIT {
            cache.insert(&format!("SELECT {n}"), analysis());
        }
        assert_eq!(cache.analyses.len(), 1);
        assert!(
            cache
                .get(&format!("SELECT {ANALYSIS_CACHE_LIMIT}"))
                .is_some()
        );
    }
}
