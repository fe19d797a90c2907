//! Wiring: adapters, the conversation, the dispatcher or webhook, the HTTP server, and — in
//! all-in-one mode — the generation pipeline in the same process.

use crate::polling::{Poller, POLL_TIMEOUT};
use crate::polling_lock::{PgPollingLocks, PollingLocks, SoleProcess};
use anyhow::Context as _;
use neurocards_core::config::{BotMode, Settings, YooKassaSettings};
use neurocards_core::conversation::{
    self, BotContext, Conversation, ConversationSettings, OrderRateLimit, ALLOWED_UPDATES,
};
use neurocards_core::http::{self, HttpTimeouts};
use neurocards_core::kie::{collect_keys, KieProvider};
use neurocards_core::payments::stars::StarsReconciler;
use neurocards_core::payments::yookassa_rail::YooKassaRail;
use neurocards_core::payments::{PackCatalogue, PaymentService};
use neurocards_core::pipeline::{Pipeline, PipelineMetrics, RunReport};
use neurocards_core::ports::{PromptEngine, TaskSignals};
use neurocards_core::web::{
    self, CallbackRoute, GlobalMetrics, HttpLimits, MetricsSource, ServingReadiness, ServingStatus,
    WebDeps, WebhookRoute,
};
use neurocards_core::wiring::{self, Adapters, OpenedStore};
use neurocards_core::yookassa::{IpAllowList, YooKassaClient};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use tokio::sync::watch;

