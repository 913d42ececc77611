//! The policies in force, by database, and the switch a reload flips: which [`Protection`] a
//! session on a database gets, what a database no policy names gets, and the generation that
//! sessions compare with their own to notice a reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use pgseal_policies::CompiledPolicy;
use thiserror::Error;

use super::Protection;
use crate::admin::KeyringStatus;

/// What a session on a database that no loaded policy names gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnprotectedDatabases {
    /// Refused at startup (the default: a database added to the server without its policy is
    /// not served in plaintext by mistake).
    #[default]
    Refuse,
    /// Relayed as it is, with no sealing, views, budgets or audit.
    Relay,
}

/// Why a set of policies cannot run together.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SetError {
    /// Two policies name the same database.
    #[error("{first} and {second} both protect database {database:?}: one policy per database")]
    Twice {
        /// The database.
        database: String,
        /// The first policy file naming it.
        first: String,
        /// The second one.
        second: String,
    },
    /// A policy without `databases` (every database) was loaded beside others.
    #[error(
        "{every} names no `databases`, so it protects every database, but {other} is loaded \
         too: with several policies, each names its databases (databases = [\"…\"])"
    )]
    EveryAndOthers {
        /// The policy without `databases`.
        every: String,
        /// Another policy of the set.
        other: String,
    },
    /// Two policies seal columns under one key domain: with one keyring, they share keys.
    #[error(
        "{first} and {second} both seal under key domain {domain:?} ({column}): with one \
         keyring they share its keys, so a value sealed in one database would open through the \
         other's policy. Give the columns of one of them their own `domain = \"…\"` (new keys: \
         seal its data after, or re-seal it with pgseal migrate)"
    )]
    SharedKeys {
        /// The key domain.
        domain: String,
        /// A column sealed under it (in the second policy).
        column: String,
        /// The first policy file.
        first: String,
        /// The second one.
        second: String,
    },
    /// No policy at all.
    #[error("no policy to load")]
    Empty,
}

/// The key domain a column's keys come from (see `protect::column::key_domain`): a named
/// domain, or its own qualified name.
fn key_domain_of(column: &pgseal_policies::SealedColumn) -> String {
    if column.domain.contains('.') {
        format!("column {}", column.qualified_name())
    } else {
        column.domain.clone()
    }
}

