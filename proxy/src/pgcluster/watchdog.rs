//! The watchdog: a small shell process that outlives its parent and cleans up after it.
//!
//! Once the process that started the cluster is gone, however it went (normal exit, panic,
//! `kill -9`), the watchdog stops the server recorded in the cluster's `server.pid` (immediate
//! shutdown, then SIGKILL after ten seconds) and removes the cluster's directory. It runs in its
//! own process group, so a Ctrl-C aimed at its parent does not reach it. A parent that cleans
//! up by itself ends its watchdog with [`Watchdog::dismiss`].

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::ClusterError;

/// The file, in the cluster's directory, holding the running server's process id.
pub const SERVER_PID_FILE: &str = "server.pid";

/// A running watchdog over one cluster directory.
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
}

impl Watchdog {
    /// Starts a watchdog over `base`, for the current process.
    pub fn spawn(base: &Path) -> Result<Watchdog, ClusterError> {
        let child = Command::new("sh")
            .arg("-c")
            .arg(script(std::process::id(), base))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| ClusterError::Spawn {
                program: PathBuf::from("sh"),
                error,
            })?;
        Ok(Watchdog { child })
    }

    /// Ends the watchdog (its whole process group) without letting it act, and reaps it.
    pub fn dismiss(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The shell script: wait for `parent` to go, stop the recorded server, remove `base`.
fn script(parent: u32, base: &Path) -> String {
    let base = shell_quote(&base.display().to_string());
    format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
         server=$(cat {base}/{SERVER_PID_FILE} 2>/dev/null); \
         case \"$server\" in ''|*[!0-9]*) ;; *) \
           kill -QUIT \"$server\" 2>/dev/null; i=0; \
           while kill -0 \"$server\" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; \
           kill -KILL \"$server\" 2>/dev/null;; \
         esac; \
         rm -rf {base}"
    )
}

/// Quotes `text` for a POSIX shell: single quotes, with each `'` written as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn the_script_removes_the_directory_it_was_given() {
        let text = script(42, Path::new("/tmp/pgseal-x"));
        assert!(text.starts_with("while kill -0 42 "));
        assert!(text.ends_with("rm -rf '/tmp/pgseal-x'"));
        assert!(text.contains("'/tmp/pgseal-x'/server.pid"));
    }
}
