//! Building the production adapters from [`Settings`]: one place that turns configuration into
//! the store (PostgreSQL or the embedded SQLite file), the KIE provider, the prompt engine and
//! the Telegram adapters, so that the worker, the bot and any other host wire them the same way.
//!
//! This is the only place that chooses a backend: everything it hands out is a port.
//! Nothing here runs anything: the host decides what to start with the pieces.

use crate::config::{Settings, StoreLocation};
use crate::kie::{collect_keys, KieConfig, KieError, KieProvider};
use crate::metrics::Metrics;
use crate::openai::{OpenAiClient, OpenAiConfig, OpenAiError};
use crate::pipeline::{PipelineConfig, PipelineDeps, WaitPolicy};
use crate::prompts::LlmPromptEngine;
use crate::queue_config::QueueConfig;
use crate::safe_fetch::{FetchPolicy, SafeFetch};
use crate::secret::Secret;
use crate::sqlite::SqliteStore;
use crate::stores::{BotStores, Stores};
use crate::telegram::{build_bot, BotOptions, BuildBotError, TelegramNotifier, TelegramPhotos};
use crate::templates::{CatalogueError, TemplateCatalogue};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// The opened store, migrated: the one value that knows which backend runs.
#[derive(Debug, Clone)]
pub enum OpenedStore {
    Postgres(PgPool),
    Sqlite(SqliteStore),
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error(transparent)]
    Postgres(#[from] crate::postgres::ConnectError),
    #[error(transparent)]
    Sqlite(#[from] crate::sqlite::SqliteError),
}

impl OpenedStore {
    /// Opens the store `settings` name (`DATABASE_URL`, `DATA_DIR`) and applies its
    /// migrations. PostgreSQL gets a pool of `DATABASE_MAX_CONNECTIONS`.
    pub async fn open(settings: &Settings) -> Result<Self, OpenStoreError> {
        match &settings.store {
            StoreLocation::Postgres(url) => {
                let pool =
                    crate::postgres::connect(url.expose(), settings.database_max_connections)
                        .await?;
                crate::postgres::migrate(&pool).await?;
                Ok(Self::Postgres(pool))
            }
            StoreLocation::Sqlite(path) => {
                Ok(Self::Sqlite(SqliteStore::open(&path.to_string_lossy()).await?))
            }
        }
    }

    /// Every storage port on this store (on the embedded store, every bundle of one opened
    /// store shares its in-process wake-ups).
    pub fn stores(&self, config: QueueConfig) -> Stores {
        match self {
            Self::Postgres(pool) => crate::postgres::stores(pool, config),
            Self::Sqlite(store) => crate::sqlite::stores(store, config),
        }
    }

    /// The bot's own storage ports on this store.
    pub fn bot_stores(&self) -> BotStores {
        match self {
            Self::Postgres(pool) => crate::postgres::bot_stores(pool),
            Self::Sqlite(store) => crate::sqlite::bot_stores(store),
        }
    }

    /// The readiness check of the store (`/readyz`): a query that must answer.
    pub fn readiness(&self) -> Arc<dyn crate::web::Readiness> {
        match self {
            Self::Postgres(pool) => Arc::new(pool.clone()),
            Self::Sqlite(store) => Arc::new(store.clone()),
        }
    }

    /// `postgres` or `sqlite <file>`, for the start-up line.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(_) => "postgres".to_owned(),
            Self::Sqlite(store) => format!("sqlite {}", store.path().display()),
        }
    }

    /// Closes the store's connections (the embedded store checkpoints its journal).
    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(store) => store.close().await,
        }
    }
}

