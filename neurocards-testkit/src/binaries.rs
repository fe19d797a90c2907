//! The workspace's binaries for tests that run them as processes.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The path of the workspace binary `name` (`neurocards-bot`, `neurocards-worker`), freshly
/// built: the environment variable `override_var` names a prebuilt binary to use instead.
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
