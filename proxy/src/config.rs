//! Serve options, gathered from the command line, `PGSEAL_*` environment variables and a TOML
//! file (`--config`), in that order of precedence, then checked into a [`ServeConfig`].
//!
//! One struct, [`Options`], is both the clap argument group and the file's schema, so a flag,
//! its environment variable and its file key always mean the same thing: `--max-connections`,
//! `PGSEAL_MAX_CONNECTIONS` and `max-connections = …`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

pub use crate::upstream::target::UpstreamTarget;

/// The options of `pgseal serve`; each is optional here and defaulted in [`Options::resolve`].
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// Address to accept clients on [default: 127.0.0.1:6432]
    #[arg(long, env = "PGSEAL_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// PostgreSQL server to forward to, as HOST:PORT, or its Unix-domain socket as libpq names
    /// it: a directory (/var/run/postgresql, port 5432), DIRECTORY:PORT, or the socket file;
    /// several, comma-separated, are tried in order for the kind --upstream-target asks
    /// [default: 127.0.0.1:5432]
    #[arg(long, env = "PGSEAL_UPSTREAM", value_name = "HOST:PORT[,HOST:PORT…]")]
    pub upstream: Option<String>,

    /// Ports of the --upstream hosts given without one, as libpq's `port`: one for all, or one
    /// per host, comma-separated
    #[arg(long, env = "PGSEAL_UPSTREAM_PORT", value_name = "PORT[,PORT…]")]
    pub upstream_port: Option<String>,

    /// Which kind of server new sessions must reach, as libpq's target_session_attrs: any,
    /// read-write, read-only, primary, standby or prefer-standby [default: any]
    #[arg(long, env = "PGSEAL_UPSTREAM_TARGET", value_name = "TARGET")]
    pub upstream_target: Option<UpstreamTarget>,

    /// Certificate chain (PEM) for TLS between clients and pgseal; needs --tls-key
    #[arg(
        long,
        env = "PGSEAL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for TLS between clients and pgseal; needs --tls-cert
    #[arg(
        long,
        env = "PGSEAL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// TLS towards PostgreSQL: disable, require (encrypted, server not verified) or verify-full
    /// [default: disable]
    #[arg(long, env = "PGSEAL_UPSTREAM_TLS", value_name = "MODE")]
    pub upstream_tls: Option<UpstreamTlsMode>,

    /// CA certificates (PEM) that sign PostgreSQL's certificate, for --upstream-tls verify-full
    /// [default: the system's trust store]
    #[arg(long, env = "PGSEAL_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Largest message accepted from a client, e.g. 128MiB; larger ones end the session
    /// [default: 128MiB]
    #[arg(long, env = "PGSEAL_MAX_MESSAGE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_from_file")]
    pub max_message_size: Option<usize>,

    /// Time a client has to finish TLS, startup and authentication, e.g. 30s [default: 30s]
    #[arg(long, env = "PGSEAL_STARTUP_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_from_file")]
    pub startup_timeout: Option<Duration>,

    /// Time a client may leave a message half sent (no byte of it arriving) before its session
    /// is ended, e.g. 60s [default: 60s]
    #[arg(long, env = "PGSEAL_MESSAGE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_from_file")]
    pub message_timeout: Option<Duration>,

    /// Time a client may stay idle between messages before its session is ended, e.g. 8h;
    /// 0 never ends it [default: 0]
    #[arg(long, env = "PGSEAL_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_from_file")]
    pub idle_timeout: Option<Duration>,

    /// Time allowed to reach PostgreSQL for each new session, e.g. 10s [default: 10s]
    #[arg(long, env = "PGSEAL_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_from_file")]
    pub connect_timeout: Option<Duration>,

    /// Most client sessions at once; more are refused with SQLSTATE 53300 [default: 500]
    #[arg(long, env = "PGSEAL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Threads serving sessions, each session wholly on one of them [default: half the cores,
    /// at least 1]
    #[arg(long, env = "PGSEAL_SESSION_THREADS", value_name = "N")]
    pub session_threads: Option<usize>,

    /// On SIGTERM, how long sessions may run on before they are ended, e.g. 30s [default: 30s]
    #[arg(long, env = "PGSEAL_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_from_file")]
    pub shutdown_grace: Option<Duration>,

    /// After a reload, how long a session may stay on the policies it began with (a
    /// transaction open, a pipeline in flight) before it is ended (57P01), e.g. 30s
    /// [default: 30s]
    #[arg(long, env = "PGSEAL_RELOAD_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_from_file")]
    pub reload_grace: Option<Duration>,

    /// Policy file (TOML) naming the sealed columns, each role's view and budgets, or a
    /// directory of policies (*.toml), each naming its `databases`; without one, pgseal is a
    /// transparent proxy. Re-read on SIGHUP or POST /reload
    #[arg(long, env = "PGSEAL_POLICY", value_name = "FILE|DIR")]
    pub policy: Option<PathBuf>,

    /// Sessions on a database no policy names: refuse them (SQLSTATE 08004), or relay them
    /// without protection [default: refuse]
    #[arg(long, env = "PGSEAL_UNPROTECTED_DATABASES", value_name = "ACTION")]
    pub unprotected_databases: Option<crate::protect::set::UnprotectedDatabases>,

    /// Keyring file (0600) for --policy; PGSEAL_ROOT_KEY (base64) can stand in for it
    #[arg(long, env = "PGSEAL_KEYRING", value_name = "FILE")]
    pub keyring: Option<PathBuf>,

    /// PKCS#11 module to load for a keyring wrapped by an HSM, in place of the one the keyring
    /// names (same token and key)
    #[arg(long, env = "PGSEAL_HSM_MODULE", value_name = "FILE")]
    pub hsm_module: Option<PathBuf>,

    /// File (0600) holding the HSM token's user PIN for a wrapped keyring; else PGSEAL_HSM_PIN
    #[arg(long, env = "PGSEAL_HSM_PIN_FILE", value_name = "FILE")]
    pub hsm_pin_file: Option<PathBuf>,

    /// Statements pgseal cannot analyse that mention no sealed table: refuse, or forward
    /// those that cannot run server-side code [default: refuse]; those that mention a sealed
    /// table are always refused
    #[arg(long, env = "PGSEAL_UNANALYSABLE", value_name = "ACTION")]
    pub unanalysable: Option<crate::protect::Unanalysable>,

    /// Most rows pgseal holds at once to sort a statement on a sealed column itself (only the
    /// first OFFSET + LIMIT are held when there is a LIMIT); past it the statement fails
    /// [default: 200000]
    #[arg(long, env = "PGSEAL_EVALUATION_MAX_ROWS", value_name = "ROWS")]
    pub evaluation_max_rows: Option<usize>,

    /// Most bytes of rows pgseal holds at once for such a sort, e.g. 64MiB [default: 64MiB]
    #[arg(long, env = "PGSEAL_EVALUATION_MAX_BYTES", value_name = "SIZE", value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_from_file")]
    pub evaluation_max_bytes: Option<usize>,

    /// Most rows pgseal reads from PostgreSQL for one statement it filters or sorts on a sealed
    /// column itself [default: 20000000]
    #[arg(long, env = "PGSEAL_EVALUATION_MAX_SCAN", value_name = "ROWS")]
    pub evaluation_max_scan: Option<u64>,

    /// PostgreSQL URL where budget state lives, shared by every pgseal in front of the same
    /// database and kept across restarts (a `pgseal` schema is created on first use); several
    /// hosts with target_session_attrs=read-write follow a failover [default: in memory]
    #[arg(long, env = "PGSEAL_STATE_URL", value_name = "URL")]
    pub state_url: Option<String>,

    /// Audit trail: a file to append HMAC-chained JSON events to, or `-` for standard output
    #[arg(long, env = "PGSEAL_AUDIT", value_name = "FILE")]
    pub audit: Option<String>,

    /// PostgreSQL URL where the audit trail is also copied, line for line, to
    /// `pgseal.audit_trail` (created on first use); needs --audit, which stays the trail of
    /// record
    #[arg(long, env = "PGSEAL_AUDIT_TABLE_URL", value_name = "URL")]
    pub audit_table_url: Option<String>,

    /// Address for the admin endpoint (/metrics, /healthz); bind it to loopback or a
    /// management network
    #[arg(long, env = "PGSEAL_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,

    /// URL (http or https) to POST a JSON event to when an export budget is crossed
    #[arg(long, env = "PGSEAL_ALERT_WEBHOOK", value_name = "URL")]
    pub alert_webhook: Option<String>,

    /// Log format: human or json [default: human]
    #[arg(long, env = "PGSEAL_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, e.g. info, debug or pgseal=debug [default: info]
    #[arg(long, env = "PGSEAL_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// How pgseal talks TLS to PostgreSQL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Plain TCP (for a loopback or otherwise trusted link).
    #[default]
    Disable,
    /// TLS, without checking the server's certificate (like libpq's `sslmode=require`).
    Require,
    /// TLS, with the certificate checked against the CA and the host name.
    VerifyFull,
}