/// Why the adapters could not be built. None of these is retryable: fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// No KIE key in `KIE_API_KEY`, `KIE_API_KEYS` or `KIE_API_KEY_1..N`, a bad model name, or
    /// an HTTP client that could not be built.
    #[error(transparent)]
    Kie(#[from] KieError),
    /// The OpenAI client could not be built.
    #[error("OpenAI client: {0}")]
    OpenAi(#[from] OpenAiError),
    /// The Telegram client could not be built (`TELEGRAM_API_URL`).
    #[error(transparent)]
    Telegram(#[from] BuildBotError),
    /// The template catalogue (`TEMPLATES_PATH`) could not be read.
    #[error("TEMPLATES_PATH: {0}")]
    Templates(#[from] CatalogueError),
    /// An HTTP client could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Http(String),
}

/// The queue settings from the configuration (`JOB_LEASE`, `PER_USER_IN_FLIGHT`,
/// `MAX_RESCUES`, `JOB_DEADLINE`).
pub fn queue_config(settings: &Settings) -> QueueConfig {
    QueueConfig {
        lease: settings.job_lease,
        per_user_cap: settings.per_user_in_flight,
        max_rescues: settings.max_rescues,
        job_deadline: settings.job_deadline,
        ..QueueConfig::default()
    }
}

/// The KIE adapter settings from the configuration and the given keys.
pub fn kie_config(settings: &Settings, keys: Vec<Secret>) -> KieConfig {
    let mut config = KieConfig::new(keys);
    config.base_url = settings.kie_base_url.clone();
    config.upload_url = settings.kie_upload_url.clone();
    config.models = settings.kie_models.clone();
    config.callback_hmac_key = settings.kie_callback_hmac_key.clone();
    config.timeouts.request = settings.kie_request_timeout;
    config
}

/// The KIE provider with the keys of the process environment (see [`collect_keys`]), drawing
/// its requests from `budgets` (the store's shared key state, so that the whole fleet keeps
/// KIE's per-key limits). Fails with [`KieError::NoKeys`] when none is set.
pub fn kie_provider_from_env(
    settings: &Settings,
    budgets: Arc<dyn crate::ports::KeyBudgets>,
) -> Result<KieProvider, WiringError> {
    let keys = collect_keys(|k| std::env::var(k).ok());
    Ok(KieProvider::with_budgets(kie_config(settings, keys), budgets)?)
}

/// Reads the KIE keys' balances into the shared key state: every `every`, fleet-wide (one
/// process reads each key per period, whichever claims it first), until `stop` ends.
pub async fn refresh_key_balances(
    provider: Arc<KieProvider>,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        provider.refresh_balances(every).await;
        // Look again well within the period, so that a reader that stopped is replaced soon.
        let nap = (every / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(nap) => {}
        }
    }
}

/// The pipeline settings from the configuration: concurrency, retry schedules, heartbeats at a
/// third of the lease, the generation deadline, and callbacks when a public URL is set.
pub fn pipeline_config(settings: &Settings) -> PipelineConfig {
    let lease = settings.job_lease;
    PipelineConfig {
        concurrency: settings.worker_concurrency as usize,
        heartbeat_interval: (lease / 3).max(Duration::from_millis(100)),
        rescue_interval: (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(15)),
        retry: settings.retry.clone(),
        wait: WaitPolicy { deadline: settings.generation_deadline, ..WaitPolicy::default() },
        callback_url: settings.kie_callback_url(),
        lost_task_wait: settings.lost_task_wait,
        ..PipelineConfig::default()
    }
}

/// Asks the KIE callback route at `callback_url` whether it is served (a `?probe=1` POST the
/// route answers 200 only when the path secret matches), trying for about ten seconds in case
/// the bot is starting too. `false` means KIE's callbacks would not reach anyone: the caller
/// should warn and poll at the normal rate. The URL is never logged (it holds the secret).
pub async fn callback_route_answers(callback_url: &Secret) -> bool {
    let Ok(http) = crate::http::client(crate::http::HttpTimeouts {
        connect: Duration::from_secs(3),
        request: Duration::from_secs(5),
    }) else {
        return false;
    };
    let probe = crate::url_query::append_query(callback_url.expose(), &[("probe", "1")]);
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match http.post(&probe).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => tracing::debug!(status = r.status().as_u16(), "callback route probe refused"),
            Err(e) => tracing::debug!(error = %e.without_url(), "callback route probe failed"),
        }
    }
    false
}

/// The policy of outbound fetches of URLs we did not build (`DOWNLOAD_CONCURRENCY`,
/// `FETCH_ALLOW_LOCAL`).
pub fn fetch_policy(settings: &Settings) -> FetchPolicy {
    FetchPolicy {
        allow_local: settings.fetch_allow_local,
        concurrency: settings.download_concurrency as usize,
        ..FetchPolicy::default()
    }
}

/// The models, lengths and prices a seller chooses from: the configured KIE models (primary
/// first; a slug the KIE adapter does not know is left out) and `VIDEO_PRICES`.
#[cfg(feature = "telegram")]
pub fn video_choices(settings: &Settings) -> crate::conversation::formats::VideoChoices {
    use crate::conversation::formats::{ModelChoice, VideoChoices, VideoPrice};
    let models = settings
        .kie_models
        .iter()
        .filter_map(|slug| crate::kie::VideoModel::parse(slug).ok())
        .map(|m| ModelChoice {
            slug: m.slug().to_owned(),
            name: m.display_name(),
            durations: m.durations().to_vec(),
        })
        .collect();
    let prices = settings
        .video_prices
        .iter()
        .map(|p| VideoPrice {
            model: p.model.clone(),
            duration_secs: p.duration_secs,
            credits: p.credits,
        })
        .collect();
    VideoChoices { models, prices }
}

