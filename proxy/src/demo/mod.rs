//! `pgseal demo`, the embedded default: a throwaway PostgreSQL holding the hospital example,
//! synthetic patients sealed on their way in, and pgseal serving it in-process.
//!
//! The steps, each a method of [`Demo`], so that the command line can show progress and stop
//! between any two of them on Ctrl-C:
//!
//! 1. [`reserve`] the listen address first, so that a taken port is refused before anything is
//!    created;
//! 2. [`Demo::prepare`]: start a [`crate::pgcluster`] cluster, write the example's policy and a
//!    fresh keyring into its directory ([`example`]), and load the schema;
//! 3. [`Demo::serve`]: pgseal on the reserved address, protecting the database with the policy;
//! 4. [`Demo::seed`]: synthetic patients written *through* pgseal as `ehr_app`, so the database
//!    only ever receives sealed values; [`Demo::index`]: the example's search indexes built, as
//!    `pgseal migrate index` does;
//! 5. [`Demo::stop`]: stop serving, stop PostgreSQL (fast shutdown), remove the directory.
//!
//! Everything lives in the cluster's temporary directory, which the cluster's watchdog removes
//! if the process dies without reaching step 5. [`tour`] holds the text printed once ready.

pub mod example;
pub mod tour;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, ServeConfig};
use crate::pgcluster::{Cluster, ClusterDir, ClusterError, InitOptions};
use crate::seed::{SeedError, SeedOptions, SeedReport};
use crate::server::{Server, ServerError};
use example::ExampleFiles;

/// Where pgseal listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";

/// How many patients are written unless told otherwise.
pub const DEFAULT_PATIENTS: u64 = 10_000;

/// How long sessions still open at Ctrl-C may run on before pgseal ends them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Why the demo could not run.
#[derive(Debug, Error)]
pub enum DemoError {
    /// The listen address is taken or invalid.
    #[error("cannot listen on {address}: {error}; choose another address with --listen")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// pgseal's configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// PostgreSQL could not be found, started or removed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A file could not be written.
    #[error("writing {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// The keyring could not be generated or written.
    #[error("generating the keyring: {0}")]
    Keyring(pgseal_keys::Error),
    /// PostgreSQL refused a statement, or a connection failed.
    #[error("{during}: {}", crate::seed::describe(.error))]
    Database {
        /// What the demo was doing.
        during: &'static str,
        /// The error.
        error: tokio_postgres::Error,
    },
    /// pgseal could not start.
    #[error(transparent)]
    Server(ServerError),
    /// Seeding through pgseal failed.
    #[error("seeding through pgseal: {0}")]
    Seed(SeedError),
    /// The example's search indexes could not be built.
    #[error("building the search indexes: {0}")]
    Index(String),
    /// A blocking step panicked or was cancelled.
    #[error("{0} did not finish")]
    Task(&'static str),
}

/// The listen address, bound and held until pgseal takes it over.
#[derive(Debug)]
pub struct Reservation {
    address: String,
    listener: std::net::TcpListener,
}

/// Binds `listen` now, so that a taken port is refused before anything is created.
pub fn reserve(listen: &str) -> Result<Reservation, DemoError> {
    std::net::TcpListener::bind(listen)
        .map(|listener| Reservation {
            address: listen.to_string(),
            listener,
        })
        .map_err(|error| DemoError::Listen {
            address: listen.to_string(),
            error,
        })
}

/// What a person needs to connect, once the demo is up.
#[derive(Clone, Debug)]
pub struct DemoInfo {
    /// Where to connect to pgseal (a wildcard listen address is given as loopback).
    pub pgseal: SocketAddr,
    /// Where PostgreSQL itself listens.
    pub postgres: SocketAddr,
    /// PostgreSQL's superuser.
    pub superuser: String,
    /// Its random password.
    pub superuser_password: String,
    /// The postmaster's process id.
    pub postgres_pid: Option<u32>,
    /// PostgreSQL's major version.
    pub postgres_version: Option<String>,
    /// The directory holding everything (removed on exit).
    pub dir: PathBuf,
    /// The policy, schema and keyring files.
    pub files: ExampleFiles,
}

/// pgseal running in-process.
struct Proxy {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A running demo: PostgreSQL with the example loaded, and pgseal once [`Demo::serve`]d.
pub struct Demo {
    cluster: Cluster,
    files: ExampleFiles,
    proxy: Option<Proxy>,
}

impl Demo {
    /// Starts PostgreSQL in a temporary directory, writes the policy and a fresh keyring there,
    /// and loads the hospital schema (no rows).
    pub async fn prepare() -> Result<Demo, DemoError> {
        let cluster = tokio::task::spawn_blocking(|| {
            let dir = ClusterDir::init(&InitOptions {
                dir_prefix: "pgseal-demo-".to_string(),
                ..InitOptions::default()
            })?;
            dir.start(&[])
        })
        .await
        .map_err(|_| DemoError::Task("starting PostgreSQL"))??;
        let files = example::write_files(cluster.path())?;
        example::load_schema(&cluster).await?;
        Ok(Demo {
            cluster,
            files,
            proxy: None,
        })
    }