/// The log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Where PostgreSQL is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamAddress {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl UpstreamAddress {
    /// For a host that is a directory (it starts with `/`, as libpq reads it), the server's
    /// socket in it: `<host>/.s.PGSQL.<port>`.
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.host
            .starts_with('/')
            .then(|| PathBuf::from(&self.host).join(format!(".s.PGSQL.{}", self.port)))
    }
}

impl std::fmt::Display for UpstreamAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(path) = self.socket_path() {
            write!(f, "{}", path.display())
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The PostgreSQL hosts, in the order they are tried; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamHosts(Vec<UpstreamAddress>);

impl UpstreamHosts {
    /// One host.
    pub fn one(address: UpstreamAddress) -> UpstreamHosts {
        UpstreamHosts(vec![address])
    }

    /// The hosts, in the listed order.
    pub fn as_slice(&self) -> &[UpstreamAddress] {
        &self.0
    }

    /// The first host listed.
    pub fn first(&self) -> &UpstreamAddress {
        // Never empty: built by `one` or by parsing, which refuses an empty list.
        &self.0[0]
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for UpstreamHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, host) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{host}")?;
        }
        Ok(())
    }
}

/// Paths of the certificate chain and key pgseal presents to clients.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// The checked configuration of `pgseal serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to accept clients on.
    pub listen: String,
    /// PostgreSQL hosts to forward to, in the order they are tried.
    pub upstream: UpstreamHosts,
    /// Which kind of server new sessions must reach.
    pub upstream_target: UpstreamTarget,
    /// TLS towards clients, if configured.
    pub client_tls: Option<TlsFiles>,
    /// TLS towards PostgreSQL.
    pub upstream_tls: UpstreamTlsMode,
    /// CA file for verify-full.
    pub upstream_ca: Option<PathBuf>,
    /// Largest message accepted from a client, in bytes (its length field).
    pub max_message_size: usize,
    /// Deadline for TLS, startup and authentication.
    pub startup_timeout: Duration,
    /// Deadline to reach PostgreSQL.
    pub connect_timeout: Duration,
    /// Longest wait for the rest of a message a client has started.
    pub message_timeout: Duration,
    /// Longest a client may stay idle between messages (`None`: forever).
    pub idle_timeout: Option<Duration>,
    /// Most client sessions at once.
    pub max_connections: usize,
    /// Threads serving sessions (`pgseal serve`; at least one).
    pub session_threads: usize,
    /// How long sessions may run on after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a session may stay on older policies after a reload.
    pub reload_grace: Duration,
    /// The policy file or directory, when protection is on.
    pub policy: Option<PathBuf>,
    /// What sessions on a database no policy names get.
    pub unprotected_databases: crate::protect::set::UnprotectedDatabases,
    /// The keyring file (else `PGSEAL_ROOT_KEY`).
    pub keyring: Option<PathBuf>,
    /// How to reach the HSM of a wrapped keyring (module override, PIN file).
    pub hsm: pgseal_keys::HsmAccess,
    /// What to do with unanalysable statements that mention no sealed table.
    pub unanalysable: crate::protect::Unanalysable,
    /// How much a statement pgseal filters or sorts itself may hold and scan.
    pub evaluation_caps: crate::evaluate::rows::Caps,
    /// Where shared budget state lives (else in memory).
    pub state_url: Option<String>,
    /// The audit trail's file (`-`: standard output).
    pub audit: Option<String>,
    /// Where the audit trail is also copied (a PostgreSQL URL).
    pub audit_table_url: Option<String>,
    /// The admin endpoint's address.
    pub admin_listen: Option<String>,
    /// The alert webhook.
    pub alert_webhook: Option<String>,
}

