//! The account that runs the server: the current user, or the `postgres` user when running as
//! root (`initdb` and `postgres` refuse to run as root).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Uid, User, chown};

use super::ClusterError;

/// Who owns the cluster's files and runs its processes.
#[derive(Clone, Copy, Debug)]
pub struct ServerAccount {
    ids: Option<(Uid, Gid)>,
}

impl ServerAccount {
    /// The current user, or the `postgres` user when running as root.
    pub fn detect() -> Result<ServerAccount, ClusterError> {
        if !Uid::effective().is_root() {
            return Ok(ServerAccount { ids: None });
        }
        let user = User::from_name("postgres")
            .map_err(ClusterError::UserLookup)?
            .ok_or(ClusterError::NoPostgresUser)?;
        Ok(ServerAccount {
            ids: Some((user.uid, user.gid)),
        })
    }

    /// Gives `path` to the server's account (a no-op unless running as root).
    pub fn own(&self, path: &Path) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid)).map_err(|errno| ClusterError::Io {
                action: "giving to the postgres user",
                path: path.to_path_buf(),
                error: errno.into(),
            })?;
        }
        Ok(())
    }

    /// A command that runs `program` as the server's account, in the C locale, without
    /// `PGDATA` from the environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command.env("LC_ALL", "C").env_remove("PGDATA");
        command
    }
}
