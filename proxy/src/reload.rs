//! Loading the policies and the keyring into the [`ProtectionSet`] sessions use: once at start,
//! and again on SIGHUP or `POST /reload` ([`Reloader`]).
//!
//! A reload reads the configuration file again when there is one (`pgseal serve --config`,
//! its flags still first): the policy path, keyring, HSM access, `--unanalysable`,
//! `--unprotected-databases` and the evaluation caps take effect; any other option that changed
//! is named in a warning and waits for a restart. It reads every policy file and the keyring,
//! derives every key and checks the set before anything changes; a problem anywhere leaves the set in force as it was (an error
//! line, `pgseal_reloads_total{outcome="failed"}` and `pgseal_reload_last_ok 0`, which an
//! alerting rule watches). What lives as long as the proxy is kept across reloads: the audit
//! trail (its key is the one it started with), the alert sinks, and each policy file's
//! budgets, whose counts carry over to the new limits (`Budgets::set_policy`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgseal_policies::CompiledPolicy;
use tracing::{error, info};

use crate::admin::{KeyringStatus, Metrics};
use crate::audit::{AuditLog, AuditTable, AuditTarget, DEFAULT_QUEUE, KeyEvent};
use crate::budget::{AlertSink, Budgets, FanOut, LogAlerts, WebhookSender};
use crate::config::ServeConfig;
use crate::protect::Protection;
use crate::protect::set::{InForce, ProtectionSet};
use crate::server::ServerError;

/// The policy files `path` names: itself, or the `*.toml` files of a directory, by name.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let unreadable = |e: std::io::Error| ServerError::Policy {
        path: path.display().to_string(),
        problems: e.to_string(),
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let file = entry.map_err(unreadable)?.path();
        if file.extension().is_some_and(|e| e == "toml") && !file.is_dir() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ServerError::Policy {
            path: path.display().to_string(),
            problems: "the directory holds no policy (*.toml)".into(),
        });
    }
    Ok(files)
}

/// Reads and checks every policy `path` names (see [`policy_files`]): every problem of every
/// file, then whether they can run side by side.
pub fn load_policies(path: &Path) -> Result<Vec<CompiledPolicy>, ServerError> {
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    for file in policy_files(path)? {
        match CompiledPolicy::load(&file) {
            Ok(policy) => policies.push(policy),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(ServerError::Policy {
            path: path.display().to_string(),
            problems: problems.join("\n"),
        });
    }
    let refs: Vec<&CompiledPolicy> = policies.iter().collect();
    crate::protect::set::check(&refs).map_err(|e| ServerError::Policy {
        path: path.display().to_string(),
        problems: e.to_string(),
    })?;
    Ok(policies)
}

/// The name this pgseal's lines carry in the audit table: the host and the listen address, the
/// same across restarts (the chain continues with the file).
fn audit_instance(listen: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}/{listen}", if host.is_empty() { "pgseal" } else { host })
}

/// The policies and keyring read from disk (and the HSM), before any key is derived.
struct Read {
    policies: Vec<CompiledPolicy>,
    keyring: pgseal_keys::Keyring,
    status: KeyringStatus,
    /// A digest of what the keyring was read from (the file's bytes), for the protections'.
    keyring_digest: [u8; 32],
}