impl ServeConfig {
    /// A configuration with every default, forwarding `listen` to `upstream`.
    pub fn new(listen: &str, upstream: &str) -> Result<Self, ConfigError> {
        Options {
            listen: Some(listen.to_string()),
            upstream: Some(upstream.to_string()),
            ..Options::default()
        }
        .resolve()
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for these options.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An option's value is not acceptable.
    #[error("invalid {option}: {message}")]
    Invalid {
        /// The option, as its flag is spelled.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The default client-message limit: generous for large `bytea` parameters and COPY rows, far
/// below what could exhaust memory.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;
/// PostgreSQL's own ceiling for a message (1 GiB - 1).
pub const PROTOCOL_MAX_MESSAGE_SIZE: usize = 0x3fff_ffff;

impl Options {
    /// Reads the options of a TOML config file.
    pub fn from_file(path: &Path) -> Result<Options, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })
    }

    /// Fills every option this one leaves unset from `fallback`.
    pub fn or(self, fallback: Options) -> Options {
        Options {
            listen: self.listen.or(fallback.listen),
            upstream: self.upstream.or(fallback.upstream),
            upstream_port: self.upstream_port.or(fallback.upstream_port),
            upstream_target: self.upstream_target.or(fallback.upstream_target),
            tls_cert: self.tls_cert.or(fallback.tls_cert),
            tls_key: self.tls_key.or(fallback.tls_key),
            upstream_tls: self.upstream_tls.or(fallback.upstream_tls),
            upstream_ca: self.upstream_ca.or(fallback.upstream_ca),
            max_message_size: self.max_message_size.or(fallback.max_message_size),
            startup_timeout: self.startup_timeout.or(fallback.startup_timeout),
            connect_timeout: self.connect_timeout.or(fallback.connect_timeout),
            message_timeout: self.message_timeout.or(fallback.message_timeout),
            idle_timeout: self.idle_timeout.or(fallback.idle_timeout),
            max_connections: self.max_connections.or(fallback.max_connections),
            session_threads: self.session_threads.or(fallback.session_threads),
            shutdown_grace: self.shutdown_grace.or(fallback.shutdown_grace),
            reload_grace: self.reload_grace.or(fallback.reload_grace),
            policy: self.policy.or(fallback.policy),
            unprotected_databases: self
                .unprotected_databases
                .or(fallback.unprotected_databases),
            keyring: self.keyring.or(fallback.keyring),
            hsm_module: self.hsm_module.or(fallback.hsm_module),
            hsm_pin_file: self.hsm_pin_file.or(fallback.hsm_pin_file),
            unanalysable: self.unanalysable.or(fallback.unanalysable),
            evaluation_max_rows: self.evaluation_max_rows.or(fallback.evaluation_max_rows),
            evaluation_max_bytes: self.evaluation_max_bytes.or(fallback.evaluation_max_bytes),
            evaluation_max_scan: self.evaluation_max_scan.or(fallback.evaluation_max_scan),
            state_url: self.state_url.or(fallback.state_url),
            audit: self.audit.or(fallback.audit),
            audit_table_url: self.audit_table_url.or(fallback.audit_table_url),
            admin_listen: self.admin_listen.or(fallback.admin_listen),
            alert_webhook: self.alert_webhook.or(fallback.alert_webhook),
            log_format: self.log_format.or(fallback.log_format),
            log_level: self.log_level.or(fallback.log_level),
        }
    }