/// Checks that policies can run side by side: one per database, and a policy protecting every
/// database only on its own.
pub fn check(policies: &[&CompiledPolicy]) -> Result<(), SetError> {
    let Some(first) = policies.first() else {
        return Err(SetError::Empty);
    };
    if policies.len() > 1
        && let Some(every) = policies.iter().find(|p| p.databases().is_empty())
    {
        let other = policies
            .iter()
            .find(|p| !std::ptr::eq(**p, *every))
            .unwrap_or(first);
        return Err(SetError::EveryAndOthers {
            every: every.file().to_string(),
            other: other.file().to_string(),
        });
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for policy in policies {
        for database in policy.databases() {
            if let Some(first) = seen.insert(database, policy.file()) {
                return Err(SetError::Twice {
                    database: database.clone(),
                    first: first.to_string(),
                    second: policy.file().to_string(),
                });
            }
        }
    }
    let mut domains: HashMap<String, &str> = HashMap::new();
    for policy in policies {
        let mut own: Vec<(String, String)> = policy
            .columns()
            .iter()
            .map(|c| (key_domain_of(c), c.qualified_name()))
            .collect();
        own.sort();
        own.dedup_by(|a, b| a.0 == b.0);
        for (domain, column) in own {
            if let Some(first) = domains.get(&domain) {
                return Err(SetError::SharedKeys {
                    domain,
                    column,
                    first: first.to_string(),
                    second: policy.file().to_string(),
                });
            }
            domains.insert(domain, policy.file());
        }
    }
    Ok(())
}

/// What a session on one database gets.
pub enum ForDatabase {
    /// This protection.
    Protected(Arc<Protection>),
    /// No policy names the database and `--unprotected-databases relay`: relayed as it is.
    Relay,
    /// No policy names the database: refused.
    Refuse,
}

/// The policies in force together, with the keyring they were loaded with.
pub struct ProtectionSet {
    every: Option<Arc<Protection>>,
    by_database: HashMap<String, Arc<Protection>>,
    all: Vec<Arc<Protection>>,
    unprotected: UnprotectedDatabases,
    keyring: KeyringStatus,
    generation: u64,
    since: std::time::Instant,
}

impl ProtectionSet {
    /// The set of `protections` (checked with [`check`]), loaded with `keyring`.
    pub fn new(
        protections: Vec<Arc<Protection>>,
        unprotected: UnprotectedDatabases,
        keyring: KeyringStatus,
    ) -> Result<Self, SetError> {
        let policies: Vec<&CompiledPolicy> = protections.iter().map(|p| &*p.policy).collect();
        check(&policies)?;
        let mut every = None;
        let mut by_database = HashMap::new();
        for protection in &protections {
            if protection.policy.databases().is_empty() {
                every = Some(Arc::clone(protection));
            }
            for database in protection.policy.databases() {
                by_database.insert(database.clone(), Arc::clone(protection));
            }
        }
        Ok(ProtectionSet {
            every,
            by_database,
            all: protections,
            unprotected,
            keyring,
            generation: 0,
            since: std::time::Instant::now(),
        })
    }

    /// What a session on `database` gets.
    pub fn for_database(&self, database: &str) -> ForDatabase {
        if let Some(protection) = self.every.as_ref().or(self.by_database.get(database)) {
            return ForDatabase::Protected(Arc::clone(protection));
        }
        match self.unprotected {
            UnprotectedDatabases::Refuse => ForDatabase::Refuse,
            UnprotectedDatabases::Relay => ForDatabase::Relay,
        }
    }

    /// Every protection of the set.
    pub fn protections(&self) -> &[Arc<Protection>] {
        &self.all
    }

    /// The protection loaded from the policy file `file`, if the set has it.
    pub fn by_file(&self, file: &str) -> Option<&Arc<Protection>> {
        self.all.iter().find(|p| p.policy.file() == file)
    }

    /// Its number: 1 for the set loaded at start, one more at each reload that took.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When it was put in force.
    pub fn since(&self) -> std::time::Instant {
        self.since
    }

    /// The keyring it was loaded with.
    pub fn keyring(&self) -> &KeyringStatus {
        &self.keyring
    }

    /// What `/healthz` says of it: the generation, each policy and its databases, the keyring.
    pub fn render(&self) -> String {
        let mut out = format!("policies: generation {}\n", self.generation);
        for protection in &self.all {
            let policy = &protection.policy;
            let databases = if policy.databases().is_empty() {
                "every database".to_string()
            } else {
                format!("databases {}", policy.databases().join(" "))
            };
            out.push_str(&format!(
                "policy: {}, {databases}, {} sealed columns\n",
                policy.file(),
                policy.columns().len()
            ));
        }
        if self.every.is_none() {
            out.push_str(&format!(
                "other databases: {}\n",
                match self.unprotected {
                    UnprotectedDatabases::Refuse => "refused",
                    UnprotectedDatabases::Relay => "relayed without protection",
                }
            ));
        }
        out.push_str(&self.keyring.render());
        out
    }
}

/// The set in force, replaced whole by a reload. Sessions read [`InForce::generation`] (one
/// atomic load) before each new statement and take the new set when it moved; a session that
/// cannot move (its transaction stays open) for longer than [`InForce::grace`] is ended.
pub struct InForce {
    set: RwLock<Arc<ProtectionSet>>,
    generation: AtomicU64,
    grace: std::time::Duration,
    /// When each recent generation was put in force (the last [`HISTORY`]).
    history: std::sync::Mutex<std::collections::VecDeque<(u64, std::time::Instant)>>,
}

/// How many generations [`InForce`] remembers the start of.
const HISTORY: usize = 64;

impl InForce {
    /// `set` in force, as generation 1; sessions get `grace` to move after each reload.
    pub fn new(mut set: ProtectionSet, grace: std::time::Duration) -> Self {
        set.generation = 1;
        let since = set.since;
        InForce {
            set: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(1),
            grace,
            history: std::sync::Mutex::new([(1, since)].into()),
        }
    }

    /// When generation `generation` stopped being in force (the next one's start): what a
    /// session still on it counts its grace from. `None` while it is in force; the oldest start
    /// known when it is too old to be remembered.
    pub fn replaced_at(&self, generation: u64) -> Option<std::time::Instant> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history
            .iter()
            .find(|(g, _)| *g == generation + 1)
            .or_else(|| history.front().filter(|(g, _)| *g > generation + 1))
            .map(|(_, since)| *since)
    }

    /// How long a session may stay on older policies after a reload (`--reload-grace`).
    pub fn grace(&self) -> std::time::Duration {
        self.grace
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<ProtectionSet> {
        Arc::clone(&self.set.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The generation in force now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `set` in force as the next generation, which it returns.
    pub fn replace(&self, mut set: ProtectionSet) -> u64 {
        let mut current = self.set.write().unwrap_or_else(PoisonError::into_inner);
        let generation = current.generation + 1;
        set.generation = generation;
        set.since = std::time::Instant::now();
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            history.push_back((generation, set.since));
            while history.len() > HISTORY {
                history.pop_front();
            }
        }
        *current = Arc::new(set);
        self.generation.store(generation, Ordering::Release);
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(file: &str, databases: &str) -> CompiledPolicy {
        // Each file seals its own column, so that the policies share no key domain.
        let column = file.trim_end_matches(".toml");
        let text = format!(
            "{databases}\n[columns.\"public.t.{column}\"]\nmode = \"randomized\"\ntype = \"text\"\n"
        );
        CompiledPolicy::from_toml(file, &text).expect("valid policy")
    }

    #[test]
    fn one_policy_per_database_and_every_database_only_alone() {
        let a = policy("a.toml", "databases = [\"ehr\", \"lab\"]");
        let b = policy("b.toml", "databases = [\"research\"]");
        let c = policy("c.toml", "databases = [\"lab\"]");
        let every = policy("every.toml", "");
        assert_eq!(check(&[&a, &b]), Ok(()));
        assert_eq!(check(&[&every]), Ok(()));
        assert_eq!(check(&[]), Err(SetError::Empty));
        assert_eq!(
            check(&[&a, &b, &c]),
            Err(SetError::Twice {
                database: "lab".into(),
                first: "a.toml".into(),
                second: "c.toml".into(),
            })
        );
        let error = check(&[&a, &every]).unwrap_err();
        assert_eq!(
            error,
            SetError::EveryAndOthers {
                every: "every.toml".into(),
                other: "a.toml".into(),
            }
        );
        assert!(error.to_string().contains("each names its databases"));
    }

    #[test]
    fn policies_of_one_set_share_no_key_domain() {
        let sealed = |file: &str, database: &str, column: &str, domain: &str| {
            let text = format!(
                "databases = [\"{database}\"]\n[columns.\"public.t.{column}\"]\nmode = \"randomized\"\ntype = \"text\"\n{domain}"
            );
            CompiledPolicy::from_toml(file, &text).expect("valid policy")
        };
        let a = sealed("a.toml", "ehr", "c", "");
        let same_column = sealed("b.toml", "lab", "c", "");
        let own_domain = sealed("b.toml", "lab", "c", "domain = \"lab-c\"\n");
        let error = check(&[&a, &same_column]).unwrap_err();
        assert!(
            matches!(&error, SetError::SharedKeys { domain, .. } if domain == "column public.t.c"),
            "{error}"
        );
        assert!(error.to_string().contains("their own `domain"), "{error}");
        assert_eq!(check(&[&a, &own_domain]), Ok(()));
        let named = sealed("a.toml", "ehr", "c", "domain = \"lab-c\"\n");
        assert!(matches!(
            check(&[&named, &own_domain]),
            Err(SetError::SharedKeys { .. })
        ));
    }
}
