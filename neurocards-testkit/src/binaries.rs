//! The workspace's binaries for tests that run them as processes.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The path of the workspace binary `name` (`neurocards-bot`, `neurocards-worker`,
/// `neurocards-admin`), freshly built: the environment variable `override_var` names a
/// prebuilt binary to use instead.
///
/// The first call in a test process runs `cargo build --workspace --bins` (same profile and
/// target directory as the running test) so that a binary left over from an older build is
/// never run; building every binary with one command keeps one feature set, so later runs are
/// no-ops for cargo.
pub fn workspace_binary(name: &str, override_var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(override_var) {
        return PathBuf::from(p);
    }
    let dir = profile_dir();
    build_once(&dir);
    dir.join(name)
}

/// A command for a workspace binary run as a service under test: only `env` (plus `PATH`) in
/// its environment, no stdin, stdout discarded, stderr shown with the test's output, and killed
/// when the child handle is dropped.
pub fn service_command<K, V>(
    binary: &std::path::Path,
    env: impl IntoIterator<Item = (K, V)>,
) -> tokio::process::Command
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// `target/<profile>` of the running test executable.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().expect("the test executable has a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn build_once(dir: &std::path::Path) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--workspace", "--bins"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd.status().expect("cargo can be run");
        assert!(status.success(), "cargo build --workspace --bins failed");
    });
}

/// A free `127.0.0.1` address for a spawned service's HTTP server (bound and released at once,
/// so another process could take it in between; good enough for tests).
pub fn free_local_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`, …) to a spawned child with the system's
/// `kill`; returns whether it was delivered (false once the child has been reaped).
pub fn send_signal(child: &tokio::process::Child, signal: &str) -> bool {
    let Some(pid) = child.id() else { return false };
    std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends SIGTERM and waits for the child to exit; returns its exit status and how long it
/// took, or `None` when it did not exit within `limit` (it is then killed).
pub async fn terminate(
    child: &mut tokio::process::Child,
    limit: std::time::Duration,
) -> Option<(std::process::ExitStatus, std::time::Duration)> {
    let started = std::time::Instant::now();
    if !send_signal(child, "TERM") {
        return None;
    }
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => Some((status, started.elapsed())),
        _ => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            None
        }
    }
}

/// The log lines of a spawned child — its stdout (where the binaries log) and stderr (where
/// they report a failed start) — collected as they come and echoed to the test's own stderr,
/// so they still show with the test output.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CapturedLog {
    /// Takes whichever of the child's stdout and stderr were piped (spawn it with
    /// `.stdout(Stdio::piped()).stderr(Stdio::piped())`) and collects their lines in the
    /// background until the child closes them.
    pub fn capture(child: &mut tokio::process::Child, label: &str) -> Self {
        let log = Self::default();
        if let Some(out) = child.stdout.take() {
            log.collect(out, label);
        }
        if let Some(err) = child.stderr.take() {
            log.collect(err, label);
        }
        log
    }

    fn collect(&self, stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, label: &str) {
        use tokio::io::AsyncBufReadExt as _;
        let lines = self.lines.clone();
        let label = label.to_owned();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[{label}] {line}");
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether some line so far contains every one of `parts`.
    pub fn contains_all(&self, parts: &[&str]) -> bool {
        self.lines().iter().any(|l| parts.iter().all(|p| l.contains(p)))
    }

    /// Waits until some line contains every one of `parts`; returns whether one did within
    /// `timeout`.
    pub async fn wait_for(&self, parts: &[&str], timeout: std::time::Duration) -> bool {
        self.wait(timeout, |log| log.contains_all(parts)).await
    }

    /// Waits until `condition` holds; returns whether it did within `timeout`.
    pub async fn wait(
        &self,
        timeout: std::time::Duration,
        condition: impl Fn(&Self) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The path of `neurocards-admin`, freshly built (or `NEUROCARDS_ADMIN_BIN`).
pub fn admin_binary() -> PathBuf {
    workspace_binary("neurocards-admin", "NEUROCARDS_ADMIN_BIN")
}
