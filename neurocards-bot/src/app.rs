//! Wiring: adapters, the conversation, the dispatcher or webhook, and the HTTP server.

use crate::polling::{Poller, POLL_TIMEOUT};
use anyhow::Context as _;
use neurocards_core::config::{BotMode, Settings};
use neurocards_core::conversation::{
    self, BotContext, Conversation, ConversationSettings, OrderRateLimit, ALLOWED_UPDATES,
};
use neurocards_core::http::{self, HttpTimeouts};
use neurocards_core::kie::{collect_keys, KieProvider};
use neurocards_core::ports::{Accounts, JobQueue, Products, PromptEngine};
use neurocards_core::postgres::{
    PgAccounts, PgBotQueries, PgDialogueStorage, PgJobQueue, PgProducts, PgTaskSignals,
    PgUpdateClaims, PgUsageQuota,
};
use neurocards_core::web::{
    self, CallbackRoute, GlobalMetrics, HttpLimits, ServingReadiness, ServingStatus, WebDeps,
    WebhookRoute,
};
use neurocards_core::wiring;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use teloxide::prelude::*;
use tokio::sync::watch;

pub async fn run(
    settings: Settings,
    pool: PgPool,
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

    let templates = Arc::new(wiring::templates(&settings)?);
    let accounts: Arc<dyn Accounts> = Arc::new(PgAccounts::new(pool.clone()));
    let products: Arc<dyn Products> = Arc::new(PgProducts::new(pool.clone()));
    let queue: Arc<dyn JobQueue> =
        Arc::new(PgJobQueue::new(pool.clone(), wiring::queue_config(&settings)));
    let prompts: Arc<dyn PromptEngine> = Arc::new(wiring::prompt_engine(&settings, &templates)?);
    let queries = Arc::new(PgBotQueries::new(pool.clone()));
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
        ..ConversationSettings::default()
    };
    let ctx = Arc::new(
        BotContext::new(
            accounts,
            products,
            queue.clone(),
            prompts,
            templates,
            conversation_settings,
        )
        .with_stats(queries.clone())
        .with_history(queries)
        .with_session_reader(Arc::new(PgDialogueStorage::new(pool.clone())))
        .with_update_claims(Arc::new(PgUpdateClaims::new(pool.clone())))
        .with_usage_quota(Arc::new(PgUsageQuota::new(pool.clone()))),
    );
    let storage = PgDialogueStorage::erased(pool.clone());

    // Replies go out unthrottled: one per update, to the user who just wrote. The worker's
    // notifications and the broadcast pace themselves.
    let client = http::client(HttpTimeouts {
        connect: Duration::from_secs(5),
        request: POLL_TIMEOUT + Duration::from_secs(30),
    })
    .context("Telegram HTTP client")?;
    let bot = Bot::with_client(settings.bot_token.expose(), client)
        .set_api_url(settings.telegram_api_url.clone());
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
            return anyhow::Ok(None);
        }
        let url = settings.webhook_url().context("PUBLIC_BASE_URL")?;
        let secret = settings.webhook_secret.clone().context("WEBHOOK_SECRET")?;
        bot.set_webhook(url)
            .secret_token(secret.expose().to_owned())
            .allowed_updates(ALLOWED_UPDATES.to_vec())
            .await
            .context("setWebhook")?;
        let conversation =
            Arc::new(Conversation::new(bot.clone(), me, ctx.clone(), storage.clone()));
        anyhow::Ok(Some(WebhookRoute { secret, updates: conversation }))
    };
    let webhook = tokio::select! {
        started = start => started?,
        () = stopped() => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    if webhook.is_some() {
        serving.serving();
    }

    let deps = WebDeps {
        readiness: Arc::new(ServingReadiness {
            serving: serving.clone(),
            database: Arc::new(pool.clone()),
        }),
        queue,
        metrics: vec![Arc::new(GlobalMetrics), ctx.clone()],
        webhook,
        kie_callback: kie_callback(&settings, &pool)?,
        stats_window: Duration::from_secs(3600),
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

    if settings.bot_mode == BotMode::Polling {
        Poller { bot, ctx, storage, pool, serving }.run(stopped).await;
    }
    server.await.context("HTTP server task")?.context("HTTP server")?;
    tracing::info!("bot stopped");
    Ok(())
}

/// The HTTP bounds: the defaults, with the connection cap from `HTTP_MAX_CONNECTIONS`.
fn http_limits(settings: &Settings) -> HttpLimits {
    HttpLimits { max_connections: settings.http_max_connections as usize, ..HttpLimits::default() }
}

/// The KIE callback route, only when a public URL is set (otherwise KIE is never given a
/// callback URL, so nothing legitimate can arrive) and a KIE key is configured (the provider
/// verifies signatures).
fn kie_callback(settings: &Settings, pool: &PgPool) -> anyhow::Result<Option<CallbackRoute>> {
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
    let provider = KieProvider::new(config).context("KIE provider")?;
    Ok(Some(CallbackRoute {
        secret: settings.kie_callback_secret.clone(),
        provider: Arc::new(provider),
        signals: Arc::new(PgTaskSignals::new(pool.clone())),
    }))
}