/// Runs the bot (and, when `settings.all_in_one`, the pipeline) on `store` until `shutdown`
/// completes.
pub async fn run(
    settings: Settings,
    store: OpenedStore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // One bundle for the conversation, the callback route and the pipeline: on the embedded
    // store they reach each other through its in-process wake-ups.
    let stores = store.stores(wiring::queue_config(&settings));
    let bot_stores = store.bot_stores();
    // Checked before anything starts: an all-in-one bot without a KIE key could take orders
    // it can never run.
    let adapters = if settings.all_in_one {
        let provider = wiring::kie_provider_from_env(&settings, stores.keys.clone())
            .context("the pipeline (ALL_IN_ONE)")?;
        Some(Adapters::build(&settings, stores.clone(), provider)?)
    } else {
        None
    };
    let templates = Arc::new(wiring::templates(&settings)?);
    let prompts: Arc<dyn PromptEngine> = Arc::new(wiring::prompt_engine(&settings, &templates)?);
    let conversation_settings = ConversationSettings {
        admin_ids: settings.admin_ids.iter().copied().collect(),
        start_credits: settings.start_credits,
        price_per_video: settings.price_per_video,
        support_url: settings.support_url.clone(),
        terms_url: settings.terms_url.clone(),
        welcome_video_ids: settings.welcome_video_ids.clone(),
        order_rate_limit: (settings.orders_per_minute > 0).then_some(OrderRateLimit {
            max_orders: settings.orders_per_minute,
            window: Duration::from_secs(60),
        }),
        idea_refines_per_hour: settings.idea_refines_per_hour,
        updates_per_minute: settings.updates_per_minute,
        video_choices: wiring::video_choices(&settings),
        ..ConversationSettings::default()
    };
    // Replies go out unthrottled: one per update, to the user who just wrote. The worker's
    // notifications and the broadcast pace themselves.
    let client = http::client(HttpTimeouts {
        connect: Duration::from_secs(5),
        request: POLL_TIMEOUT + Duration::from_secs(30),
    })
    .context("Telegram HTTP client")?;
    let bot = Bot::with_client(settings.bot_token.expose(), client)
        .set_api_url(settings.telegram_api_url.clone());
    let catalogue = PackCatalogue::from_env_or_builtin(settings.packs_path.as_deref())
        .context("the pack catalogue (PACKS_PATH)")?;
    if catalogue.is_empty() {
        tracing::warn!("the pack catalogue is empty: nothing is on sale");
    }
    let payments = Arc::new(PaymentService::new(
        stores.payments.clone(),
        stores.accounts.clone(),
        Arc::new(catalogue),
        settings.referral_bonus,
    ));
    let yookassa = match &settings.yookassa {
        Some(y) => Some(Arc::new(yookassa_rail(y, payments.clone(), bot.clone())?)),
        None => None,
    };
    let mut ctx = BotContext::new(
        stores.accounts.clone(),
        stores.products.clone(),
        stores.queue.clone(),
        prompts,
        templates,
        conversation_settings,
    )
    .with_stats(bot_stores.stats.clone())
    .with_keys(stores.keys.clone())
    .with_history(bot_stores.history.clone())
    .with_session_reader(bot_stores.sessions.clone())
    .with_update_claims(bot_stores.update_claims.clone())
    .with_usage_quota(bot_stores.usage.clone())
    .with_broadcasts(bot_stores.broadcasts.clone())
    .with_marketplace(Arc::new(wiring::marketplace_images(&settings)?))
    .with_payments(payments.clone());
    if let Some(rail) = &yookassa {
        ctx = ctx.with_external_checkout(rail.clone());
    }
    let ctx = Arc::new(ctx);
    let storage = bot_stores.dialogues.clone();

    let serving = ServingStatus::starting(match settings.bot_mode {
        BotMode::Polling => "waiting for the polling lock",
        BotMode::Webhook => "registering the webhook",
    });
    // Telegram calls at start can take up to the client's timeout: a stop is not kept waiting.
    let start = async {
        let me = bot.get_me().await.context("getMe (is BOT_TOKEN right?)")?;
        tracing::info!(bot = ?me.user.username, mode = ?settings.bot_mode, "bot starting");
        if let Err(e) = conversation::register_commands(&bot, &ctx).await {
            tracing::warn!(error = %e, "command list not registered");
        }
        if settings.bot_mode != BotMode::Webhook {
            return anyhow::Ok((me, None));
        }
        let url = settings.webhook_url().context("PUBLIC_BASE_URL")?;
        let secret = settings.webhook_secret.clone().context("WEBHOOK_SECRET")?;
        bot.set_webhook(url)
            .secret_token(secret.expose().to_owned())
            .allowed_updates(ALLOWED_UPDATES.to_vec())
            .await
            .context("setWebhook")?;
        let conversation =
            Arc::new(Conversation::new(bot.clone(), me.clone(), ctx.clone(), storage.clone()));
        anyhow::Ok((me, Some(WebhookRoute { secret, updates: conversation })))
    };
    let (me, webhook) = tokio::select! {
        started = start => started?,
        () = stopped() => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    if webhook.is_some() {
        serving.serving();
    }
    // Every replica reconciles: crediting is exactly-once in the store, so passes may overlap.
    let reconciler =
        StarsReconciler { bot: bot.clone(), service: payments.clone(), texts: ctx.texts };
    tokio::spawn(reconciler.run(settings.stars_reconcile_interval, stopped()));
    // The queue's depth and waits on /metrics, for dashboards and alerts.
    tokio::spawn(wiring::refresh_queue_gauges(stores.clone(), Duration::from_secs(15), stopped()));
    // Every replica looks for broadcasts a stopped process left unfinished; each is taken once.
    tokio::spawn(conversation::broadcast::resume_broadcasts(bot.clone(), ctx.clone(), stopped()));
    if let (Some(rail), Some(y)) = (&yookassa, &settings.yookassa) {
        if let Some(username) = &me.user.username {
            rail.set_bot_username(username);
        }
        tokio::spawn(rail.clone().run_poller(y.poll_interval, stopped()));
        tracing::info!(path = web::YOOKASSA_NOTIFICATION_PATH, "YooKassa rail on");
    }

    let pipeline_metrics = Arc::new(PipelineMetrics::default());
    let mut metrics: Vec<Arc<dyn MetricsSource>> = Vec::new();
    if let Some(adapters) = &adapters {
        metrics.push(Arc::new(PipelineMetricsSource { pipeline: pipeline_metrics.clone() }));
        tokio::spawn(wiring::refresh_key_balances(
            adapters.provider.clone(),
            settings.kie_balance_every,
            stopped(),
        ));
    }
    metrics.extend([Arc::new(GlobalMetrics) as Arc<dyn MetricsSource>, ctx.clone()]);
    let deps = WebDeps {
        readiness: Arc::new(ServingReadiness {
            serving: serving.clone(),
            database: store.readiness(),
        }),
        queue: stores.queue.clone(),
        metrics,
        webhook,
        kie_callback: kie_callback(&settings, stores.signals.clone())?,
        yookassa,
        stats_window: Duration::from_secs(3600),
        workers_configured: settings.worker_instances,
        metrics_token: settings.metrics_token.clone(),
        limits: http_limits(&settings),
    };
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding HTTP_ADDR {}", settings.http_addr))?;
    tracing::info!(addr = %settings.http_addr, "HTTP server listening");
    if settings.metrics_token.is_none() {
        tracing::warn!(
            "METRICS_TOKEN is not set: /metrics and /queue_stats are open to anyone who can \
             reach HTTP_ADDR"
        );
    }
    let limits = deps.limits;
    let server = tokio::spawn(web::serve_with(listener, web::router(deps), limits, stopped()));

    let pipeline = adapters.map(|adapters| {
        tokio::spawn(run_pipeline(settings.clone(), adapters, pipeline_metrics, stopped()))
    });

    if settings.bot_mode == BotMode::Polling {
        let locks: Arc<dyn PollingLocks> = match &store {
            OpenedStore::Postgres(pool) => Arc::new(PgPollingLocks(pool.clone())),
            OpenedStore::Sqlite(_) => Arc::new(SoleProcess),
        };
        Poller { bot, ctx, storage, locks, serving }.run(stopped).await;
    }
    if let Some(pipeline) = pipeline {
        let report = pipeline.await.context("pipeline task")?;
        tracing::info!(?report, "pipeline finished");
    }
    server.await.context("HTTP server task")?.context("HTTP server")?;
    tracing::info!("bot stopped");
    Ok(())
}

/// The generation pipeline of an all-in-one bot, as a worker process runs it.
async fn run_pipeline(
    settings: Settings,
    adapters: Adapters,
    metrics: Arc<PipelineMetrics>,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> RunReport {
    let mut config = wiring::pipeline_config(&settings);
    if let Some(url) = &config.callback_url {
        config.callbacks_confirmed = wiring::callback_route_answers(url).await;
        if !config.callbacks_confirmed {
            tracing::warn!(
                "PUBLIC_BASE_URL is set but PUBLIC_BASE_URL/kie/callback/… does not reach this \
                 bot: KIE's callbacks would be lost, so jobs poll KIE at the normal rate"
            );
        }
    }
    tracing::info!(
        worker = %config.worker_id,
        concurrency = config.concurrency,
        callbacks = config.callback_url.is_some() && config.callbacks_confirmed,
        llm = adapters.prompts.has_llm(),
        "pipeline starting in the bot process"
    );
    Pipeline::with_metrics(adapters.pipeline_deps(), config, metrics).run(stopped).await
}

/// The pipeline's counters on the bot's `/metrics` (the KIE key gauges come from the store,
/// with the queue's).
struct PipelineMetricsSource {
    pipeline: Arc<PipelineMetrics>,
}

impl MetricsSource for PipelineMetricsSource {
    fn render(&self) -> String {
        self.pipeline.render()
    }
}

/// The YooKassa rail from its settings: the API client, the notification allow-list.
fn yookassa_rail(
    y: &YooKassaSettings,
    payments: Arc<PaymentService>,
    bot: Bot,
) -> anyhow::Result<YooKassaRail> {
    let client = YooKassaClient::new(
        &y.api_url,
        y.shop_id.clone(),
        y.secret_key.clone(),
        Duration::from_secs(15),
    )
    .context("YooKassa client")?;
    let allowed = match y.allowed_ips.as_deref() {
        Some(spec) => Some(IpAllowList::parse(spec).context("YOOKASSA_ALLOWED_IPS")?),
        None => None,
    };
    Ok(YooKassaRail::new(
        client,
        payments,
        y.return_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned()),
        allowed,
        bot,
        neurocards_core::i18n::Texts::builtin(),
    ))
}

/// The HTTP bounds: the defaults, with the connection cap from `HTTP_MAX_CONNECTIONS`.
fn http_limits(settings: &Settings) -> HttpLimits {
    HttpLimits { max_connections: settings.http_max_connections as usize, ..HttpLimits::default() }
}

/// The KIE callback route, only when a public URL is set (otherwise KIE is never given a
/// callback URL, so nothing legitimate can arrive) and a KIE key is configured (the provider
/// verifies signatures).
fn kie_callback(
    settings: &Settings,
    signals: Arc<dyn TaskSignals>,
) -> anyhow::Result<Option<CallbackRoute>> {
    if settings.public_base_url.is_none() {
        tracing::info!("no PUBLIC_BASE_URL: the KIE callback route is not served");
        return Ok(None);
    }
    let keys = collect_keys(|k| std::env::var(k).ok());
    if keys.is_empty() {
        tracing::info!("no KIE key configured: the KIE callback route is not served");
        return Ok(None);
    }
    let config = wiring::kie_config(settings, keys);
    // The route only verifies signatures: it sends nothing with the keys.
    let provider = KieProvider::new(config).context("KIE provider")?;
    Ok(Some(CallbackRoute {
        secret: settings.kie_callback_secret.clone(),
        provider: Arc::new(provider),
        signals,
    }))
}