/// The digest of a protection: its policy file's bytes, the keyring's source and the
/// settings that change how statements are planned.
fn digest_of(policy_file: &str, keyring_digest: &[u8; 32], config: &ServeConfig) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    let policy = std::fs::read(policy_file).unwrap_or_default();
    for part in [
        policy.as_slice(),
        keyring_digest.as_slice(),
        format!("{:?}|{:?}", config.unanalysable, config.evaluation_caps).as_bytes(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// Reads the policies and the keyring the configuration names. Blocking (files, the HSM).
fn read(config: &ServeConfig, policy_path: &Path) -> Result<Read, ServerError> {
    let policies = load_policies(policy_path)?;
    let keyring = match &config.keyring {
        Some(path) => {
            pgseal_keys::Keyring::load_with(path, &config.hsm).map_err(ServerError::Keyring)?
        }
        None if std::env::var_os("PGSEAL_ROOT_KEY").is_some() => {
            pgseal_keys::Keyring::from_env().map_err(ServerError::Keyring)?
        }
        None => return Err(ServerError::NoKeyring),
    };
    let status = KeyringStatus::new(
        match &config.keyring {
            Some(path) => format!("file {}", path.display()),
            None => "PGSEAL_ROOT_KEY".to_owned(),
        },
        &keyring,
    );
    // The file holds root keys (when not wrapped): read into a buffer wiped once hashed.
    let keyring_digest: [u8; 32] = {
        use sha2::Digest as _;
        let source = zeroize::Zeroizing::new(match &config.keyring {
            Some(path) => std::fs::read(path).unwrap_or_default(),
            None => b"PGSEAL_ROOT_KEY".to_vec(),
        });
        sha2::Sha256::digest(source.as_slice()).into()
    };
    Ok(Read {
        policies,
        keyring,
        status,
        keyring_digest,
    })
}

/// Reads the configuration again for a reload: the `--config` file merged under the flags and
/// environment it started with.
pub type ConfigSource = Box<dyn Fn() -> Result<ServeConfig, String> + Send + Sync>;

/// The options a reload cannot apply, by name, as they are set.
fn restart_options(config: &ServeConfig) -> [(&'static str, String); 20] {
    [
        ("listen", config.listen.clone()),
        ("upstream", config.upstream.to_string()),
        ("upstream-target", config.upstream_target.to_string()),
        ("tls-cert/tls-key", format!("{:?}", config.client_tls)),
        ("upstream-tls", format!("{:?}", config.upstream_tls)),
        ("upstream-ca", format!("{:?}", config.upstream_ca)),
        ("max-message-size", config.max_message_size.to_string()),
        ("startup-timeout", format!("{:?}", config.startup_timeout)),
        ("connect-timeout", format!("{:?}", config.connect_timeout)),
        ("message-timeout", format!("{:?}", config.message_timeout)),
        ("idle-timeout", format!("{:?}", config.idle_timeout)),
        ("shutdown-grace", format!("{:?}", config.shutdown_grace)),
        ("reload-grace", format!("{:?}", config.reload_grace)),
        ("max-connections", config.max_connections.to_string()),
        ("session-threads", config.session_threads.to_string()),
        ("state-url", format!("{}", config.state_url.is_some())),
        ("audit", format!("{:?}", config.audit)),
        (
            "audit-table-url",
            format!("{}", config.audit_table_url.is_some()),
        ),
        ("admin-listen", format!("{:?}", config.admin_listen)),
        (
            "alert-webhook",
            format!("{}", config.alert_webhook.is_some()),
        ),
    ]
}

/// Builds protection sets from the configuration, keeping what lives as long as the proxy.
pub struct Loader {
    config: ServeConfig,
    policy_path: PathBuf,
    metrics: Arc<Metrics>,
    audit: Option<AuditLog>,
    alerts: Arc<dyn AlertSink>,
}

impl Loader {
    /// Checks the options that need a policy, loads the first set, and opens the audit trail
    /// and the alert sinks; `None` without `--policy`. A keyring wrapped by an HSM is unwrapped
    /// here, and the audit trail's first event after its start record says so.
    pub async fn start(
        config: &ServeConfig,
        metrics: &Arc<Metrics>,
    ) -> Result<Option<(Loader, ProtectionSet)>, ServerError> {
        let Some(policy_path) = &config.policy else {
            for (flag, set) in [
                ("--state-url", config.state_url.is_some()),
                ("--audit", config.audit.is_some()),
                ("--audit-table-url", config.audit_table_url.is_some()),
                ("--alert-webhook", config.alert_webhook.is_some()),
            ] {
                if set {
                    return Err(ServerError::NeedsPolicy(flag));
                }
            }
            return Ok(None);
        };
        let read = read(config, policy_path)?;
        let mut alerts = FanOut::new()
            .with(Arc::new(LogAlerts))
            .with(Arc::clone(metrics) as Arc<dyn AlertSink>);
        if let Some(url) = &config.alert_webhook {
            let (webhook, _task) = WebhookSender::start(url, 256, None)
                .map_err(|e| ServerError::Budgets(format!("--alert-webhook: {e}")))?;
            metrics.attach_webhook(Arc::clone(webhook.stats()));
            alerts = alerts.with(Arc::new(webhook));
        }
        if config.audit_table_url.is_some() && config.audit.is_none() {
            return Err(ServerError::Audit(
                "--audit-table-url copies the trail that --audit writes: give --audit FILE too"
                    .into(),
            ));
        }
        let audit = match &config.audit {
            None => None,
            Some(target) => {
                let table = match &config.audit_table_url {
                    Some(url) => Some(
                        AuditTable::connect(url, &audit_instance(&config.listen))
                            .await
                            .map_err(|e| ServerError::Audit(e.to_string()))?,
                    ),
                    None => None,
                };
                let log = AuditLog::open(
                    AuditTarget::parse(target),
                    read.keyring.audit_key(),
                    DEFAULT_QUEUE,
                    table,
                )
                .map_err(|e| ServerError::Audit(e.to_string()))?;
                metrics.attach_audit(Arc::clone(log.stats()));
                Some(log)
            }
        };
        let loader = Loader {
            config: config.clone(),
            policy_path: policy_path.clone(),
            metrics: Arc::clone(metrics),
            audit,
            alerts: Arc::new(alerts),
        };
        let set = loader.build(read, None, "serve", config).await?;
        Ok(Some((loader, set)))
    }

    /// Reads the policies and keyring again into a new set, under `config` when the
    /// configuration was read again (else as started); `previous` gives the budgets of the
    /// policy files it shares with the new one.
    pub async fn load(
        &self,
        previous: &ProtectionSet,
        config: Option<ServeConfig>,
    ) -> Result<ProtectionSet, ServerError> {
        let config = match config {
            None => self.config.clone(),
            Some(config) => {
                for ((option, before), (_, now)) in restart_options(&self.config)
                    .into_iter()
                    .zip(restart_options(&config))
                {
                    if before != now {
                        tracing::warn!(
                            option,
                            "the configuration changed an option a reload cannot apply; it takes \
                             effect at the next restart"
                        );
                    }
                }
                config
            }
        };
        let Some(path) = config.policy.clone() else {
            return Err(ServerError::Policy {
                path: self.policy_path.display().to_string(),
                problems: "the configuration no longer names a policy: running without \
                           protection takes a restart"
                    .into(),
            });
        };
        let blocking = config.clone();
        let read = tokio::task::spawn_blocking(move || read(&blocking, &path))
            .await
            .map_err(|e| ServerError::Budgets(format!("loading stopped: {e}")))??;
        self.build(read, Some(previous), "reload", &config).await
    }

    /// The audit trail, when one is configured.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// Records in the audit trail a reload asked for by `trigger` and refused for `problem`:
    /// the policies and generation that stay in force.
    fn record_refusal(&self, trigger: &str, in_force: &ProtectionSet, problem: &str) {
        let Some(audit) = &self.audit else {
            return;
        };
        let mut event = KeyEvent::new(
            trigger,
            "reload-refused",
            self.config.keyring.as_deref(),
            std::iter::empty(),
            None,
        );
        event.policies = in_force
            .protections()
            .iter()
            .map(|p| p.policy.file().to_string())
            .collect();
        event.generation = Some(in_force.generation());
        // The keyring in force, which stays.
        event.versions = in_force.keyring().versions.clone();
        event.active_version = in_force.keyring().active;
        event.problem = Some(problem.to_string());
        audit.record_keys(event);
    }

    async fn build(
        &self,
        read: Read,
        previous: Option<&ProtectionSet>,
        command: &str,
        config: &ServeConfig,
    ) -> Result<ProtectionSet, ServerError> {
        let Read {
            policies,
            keyring,
            status,
            keyring_digest,
        } = read;
        if let Some(origin) = keyring.hsm_origin() {
            info!(
                keyring_id = %origin.keyring_id_hex(),
                module = %origin.binding.module.display(),
                token = %origin.binding.token,
                key = %origin.binding.key,
                active_version = keyring.active_version(),
                "keyring unwrapped through the HSM"
            );
        }
        let mut protections = Vec::with_capacity(policies.len());
        // Budgets that go on with a new policy: given it only once nothing can fail.
        let mut continued = Vec::new();
        for policy in policies {
            let file = policy.file().to_string();
            let mut protection = Protection::new(policy, &keyring, config.unanalysable)?;
            protection.metrics = Arc::clone(&self.metrics);
            protection.evaluation_caps = config.evaluation_caps;
            protection.digest = digest_of(&file, &keyring_digest, config);
            protection.audit = self.audit.clone();
            match previous.and_then(|set| set.by_file(&file)) {
                Some(before) => {
                    // The same file again: its accounts keep their counts.
                    protection.budgets = before.budgets.clone();
                    continued.push((before.budgets.clone(), Arc::clone(&protection.policy)));
                }
                None => {
                    if let Some(url) = &self.config.state_url {
                        protection.budgets = Budgets::shared(
                            Arc::clone(&protection.policy),
                            url,
                            crate::budget::MonotonicClock::shared(),
                        )
                        .await
                        .map_err(|e| ServerError::Budgets(e.to_string()))?;
                    }
                    protection.budgets.set_alert_sink(Arc::clone(&self.alerts));
                }
            }
            protections.push(Arc::new(protection));
        }
        let set =
            ProtectionSet::new(protections, config.unprotected_databases, status).map_err(|e| {
                ServerError::Policy {
                    path: config
                        .policy
                        .as_deref()
                        .unwrap_or(&self.policy_path)
                        .display()
                        .to_string(),
                    problems: e.to_string(),
                }
            })?;
        for (budgets, policy) in continued {
            budgets.set_policy(policy);
        }
        if let Some(previous) = previous {
            warn_of_unsealing(previous, &set);
        }
        if let (Some(audit), Some(origin)) = (&self.audit, keyring.hsm_origin()) {
            audit.record_keys(KeyEvent::new(
                command,
                "unwrap",
                config.keyring.as_deref(),
                keyring.versions(),
                Some(origin),
            ));
        }
        if let (Some(audit), Some(previous)) = (&self.audit, previous) {
            // Who may read what changed: the trail says when, and to which files and keys.
            let mut event = KeyEvent::new(
                command,
                "reload",
                config.keyring.as_deref(),
                keyring.versions(),
                keyring.hsm_origin(),
            );
            event.policies = set
                .protections()
                .iter()
                .map(|p| p.policy.file().to_string())
                .collect();
            event.generation = Some(previous.generation() + 1);
            audit.record_keys(event);
        }
        for protection in set.protections() {
            info!(
                policy = %protection.policy.file(),
                databases = %protection.policy.databases().join(" "),
                sealed_columns = protection.policy.columns().len(),
                classes = protection.policy.classes().len(),
                shared_budgets = self.config.state_url.is_some(),
                audit = self.config.audit.as_deref().unwrap_or("off"),
                "protection on"
            );
        }
        Ok(set)
    }
}

/// Why a reload did not take.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Another reload is under way.
    #[error("a reload is under way")]
    Busy,
    /// A file, the keyring or the set was unusable: the set in force stays. Every problem, one
    /// per line.
    #[error("{0}")]
    Refused(String),
}

/// Logs what a reload stops protecting: columns sealed before and not now, databases named
/// before and not now (a partly written file that still parses would do that silently). Names
/// of columns and databases only.
fn warn_of_unsealing(previous: &ProtectionSet, next: &ProtectionSet) {
    let sealed = |set: &ProtectionSet| -> std::collections::BTreeSet<(String, String)> {
        set.protections()
            .iter()
            .flat_map(|p| {
                let databases = if p.policy.databases().is_empty() {
                    vec!["*".to_string()]
                } else {
                    p.policy.databases().to_vec()
                };
                databases.into_iter().flat_map(move |database| {
                    p.policy
                        .columns()
                        .iter()
                        .map(move |c| (database.clone(), c.qualified_name()))
                })
            })
            .collect()
    };
    let now = sealed(next);
    for (database, column) in sealed(previous).difference(&now) {
        tracing::warn!(
            database = %database,
            column = %column,
            "the reloaded policies no longer seal this column: what is written to it from now on is stored in clear"
        );
    }
}

/// Reloads the set in force: from SIGHUP and from the admin endpoint's `POST /reload`. One
/// reload runs at a time.
pub struct Reloader {
    loader: Loader,
    in_force: Arc<InForce>,
    metrics: Arc<Metrics>,
    running: tokio::sync::Mutex<()>,
    source: std::sync::OnceLock<ConfigSource>,
}

impl Reloader {
    /// A reloader of `in_force`, loading with `loader`.
    pub fn new(loader: Loader, in_force: Arc<InForce>, metrics: Arc<Metrics>) -> Self {
        metrics.reload_last_ok.set(1);
        metrics.policy_generation.set(1);
        Reloader {
            loader,
            in_force,
            metrics,
            running: tokio::sync::Mutex::new(()),
            source: std::sync::OnceLock::new(),
        }
    }

    /// Reads the configuration again from `source` at each reload (once; later calls are
    /// ignored). Without it, a reload keeps the configuration pgseal started with.
    pub fn read_config_from(&self, source: ConfigSource) {
        let _ = self.source.set(source);
    }

    /// The set in force.
    pub fn in_force(&self) -> &Arc<InForce> {
        &self.in_force
    }

    /// The audit trail, when one is configured.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.loader.audit()
    }

    /// Loads the configuration's policies and keyring again and puts them in force; on any
    /// problem, keeps the set in force and says why. `trigger` names what asked (`SIGHUP`).
    /// Waits for a reload under way. Returns the new generation.
    pub async fn reload(&self, trigger: &str) -> Result<u64, ReloadError> {
        let one = self.running.lock().await;
        self.reload_held(trigger, one).await
    }

    /// [`Reloader::reload`], unless one is under way ([`ReloadError::Busy`]): what the admin
    /// endpoint does, so that requests cannot queue reloads.
    pub async fn try_reload(&self, trigger: &str) -> Result<u64, ReloadError> {
        let one = self.running.try_lock().map_err(|_| ReloadError::Busy)?;
        self.reload_held(trigger, one).await
    }

    async fn reload_held(
        &self,
        trigger: &str,
        _one: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<u64, ReloadError> {
        let previous = self.in_force.current();
        let loaded = match self.source.get().map(|read| read()).transpose() {
            Ok(config) => self.loader.load(&previous, config).await,
            Err(problem) => Err(ServerError::Config(problem)),
        };
        match loaded {
            Ok(set) => {
                let generation = self.in_force.replace(set);
                self.metrics.reloads.with(&["ok"]).inc();
                self.metrics.reload_last_ok.set(1);
                self.metrics.policy_generation.set(generation as i64);
                info!(
                    trigger,
                    generation, "reloaded: new statements use the new policies and keyring"
                );
                Ok(generation)
            }
            Err(e) => {
                self.metrics.reloads.with(&["failed"]).inc();
                self.metrics.reload_last_ok.set(0);
                let message = e.to_string();
                error!(
                    trigger,
                    generation = previous.generation(),
                    problem = %message,
                    "reload refused: the policies and keyring in force stay as they were"
                );
                self.loader.record_refusal(trigger, &previous, &message);
                Err(ReloadError::Refused(message))
            }
        }
    }
}
