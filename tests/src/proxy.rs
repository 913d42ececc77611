//! pgseal in front of the test cluster: in-process (fast, for most tests) or as the real
//! binary (for the command line, signals and logs).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgseal::config::ServeConfig;
use pgseal::server::Server;
use tokio::sync::oneshot;

pub use crate::binaries::pgseal_binary;
use crate::cluster::Cluster;

/// A pgseal running inside the test's tokio runtime.
pub struct TestProxy {
    address: SocketAddr,
    admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// Starts pgseal on a free loopback port in front of `cluster`, with every default.
    pub async fn start(cluster: &Cluster) -> TestProxy {
        Self::start_with(cluster, |_| {}).await
    }

    /// Starts pgseal in front of `cluster`, after `adjust` has changed its configuration.
    pub async fn start_with(cluster: &Cluster, adjust: impl FnOnce(&mut ServeConfig)) -> TestProxy {
        let mut config = ServeConfig::new("127.0.0.1:0", &cluster.address())
            .expect("a valid test configuration");
        // Tests stop their proxy while their clients are still connected: end them promptly.
        config.shutdown_grace = Duration::from_millis(100);
        adjust(&mut config);
        let server = Server::bind(config).await.expect("pgseal binds");
        let address = server.local_addr();
        let admin = server.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestProxy {
            address,
            admin,
            stop: Some(stop),
            stopped: Some(task),
        }
    }

    /// The address pgseal listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The admin endpoint's address, when `admin_listen` was set.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The port pgseal listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// A tokio-postgres configuration string for `user`/`password` on `database` through pgseal.
    pub fn conninfo(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={database} sslmode=disable",
            self.port()
        )
    }

    /// Connects through pgseal as the cluster's superuser without TLS.
    pub async fn connect(&self, cluster: &Cluster, database: &str) -> tokio_postgres::Client {
        let conninfo = self.conninfo(cluster.superuser(), cluster.superuser_password(), database);
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting through pgseal: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Stops pgseal as SIGTERM would, and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.stopped.take() {
            let _ = task.await;
        }
    }
}

/// The pgseal binary started with `pgseal serve` and arguments; killed when dropped.
pub struct ProxyProcess {
    /// The child process.
    pub child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Where its standard error (the logs) goes: a file, so that a chatty proxy never blocks on
    /// a full pipe.
    log: tempfile::NamedTempFile,
}

impl ProxyProcess {
    /// Starts `pgseal serve --listen 127.0.0.1:<free port>` with `args`, and waits until it
    /// accepts connections (or panics with its logs after 20 seconds).
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> ProxyProcess {
        let port = crate::cluster::free_port().expect("a free port");
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let stderr = log.reopen().expect("open the log file");
        let mut command = Command::new(pgseal_binary());
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start pgseal");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let logs = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("pgseal exited with {status} before listening: {logs}");
            }
            assert!(
                Instant::now() < deadline,
                "pgseal did not listen on port {port} within 20s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ProxyProcess { child, port, log }
    }

    /// What the process has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    /// Sends `signal` (SIGHUP: reload).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Waits for the process to exit (up to `timeout`) and returns its exit status and logs.
    pub fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "pgseal did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
