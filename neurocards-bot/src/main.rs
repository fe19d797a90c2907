//! The Telegram bot process: configuration → store → adapters → conversation, served by
//! polling (one process at a time) or by webhook (any number of replicas on PostgreSQL), plus
//! the HTTP surface on `HTTP_ADDR`. Stops gracefully on SIGTERM or Ctrl-C.
//!
//! Without a PostgreSQL `DATABASE_URL` the bot runs everything in this one process on the
//! embedded store (`neurocards.db` in `DATA_DIR`), the generation pipeline included; with
//! PostgreSQL it runs the pipeline too when `ALL_IN_ONE=1`.
//!
//! `neurocards-bot migrate` applies the migrations of the configured store and exits.

mod app;
mod polling;
mod polling_lock;

use anyhow::Context as _;
use neurocards_core::config::Settings;
use neurocards_core::wiring::OpenedStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    neurocards_core::telemetry::init(settings.log_format);
    let store = OpenedStore::open(&settings).await.context("opening the store")?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        tracing::info!(store = %store.describe(), "migrations applied");
        store.close().await;
        return Ok(());
    }
    // The embedded store serves one process: a second bot on the same file would run a second
    // pipeline and poll Telegram twice.
    let _sole_process = match &store {
        OpenedStore::Sqlite(sqlite) => {
            let lock = neurocards_core::sqlite::FilePollingLock::try_acquire(sqlite)
                .with_context(|| format!("locking {}", sqlite.path().display()))?;
            match lock {
                Some(lock) => Some(lock),
                None => anyhow::bail!(
                    "another neurocards-bot is running on {} (the embedded store serves one \
                     process; use PostgreSQL to run several)",
                    sqlite.path().display()
                ),
            }
        }
        OpenedStore::Postgres(_) => None,
    };
    tracing::info!(
        store = %store.describe(),
        mode = if settings.all_in_one { "all-in-one (bot and pipeline)" } else { "bot only" },
        "neurocards-bot starting"
    );
    let result = app::run(settings, store.clone(), neurocards_core::shutdown::signal()).await;
    store.close().await;
    result
}