/// Product images from marketplace links, fetched under the download policy with a timeout
/// short enough for a seller waiting in the chat.
#[cfg(feature = "telegram")]
pub fn marketplace_images(
    settings: &Settings,
) -> Result<crate::marketplace::PageImages, WiringError> {
    let policy = FetchPolicy {
        timeouts: crate::http::HttpTimeouts {
            connect: std::time::Duration::from_secs(5),
            request: std::time::Duration::from_secs(20),
        },
        ..fetch_policy(settings)
    };
    let fetch = SafeFetch::new(policy).map_err(|e| WiringError::Http(e.to_string()))?;
    Ok(crate::marketplace::PageImages::new(fetch))
}

/// The template catalogue: `TEMPLATES_PATH` when set, the built-in one otherwise.
pub fn templates(settings: &Settings) -> Result<TemplateCatalogue, WiringError> {
    Ok(TemplateCatalogue::from_env_or_builtin(settings.templates_path.as_deref())?)
}

/// The prompt engine: the LLM (`OPENAI_*`) when `OPENAI_API_KEY` is set, the templates alone
/// otherwise; own-idea refinement follows `templates`.
pub fn prompt_engine(
    settings: &Settings,
    templates: &TemplateCatalogue,
) -> Result<LlmPromptEngine, WiringError> {
    let llm = match &settings.openai_api_key {
        Some(key) => {
            let mut config = OpenAiConfig::new(key.clone());
            config.base_url = settings.openai_base_url.clone();
            config.model = settings.openai_model.clone();
            Some(OpenAiClient::new(config)?)
        }
        None => None,
    };
    Ok(LlmPromptEngine::new(llm, crate::domain::Prompt::MAX_CHARS).with_catalogue(templates))
}

/// Every adapter a host needs: the storage ports of one store, and the external APIs.
#[derive(Clone)]
pub struct Adapters {
    pub stores: Stores,
    pub provider: Arc<KieProvider>,
    pub prompts: Arc<LlmPromptEngine>,
    pub notifier: Arc<TelegramNotifier>,
    pub photos: Arc<TelegramPhotos>,
    pub templates: Arc<TemplateCatalogue>,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters").finish_non_exhaustive()
    }
}

impl Adapters {
    /// Builds the external adapters from `settings` beside `stores`, with the KIE provider
    /// given (see [`kie_provider_from_env`]). The LLM is used only when `OPENAI_API_KEY` is
    /// set. Must be called inside a Tokio runtime (the Telegram throttle is spawned on it).
    pub fn build(
        settings: &Settings,
        stores: Stores,
        provider: KieProvider,
    ) -> Result<Self, WiringError> {
        let templates = templates(settings)?;
        let prompts = prompt_engine(settings, &templates)?;
        let bot =
            build_bot(&settings.bot_token, &settings.telegram_api_url, &BotOptions::default())?;
        let downloads =
            SafeFetch::new(fetch_policy(settings)).map_err(|e| WiringError::Http(e.to_string()))?;
        Ok(Self {
            stores,
            provider: Arc::new(provider),
            prompts: Arc::new(prompts),
            notifier: Arc::new(
                TelegramNotifier::new(bot.clone(), downloads)
                    .with_support_url(settings.support_url.clone()),
            ),
            photos: Arc::new(TelegramPhotos::new(bot)),
            templates: Arc::new(templates),
        })
    }

    /// The adapters as the pipeline takes them.
    pub fn pipeline_deps(&self) -> PipelineDeps {
        PipelineDeps {
            queue: self.stores.queue.clone(),
            accounts: self.stores.accounts.clone(),
            products: self.stores.products.clone(),
            provider: self.provider.clone(),
            prompts: self.prompts.clone(),
            notifier: self.notifier.clone(),
            photos: self.photos.clone(),
            progress: self.stores.progress.clone(),
            signals: self.stores.signals.clone(),
            templates: self.templates.clone(),
        }
    }
}