    /// Applies defaults and checks the values.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let upstream = parse_upstream_list(
            self.upstream.as_deref().unwrap_or("127.0.0.1:5432"),
            self.upstream_port.as_deref(),
        )?;
        let client_tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    option: "--tls-cert/--tls-key",
                    message: "both are needed to accept TLS clients".into(),
                });
            }
        };
        let upstream_tls = self.upstream_tls.unwrap_or_default();
        if upstream
            .as_slice()
            .iter()
            .any(|h| h.socket_path().is_some())
            && upstream_tls != UpstreamTlsMode::Disable
        {
            return Err(ConfigError::Invalid {
                option: "--upstream-tls",
                message: "a Unix-domain socket upstream is never TLS (as with libpq); leave \
                          --upstream-tls out or set it to disable"
                    .into(),
            });
        }
        if self.upstream_ca.is_some() && upstream_tls != UpstreamTlsMode::VerifyFull {
            return Err(ConfigError::Invalid {
                option: "--upstream-ca",
                message: "only used with --upstream-tls verify-full".into(),
            });
        }
        let max_message_size = self.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        if !(1024..=PROTOCOL_MAX_MESSAGE_SIZE).contains(&max_message_size) {
            return Err(ConfigError::Invalid {
                option: "--max-message-size",
                message: format!("{max_message_size} is outside 1KiB..1GiB"),
            });
        }
        let max_connections = self.max_connections.unwrap_or(500);
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                option: "--max-connections",
                message: "must be at least 1".into(),
            });
        }
        let session_threads = match self.session_threads {
            Some(0) => {
                return Err(ConfigError::Invalid {
                    option: "--session-threads",
                    message: "must be at least 1".into(),
                });
            }
            Some(n) if n > 1024 => {
                return Err(ConfigError::Invalid {
                    option: "--session-threads",
                    message: format!("{n} is more than 1024"),
                });
            }
            Some(n) => n,
            None => default_session_threads(),
        };
        let positive = |option: &'static str, value: Option<Duration>, default: u64| {
            let value = value.unwrap_or(Duration::from_secs(default));
            if value.is_zero() {
                Err(ConfigError::Invalid {
                    option,
                    message: "must be more than zero".into(),
                })
            } else {
                Ok(value)
            }
        };
        Ok(ServeConfig {
            listen: self.listen.unwrap_or_else(|| "127.0.0.1:6432".to_string()),
            upstream,
            upstream_target: self.upstream_target.unwrap_or_default(),
            client_tls,
            upstream_tls,
            upstream_ca: self.upstream_ca,
            max_message_size,
            startup_timeout: positive("--startup-timeout", self.startup_timeout, 30)?,
            connect_timeout: positive("--connect-timeout", self.connect_timeout, 10)?,
            message_timeout: positive("--message-timeout", self.message_timeout, 60)?,
            idle_timeout: self.idle_timeout.filter(|t| !t.is_zero()),
            max_connections,
            session_threads,
            shutdown_grace: self.shutdown_grace.unwrap_or(Duration::from_secs(30)),
            reload_grace: positive("--reload-grace", self.reload_grace, 30)?,
            policy: self.policy,
            unprotected_databases: self.unprotected_databases.unwrap_or_default(),
            keyring: self.keyring,
            hsm: pgseal_keys::HsmAccess {
                module: self.hsm_module,
                pin_file: self.hsm_pin_file,
            },
            unanalysable: self.unanalysable.unwrap_or_default(),
            evaluation_caps: {
                let default = crate::evaluate::rows::Caps::default();
                crate::evaluate::rows::Caps {
                    max_rows: positive_count("--evaluation-max-rows", self.evaluation_max_rows)?
                        .unwrap_or(default.max_rows),
                    max_bytes: positive_count("--evaluation-max-bytes", self.evaluation_max_bytes)?
                        .unwrap_or(default.max_bytes),
                    max_scanned: positive_count("--evaluation-max-scan", self.evaluation_max_scan)?
                        .unwrap_or(default.max_scanned),
                }
            },
            state_url: self.state_url,
            audit: self.audit,
            audit_table_url: self.audit_table_url,
            admin_listen: self.admin_listen,
            alert_webhook: self.alert_webhook,
        })
    }
}

