//! Running the real `pgseal migrate` command against the harness's cluster, for the tests of
//! `pgseal migrate`.

use std::path::Path;
use std::process::{Command, Output};

use crate::{Cluster, pgseal_binary};

/// `pgseal migrate <operation>` on `database`, with `policy` and `keyring` (never a root key
/// from the environment) and `extra` arguments.
pub fn command(
    cluster: &Cluster,
    database: &str,
    operation: &str,
    policy: &Path,
    keyring: &Path,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(pgseal_binary());
    command
        .args([
            "migrate",
            operation,
            "--database-url",
            &cluster.url(database),
        ])
        .arg("--policy")
        .arg(policy)
        .arg("--keyring")
        .arg(keyring)
        .args(extra)
        .env_remove("PGSEAL_ROOT_KEY");
    command
}

/// Runs `command`, failing the test with its output unless it succeeds.
pub fn run_ok(mut command: Command) -> Output {
    let output = command.output().expect("run pgseal");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        stdout_of(&output),
        stderr_of(&output)
    );
    output
}

/// Runs `command`, failing the test unless it exits with status 1; returns its stderr.
pub fn run_refused(mut command: Command) -> String {
    let output = command.output().expect("run pgseal");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{command:?} was not refused: {}\n{}",
        stdout_of(&output),
        stderr_of(&output)
    );
    stderr_of(&output)
}

/// A command's standard output, as text.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
