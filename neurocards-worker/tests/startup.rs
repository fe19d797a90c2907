//! The binary refuses to start on bad configuration with one line naming what is wrong.

use std::process::Command;

fn worker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurocards-worker"));
    cmd.env_clear().current_dir(env!("CARGO_TARGET_TMPDIR"));
    cmd
}

#[test]
fn a_worker_on_the_embedded_store_is_refused_with_a_sentence() {
    for url in [None, Some("sqlite://neurocards.db")] {
        let mut cmd = worker();
        cmd.env("BOT_TOKEN", "1:x").env("KIE_API_KEY", "k");
        if let Some(url) = url {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().expect("run the worker");
        assert_eq!(out.status.code(), Some(2), "{url:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("separate workers need PostgreSQL"), "{err}");
        assert!(err.contains("run neurocards-bot alone"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_worker_without_kie_keys_refuses_to_start() {
    let out = worker()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("BOT_TOKEN", "1:x")
        .output()
        .expect("run the worker");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no KIE API key"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn migrate_needs_only_the_database_url() {
    let out = worker().arg("migrate").output().expect("run the worker");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need PostgreSQL"));
}
