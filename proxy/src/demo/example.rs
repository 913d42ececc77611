//! The hospital example, embedded in the binary so that `pgseal demo` works from an installed
//! binary: its schema is loaded into the demo's database, its policy written beside it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pgseal_keys::KeyringFile;
use tokio_postgres::{Client, NoTls};

use super::DemoError;
use crate::pgcluster::Cluster;

/// `policies/examples/hospital.sql`: roles, tables, indexes and grants.
pub const SCHEMA: &str = include_str!("../../../policies/examples/hospital.sql");

/// `policies/examples/hospital.toml`: the sealed columns and each role's view.
pub const POLICY: &str = include_str!("../../../policies/examples/hospital.toml");

/// The database the demo creates and protects.
pub const DATABASE: &str = "ehr";

/// The example's roles, each with its password (the example's demo passwords are the names).
pub const ROLES: [&str; 3] = ["ehr_app", "ehr_billing", "ehr_admin"];

/// The files pgseal serves the example with.
#[derive(Clone, Debug)]
pub struct ExampleFiles {
    /// The policy (`hospital.toml`).
    pub policy: PathBuf,
    /// A fresh keyring (0600).
    pub keyring: PathBuf,
    /// The schema (`hospital.sql`), for reading.
    pub schema: PathBuf,
}

/// Writes the policy, the schema and a freshly generated keyring into `dir`.
pub fn write_files(dir: &Path) -> Result<ExampleFiles, DemoError> {
    let files = ExampleFiles {
        policy: dir.join("hospital.toml"),
        keyring: dir.join("keyring.toml"),
        schema: dir.join("hospital.sql"),
    };
    for (path, text) in [(&files.policy, POLICY), (&files.schema, SCHEMA)] {
        std::fs::write(path, text).map_err(|error| DemoError::Write {
            path: path.clone(),
            error,
        })?;
    }
    KeyringFile::generate()
        .and_then(|keyring| keyring.write_new(&files.keyring))
        .map_err(DemoError::Keyring)?;
    Ok(files)
}

/// Creates [`DATABASE`] and loads the schema into it, as the superuser, straight into
/// PostgreSQL (it holds no rows: patients go in through pgseal).
pub async fn load_schema(cluster: &Cluster) -> Result<(), DemoError> {
    let admin = connect(&cluster.url("postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await
        .map_err(|error| DemoError::Database {
            during: "creating the demo database",
            error,
        })?;
    drop(admin);
    let ehr = connect(&cluster.url(DATABASE)).await?;
    ehr.batch_execute(SCHEMA)
        .await
        .map_err(|error| DemoError::Database {
            during: "loading hospital.sql",
            error,
        })
}

/// A libpq-style connection string for `role` (password: its name) on [`DATABASE`] at
/// `address`, without TLS.
pub fn conninfo(address: SocketAddr, role: &str, password: &str) -> String {
    format!(
        "host={} port={} dbname={DATABASE} user={role} password={password} sslmode=disable",
        address.ip(),
        address.port()
    )
}

/// Connects with `config` and drives the connection on the current runtime.
pub async fn connect(config: &str) -> Result<Client, DemoError> {
    let (client, connection) = tokio_postgres::connect(config, NoTls)
        .await
        .map_err(|error| DemoError::Database {
            during: "connecting",
            error,
        })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_policy_is_the_hospital_example_and_valid() {
        assert!(SCHEMA.contains("CREATE TABLE IF NOT EXISTS public.patients"));
        let policy = pgseal_policies::CompiledPolicy::from_toml("hospital.toml", POLICY);
        assert!(policy.is_ok(), "{:?}", policy.err());
    }

    #[test]
    fn every_role_of_the_tour_is_in_the_schema_and_the_policy() {
        for role in ROLES {
            assert!(
                SCHEMA.contains(&format!("CREATE ROLE {role} LOGIN")),
                "{role}"
            );
            assert!(POLICY.contains(&format!("\"{role}\"")), "{role}");
        }
    }
}