    /// Starts pgseal on the reserved address, in front of PostgreSQL, with the example's policy
    /// and keyring; returns the address it listens on.
    pub async fn serve(&mut self, reservation: Reservation) -> Result<SocketAddr, DemoError> {
        let Reservation { address, listener } = reservation;
        let mut config = ServeConfig::new(&address, &self.cluster.address())?;
        config.policy = Some(self.files.policy.clone());
        config.keyring = Some(self.files.keyring.clone());
        config.shutdown_grace = SHUTDOWN_GRACE;
        // Hand the port over: pgseal binds it again at once.
        drop(listener);
        let server = Server::bind(config).await.map_err(|error| match error {
            // Taken between the reservation and now.
            ServerError::Bind { address, source } => DemoError::Listen {
                address,
                error: source,
            },
            other => DemoError::Server(other),
        })?;
        let address = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        self.proxy = Some(Proxy {
            address,
            stop,
            task,
        });
        Ok(address)
    }

    /// Writes synthetic patients through pgseal as `ehr_app`, calling `progress(done, total)`
    /// as [`crate::seed::seed`] does.
    pub async fn seed(
        &self,
        options: &SeedOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<SeedReport, DemoError> {
        let conninfo = example::conninfo(self.info().pgseal, "ehr_app", "ehr_app");
        let client = example::connect(&conninfo).await?;
        crate::seed::seed(&client, options, progress)
            .await
            .map_err(DemoError::Seed)
    }

    /// Builds the example's search indexes (`first_name`'s) on the rows seeded, straight to
    /// PostgreSQL as `pgseal migrate index` does, then has pgseal read its catalog again, so
    /// that the tour's first search by the start of a first name is served from the index.
    pub async fn index(&self) -> Result<(), DemoError> {
        let policy = pgseal_policies::CompiledPolicy::from_toml("hospital.toml", example::POLICY)
            .map_err(|e| DemoError::Index(e.to_string()))?;
        let keyring =
            pgseal_keys::Keyring::load(&self.files.keyring).map_err(DemoError::Keyring)?;
        let mut direct = example::connect(&self.cluster.url(example::DATABASE)).await?;
        crate::migrate::search::build(
            &mut direct,
            &policy,
            &keyring,
            &crate::migrate::Options::default(),
            &mut crate::migrate::Silent,
        )
        .await
        .map_err(|e| DemoError::Index(e.to_string()))?;
        // DDL through pgseal makes it load its catalog (and the completed index) now rather
        // than within its 30 s.
        let through =
            example::connect(&example::conninfo(self.info().pgseal, "ehr_app", "ehr_app")).await?;
        through
            .batch_execute("CREATE TEMPORARY TABLE pgseal_demo_reload (x int)")
            .await
            .map_err(|error| DemoError::Database {
                during: "reloading pgseal's catalog",
                error,
            })
    }

    /// Where everything is.
    pub fn info(&self) -> DemoInfo {
        let pgseal = self
            .proxy
            .as_ref()
            .map(|proxy| reachable(proxy.address))
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let postgres = SocketAddr::from((Ipv4Addr::LOCALHOST, self.cluster.port()));
        DemoInfo {
            pgseal,
            postgres,
            superuser: self.cluster.superuser().to_string(),
            superuser_password: self.cluster.superuser_password().to_string(),
            postgres_pid: self.cluster.server_pid(),
            postgres_version: self.cluster.version(),
            dir: self.cluster.path().to_path_buf(),
            files: self.files.clone(),
        }
    }

    /// Stops pgseal (sessions still open get a second, then 57P01), stops PostgreSQL (fast
    /// shutdown) and removes the directory.
    pub async fn stop(mut self) -> Result<(), DemoError> {
        if let Some(proxy) = self.proxy.take() {
            let _ = proxy.stop.send(());
            let _ = proxy.task.await;
        }
        let cluster = self.cluster;
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .map_err(|_| DemoError::Task("stopping PostgreSQL"))??;
        Ok(())
    }
}

/// The address to connect to for a listener on `address`: loopback for a wildcard.
fn reachable(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, address.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, address.port()))
        }
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:6432".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:6432");
        let any6: SocketAddr = "[::]:6432".parse().unwrap();
        assert_eq!(reachable(any6).to_string(), "[::1]:6432");
        let own: SocketAddr = "192.0.2.1:6432".parse().unwrap();
        assert_eq!(reachable(own), own);
    }

    #[test]
    fn a_taken_port_is_refused_by_reserve() {
        let held = reserve("127.0.0.1:0").unwrap();
        let port = held.listener.local_addr().unwrap().port();
        let error = reserve(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(error.to_string().contains("--listen"), "{error}");
    }
}