/// Session threads when none are asked for: half the cores, at least one.
///
/// pgseal runs beside PostgreSQL and the application, and each session thread wakes for its
/// own clients: on a saturated 2-core machine one thread spent PgBouncer's CPU per
/// transaction, two spent 1.1–1.4 times as much for at most 11 % more transactions per second
/// (docs/benchmarks.md, issue 19). Half the cores leaves the rest to the database.
fn default_session_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// A count that must not be zero, when given.
fn positive_count<T: PartialEq + Default>(
    option: &'static str,
    value: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match value {
        Some(v) if v == T::default() => Err(ConfigError::Invalid {
            option,
            message: "must be greater than 0".into(),
        }),
        other => Ok(other),
    }
}

/// Parses a comma-separated list of hosts as libpq's `host` (each `HOST:PORT`, `[IPV6]:PORT`,
/// a socket directory, or `HOST` alone with its port from `ports`: one for all or one per host).
fn parse_upstream_list(value: &str, ports: Option<&str>) -> Result<UpstreamHosts, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        option: "--upstream",
        message: format!("{value:?}: {message}"),
    };
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    let ports: Vec<u16> = match ports {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        option: "--upstream-port",
                        message: format!("{p:?} is not a port from 1 to 65535"),
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    if ports.len() > 1 && ports.len() != items.len() {
        return Err(ConfigError::Invalid {
            option: "--upstream-port",
            message: format!(
                "{} ports for {} hosts: give one port for all, or one per host",
                ports.len(),
                items.len()
            ),
        });
    }
    let mut hosts: Vec<UpstreamAddress> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        if item.is_empty() {
            return Err(invalid(format!("host {n} of the list is empty")));
        }
        let port = ports.get(i).or(ports.first()).copied();
        let address = match port {
            Some(port) if !item.starts_with('/') && !has_port(item) => {
                let host = item
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(item);
                UpstreamAddress {
                    host: host.to_string(),
                    port,
                }
            }
            _ => parse_upstream(item).map_err(|e| match e {
                ConfigError::Invalid { message, .. } if items.len() > 1 => {
                    invalid(format!("host {n}: {message}"))
                }
                other => other,
            })?,
        };
        if hosts.contains(&address) {
            return Err(invalid(format!("{address} is listed twice")));
        }
        hosts.push(address);
    }
    Ok(UpstreamHosts(hosts))
}

