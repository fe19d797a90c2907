//! The Telegram bot process: configuration → database → adapters → conversation, served by
//! polling (one process at a time, behind a PostgreSQL advisory lock) or by webhook (any number
//! of replicas), plus the HTTP surface on `HTTP_ADDR`. Stops gracefully on SIGTERM or Ctrl-C.
//!
//! `neurocards-bot migrate` applies the migrations and exits.

mod app;
mod polling;

use anyhow::Context as _;
use neurocards_core::config::Settings;

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
    let pool = neurocards_core::postgres::connect(
        settings.database_url.expose(),
        settings.database_max_connections,
    )
    .await
    .context("opening the database")?;
    neurocards_core::postgres::migrate(&pool).await.context("migrating the database")?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        tracing::info!("migrations applied");
        return Ok(());
    }
    app::run(settings, pool, neurocards_core::shutdown::signal()).await
}