/// Publishes the queue's figures as gauges: `neurocards_queue_jobs{state}` (queued, ready,
/// running), `neurocards_queue_wait_seconds{stat}` (avg_claim_wait and p95_claim_wait over the
/// stats window, avg_queued_age of the jobs waiting now) and `neurocards_queue_workers`
/// (workers holding a lease).
pub fn publish_queue_stats(stats: &crate::ports::QueueStats, metrics: &Metrics) {
    metrics.describe("neurocards_queue_jobs", "Jobs in the queue by state (ready: due now).");
    metrics.describe(
        "neurocards_queue_wait_seconds",
        "Waits: creation to first claim (average, p95) over the window; age of the waiting jobs.",
    );
    metrics.describe("neurocards_queue_workers", "Workers holding a lease now.");
    for (state, n) in [("queued", stats.queued), ("ready", stats.ready), ("running", stats.running)]
    {
        metrics.gauge_set("neurocards_queue_jobs", &[("state", state)], n as f64);
    }
    for (stat, secs) in [
        ("avg_claim_wait", stats.avg_wait_secs),
        ("p95_claim_wait", stats.p95_wait_secs),
        ("avg_queued_age", stats.avg_queued_age_secs),
    ] {
        metrics.gauge_set("neurocards_queue_wait_seconds", &[("stat", stat)], secs);
    }
    metrics.gauge_set("neurocards_queue_workers", &[], stats.workers as f64);
}

/// Keeps the queue gauges ([`publish_queue_stats`]) and the KIE key gauges
/// ([`publish_key_records`]) fresh from the store: every `every` until `stop` ends.
pub async fn refresh_queue_gauges(
    stores: Stores,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match stores.queue.stats(Duration::from_secs(3600)).await {
            Ok(stats) => publish_queue_stats(&stats, Metrics::global()),
            Err(e) => tracing::warn!(error = %e, "queue figures unavailable for the metrics"),
        }
        match stores.keys.keys().await {
            Ok(records) => publish_key_records(&records, Metrics::global()),
            Err(e) => tracing::warn!(error = %e, "KIE key state unavailable for the metrics"),
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Publishes the fleet-wide state of every KIE key as gauges, labelled by the key's id (a
/// hash prefix, never the key): `neurocards_kie_key_healthy` (1 when it takes new tasks),
/// `neurocards_kie_key_state{state}` (1 for its state: healthy, cooling, blocked),
/// `neurocards_kie_key_checks_paused`, `neurocards_kie_key_creates` and
/// `neurocards_kie_key_checks` (requests sent by the whole fleet), and
/// `neurocards_kie_credits` (the last balance read; absent until one succeeded).
pub fn publish_key_records(records: &[crate::ports::KeyRecord], metrics: &Metrics) {
    metrics.describe("neurocards_kie_key_healthy", "1 when the KIE key takes new tasks.");
    metrics.describe(
        "neurocards_kie_key_state",
        "1 for the KIE key's state: healthy, cooling, blocked.",
    );
    metrics.describe(
        "neurocards_kie_key_checks_paused",
        "1 while status checks on the KIE key wait after a 429.",
    );
    metrics.describe(
        "neurocards_kie_key_creates",
        "createTask requests sent with the key by the fleet.",
    );
    metrics.describe(
        "neurocards_kie_key_checks",
        "recordInfo requests sent with the key by the fleet.",
    );
    metrics.describe(
        "neurocards_kie_credits",
        "The KIE key's balance at its last read, in KIE credits.",
    );
    let now = chrono::Utc::now();
    for key in records {
        let labels = [("key", key.key_id.as_str())];
        let state = key.state_at(now);
        let healthy = if state == "healthy" { 1.0 } else { 0.0 };
        metrics.gauge_set("neurocards_kie_key_healthy", &labels, healthy);
        for s in ["healthy", "cooling", "blocked"] {
            let value = if s == state { 1.0 } else { 0.0 };
            metrics.gauge_set(
                "neurocards_kie_key_state",
                &[("key", key.key_id.as_str()), ("state", s)],
                value,
            );
        }
        let paused = key.checks_paused_until.is_some_and(|u| u > now);
        metrics.gauge_set("neurocards_kie_key_checks_paused", &labels, f64::from(u8::from(paused)));
        metrics.gauge_set("neurocards_kie_key_creates", &labels, key.creates as f64);
        metrics.gauge_set("neurocards_kie_key_checks", &labels, key.checks as f64);
        if let Some((credits, _)) = key.credits {
            metrics.gauge_set("neurocards_kie_credits", &labels, credits);
        }
    }
}