/// Whether a TCP host item carries its own port (`HOST:PORT`, `[IPV6]:PORT`; a bare IPv6
/// address has several colons and no brackets, so it carries none).
fn has_port(item: &str) -> bool {
    if item.starts_with('[') {
        return item.contains("]:");
    }
    item.matches(':').count() == 1
}

/// Parses `HOST:PORT`, `[IPV6]:PORT`.
fn parse_upstream(value: &str) -> Result<UpstreamAddress, ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        option: "--upstream",
        message: format!("{value:?}: {message}"),
    };
    if value.starts_with('/') {
        return parse_socket(value).ok_or_else(|| {
            invalid("expected a socket directory (/var/run/postgresql), DIRECTORY:PORT or the socket itself (/var/run/postgresql/.s.PGSQL.5432)")
        });
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected HOST:PORT (or give the ports with --upstream-port)"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(invalid("the port is not a number from 1 to 65535"));
    }
    Ok(UpstreamAddress {
        host: host.to_string(),
        port,
    })
}

/// A Unix-domain socket as libpq names it: a directory (port 5432), `DIRECTORY:PORT`, or the
/// socket file itself (`DIRECTORY/.s.PGSQL.PORT`).
fn parse_socket(value: &str) -> Option<UpstreamAddress> {
    let port = |text: &str| text.parse::<u16>().ok().filter(|&p| p != 0);
    let path = std::path::Path::new(value);
    if let Some(name) = path.file_name().and_then(|n| n.to_str())
        && let Some(number) = name.strip_prefix(".s.PGSQL.")
    {
        let dir = path.parent()?.to_str()?;
        return Some(UpstreamAddress {
            host: if dir.is_empty() { "/" } else { dir }.to_string(),
            port: port(number)?,
        });
    }
    let (dir, port) = match value.rsplit_once(':') {
        Some((dir, number)) => (dir, port(number)?),
        None => (value, 5432),
    };
    let dir = dir.trim_end_matches('/');
    Some(UpstreamAddress {
        host: if dir.is_empty() { "/" } else { dir }.to_string(),
        port,
    })
}

