//! The Neurocards worker: claims generation jobs from PostgreSQL and runs them through the
//! pipeline, `WORKER_CONCURRENCY` at a time, until SIGTERM or Ctrl-C. Serves `/healthz` and
//! `/metrics` on `WORKER_HTTP_ADDR`.
//!
//! Separate workers need PostgreSQL: on the embedded store the bot runs the pipeline itself,
//! and a worker refuses to start with a sentence saying so.
//!
//! `neurocards-worker migrate` applies the database migrations and exits.

use anyhow::Context as _;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clap::{Parser, Subcommand};
use neurocards_core::config::{Settings, StoreLocation};
use neurocards_core::kie::{collect_keys, KieError};
use neurocards_core::metrics::{Metrics, CONTENT_TYPE};
use neurocards_core::pipeline::{Pipeline, PipelineMetrics};
use neurocards_core::web::{self, HttpLimits};
use neurocards_core::wiring::{self, Adapters};
use neurocards_core::{postgres, telemetry};
use std::process::ExitCode;
use std::sync::Arc;

/// The Neurocards worker: runs generation jobs from PostgreSQL. Settings come from the
/// environment (and `.env`); without a subcommand it works until SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "neurocards-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<WorkerCommand>,
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
    /// Apply the PostgreSQL migrations (DATABASE_URL) and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env file is normal (production sets the environment itself).
    let _ = dotenvy::dotenv();
    if let Some(WorkerCommand::Migrate) = cli.command {
        return migrate().await;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("neurocards-worker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if settings.store.is_embedded() {
        eprintln!("neurocards-worker: {EMBEDDED_STORE_REFUSAL}");
        return ExitCode::from(2);
    }
    telemetry::init(settings.log_format);
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "worker stopped with an error");
            eprintln!("neurocards-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why a worker does not run on the embedded store.
const EMBEDDED_STORE_REFUSAL: &str =
    "separate workers need PostgreSQL (DATABASE_URL=postgres://…). \
     The embedded SQLite store (DATABASE_URL unset or sqlite://…) serves one process: run \
     neurocards-bot alone, it runs the pipeline itself";

/// `migrate`: needs only a PostgreSQL `DATABASE_URL`.
async fn migrate() -> ExitCode {
    telemetry::init(telemetry::LogFormat::Text);
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty());
    let Some(url) = url.filter(|u| !neurocards_core::sqlite::is_sqlite_url(u)) else {
        eprintln!("neurocards-worker: {EMBEDDED_STORE_REFUSAL}");
        return ExitCode::from(2);
    };
    let result = async {
        let pool = postgres::connect(&url, 2).await?;
        postgres::migrate(&pool).await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("neurocards-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Checked before touching the database: without a key there is nothing to do.
    if collect_keys(|k| std::env::var(k).ok()).is_empty() {
        return Err(KieError::NoKeys.into());
    }
    let StoreLocation::Postgres(url) = &settings.store else {
        anyhow::bail!(EMBEDDED_STORE_REFUSAL);
    };
    let pool = postgres::connect(url.expose(), settings.database_max_connections).await?;
    postgres::migrate(&pool).await?;
    let stores = postgres::stores(&pool, wiring::queue_config(&settings));
    // The keys' budgets and states are the fleet's, in the database.
    let provider = wiring::kie_provider_from_env(&settings, stores.keys.clone())?;
    let adapters = Adapters::build(&settings, stores, provider)?;
    let (stop_balances, balances_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wiring::refresh_key_balances(
        adapters.provider.clone(),
        settings.kie_balance_every,
        async {
            let _ = balances_stopped.await;
        },
    ));

    let mut config = wiring::pipeline_config(&settings);
    if let Some(url) = &config.callback_url {
        config.callbacks_confirmed = wiring::callback_route_answers(url).await;
        if !config.callbacks_confirmed {
            tracing::warn!(
                "KIE callbacks are configured (PUBLIC_BASE_URL) but the bot does not answer at \
                 PUBLIC_BASE_URL/kie/callback/…: check that the bot runs with the same \
                 PUBLIC_BASE_URL and KIE_CALLBACK_SECRET (or BOT_TOKEN). Jobs poll KIE at the \
                 normal rate meanwhile"
            );
        }
    }
    tracing::info!(
        worker = %config.worker_id,
        concurrency = config.concurrency,
        callbacks = config.callback_url.is_some() && config.callbacks_confirmed,
        llm = adapters.prompts.has_llm(),
        "worker starting"
    );
    let metrics = Arc::new(PipelineMetrics::default());
    let pipeline = Pipeline::with_metrics(adapters.pipeline_deps(), config, metrics.clone());

    let listener =
        tokio::net::TcpListener::bind(settings.worker_http_addr).await.with_context(|| {
            format!("WORKER_HTTP_ADDR {} cannot be bound", settings.worker_http_addr)
        })?;
    let http_state = HttpState { metrics };
    let metrics_route = Router::new().route("/metrics", get(render_metrics));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(web::protect(metrics_route, settings.metrics_token.as_ref()))
        .with_state(http_state);
    if settings.metrics_token.is_none() {
        tracing::warn!(
            "METRICS_TOKEN is not set: /metrics is open to anyone who can reach WORKER_HTTP_ADDR"
        );
    }
    let limits = HttpLimits {
        max_connections: settings.http_max_connections as usize,
        ..HttpLimits::default()
    };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve_with(listener, app, limits, async {
        let _ = http_stopped.await;
    }));

    let report = pipeline.run(neurocards_core::shutdown::signal()).await;
    tracing::info!(?report, "pipeline finished");
    let _ = stop_http.send(());
    let _ = stop_balances.send(());
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("HTTP server failed")),
        Err(e) => Err(anyhow::Error::new(e).context("HTTP server task failed")),
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<PipelineMetrics>,
}

async fn render_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut body = Metrics::global().render();
    body.push_str(&state.metrics.render());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}