/// Parses a size: bytes, or a number with a unit `KiB`, `MiB`, `GiB` (or `kB`, `MB`, `GB`,
/// taken as powers of 1024 as PostgreSQL does).
pub fn parse_size(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{value:?} is not a size such as 64MiB"))?;
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{value:?} is too large"))
}

/// Parses a duration such as `30s`, `500ms` or `2m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim()).map_err(|e| format!("{value:?}: {e} (e.g. 30s, 500ms)"))
}

/// A size in a config file: a number of bytes or a string with a unit.
fn size_from_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(Some(n)),
        Size::Text(s) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A duration in a config file: a string such as `"30s"`.
fn duration_from_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_complete() {
        let config = Options::default().resolve().unwrap();
        assert_eq!(config.listen, "127.0.0.1:6432");
        assert_eq!(
            config.upstream,
            UpstreamHosts::one(UpstreamAddress {
                host: "127.0.0.1".into(),
                port: 5432
            })
        );
        assert_eq!(config.upstream_target, UpstreamTarget::Any);
        assert_eq!(config.upstream_tls, UpstreamTlsMode::Disable);
        assert_eq!(config.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(config.max_connections, 500);
        assert!(config.client_tls.is_none());
    }

    #[test]
    fn command_line_wins_over_file() {
        let file: Options = toml::from_str(
            "listen = \"0.0.0.0:7000\"\nupstream = \"db:5433\"\nmax-message-size = \"1MiB\"\nstartup-timeout = \"5s\"\n",
        )
        .unwrap();
        let cli = Options {
            listen: Some("127.0.0.1:7001".into()),
            ..Options::default()
        };
        let config = cli.or(file).resolve().unwrap();
        assert_eq!(config.listen, "127.0.0.1:7001");
        assert_eq!(config.upstream.to_string(), "db:5433");
        assert_eq!(config.max_message_size, 1 << 20);
        assert_eq!(config.startup_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        let err = toml::from_str::<Options>("listne = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn upstream_addresses_parse_with_ipv6() {
        assert_eq!(
            parse_upstream("[::1]:5432").unwrap().to_string(),
            "[::1]:5432"
        );
        assert!(parse_upstream("db").is_err());
        assert!(parse_upstream("db:0").is_err());
        assert!(parse_upstream(":5432").is_err());
    }

    #[test]
    fn upstream_lists_parse_as_libpq_reads_them() {
        let list = |value: &str, ports: Option<&str>| {
            parse_upstream_list(value, ports).map(|hosts| hosts.to_string())
        };
        assert_eq!(list("db1:5432", None).unwrap(), "db1:5432");
        assert_eq!(
            list("db1:5432, db2:5433", None).unwrap(),
            "db1:5432,db2:5433"
        );
        assert_eq!(
            list("db1,db2", Some("5432,5433")).unwrap(),
            "db1:5432,db2:5433"
        );
        assert_eq!(
            list("db1,[::1],db3:6000", Some("5433")).unwrap(),
            "db1:5433,[::1]:5433,db3:6000"
        );
        assert_eq!(
            list("/tmp/a:5433,db:5432", None).unwrap(),
            "/tmp/a/.s.PGSQL.5433,db:5432"
        );
        for (value, ports, needle) in [
            ("db1:5432,,db2:5432", None, "host 2 of the list is empty"),
            ("db1:5432,", None, "host 2 of the list is empty"),
            ("db1:5432,db2:70000", None, "host 2: "),
            ("db1:5432,db2", None, "expected HOST:PORT"),
            ("db1:5432,db1:5432", None, "listed twice"),
            ("db1,db2", Some("5432,5433,5434"), "3 ports for 2 hosts"),
            ("db1,db2", Some("x"), "--upstream-port"),
        ] {
            let err = list(value, ports).unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
        }
        // TLS is refused when any host is a Unix socket.
        let mixed = Options {
            upstream: Some("db:5432,/var/run/postgresql".into()),
            upstream_tls: Some(UpstreamTlsMode::Require),
            ..Options::default()
        };
        let err = mixed.resolve().unwrap_err().to_string();
        assert!(err.contains("--upstream-tls"), "{err}");
        let file: Options =
            toml::from_str("upstream = \"a:1,b:2\"\nupstream-target = \"prefer-standby\"\n")
                .unwrap();
        let config = file.resolve().unwrap();
        assert_eq!(config.upstream.len(), 2);
        assert_eq!(config.upstream_target, UpstreamTarget::PreferStandby);
    }

    #[test]
    fn unix_socket_upstreams_parse_as_libpq_names_them() {
        for (value, path) in [
            ("/var/run/postgresql", "/var/run/postgresql/.s.PGSQL.5432"),
            ("/var/run/postgresql/", "/var/run/postgresql/.s.PGSQL.5432"),
            ("/tmp/pg:5433", "/tmp/pg/.s.PGSQL.5433"),
            ("/tmp/pg/.s.PGSQL.6543", "/tmp/pg/.s.PGSQL.6543"),
        ] {
            let address = parse_upstream(value).unwrap();
            assert_eq!(
                address.socket_path().unwrap(),
                PathBuf::from(path),
                "{value}"
            );
            assert_eq!(address.to_string(), path);
        }
        assert!(parse_upstream("/tmp/pg:0").is_err());
        assert!(parse_upstream("/tmp/pg/.s.PGSQL.x").is_err());
        assert!(
            parse_upstream("127.0.0.1:5432")
                .unwrap()
                .socket_path()
                .is_none()
        );
        // Never TLS over a Unix socket.
        let tls = Options {
            upstream: Some("/var/run/postgresql".into()),
            upstream_tls: Some(UpstreamTlsMode::Require),
            ..Options::default()
        };
        let err = tls.resolve().unwrap_err().to_string();
        assert!(err.contains("--upstream-tls"), "{err}");
    }

    #[test]
    fn session_threads_default_to_half_the_cores_and_are_bounded() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = Options::default().resolve().unwrap().session_threads;
        assert_eq!(threads, (cores / 2).max(1));
        for bad in [0, 5000] {
            let options = Options {
                session_threads: Some(bad),
                ..Options::default()
            };
            let err = options.resolve().unwrap_err().to_string();
            assert!(err.contains("--session-threads"), "{err}");
        }
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn inconsistent_options_are_refused() {
        let tls_half = Options {
            tls_cert: Some("c.pem".into()),
            ..Options::default()
        };
        assert!(tls_half.resolve().is_err());
        let ca_without_verify = Options {
            upstream_ca: Some("ca.pem".into()),
            ..Options::default()
        };
        assert!(ca_without_verify.resolve().is_err());
        let tiny = Options {
            max_message_size: Some(10),
            ..Options::default()
        };
        assert!(tiny.resolve().is_err());
    }
}
