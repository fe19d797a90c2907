//! The conversation against FakeTelegram and a real store (PostgreSQL or the embedded one):
//! updates in (as the webhook delivers them), Bot API calls recorded. Tests read like the
//! user's side of the chat.

use crate::fake_telegram::{FakeTelegram, SentMessage, TgUser};
use crate::stores::StoreUnderTest;
use neurocards_core::conversation::{
    BotContext, Conversation, ConversationSettings, Delivery, DialogueStorage,
};
use neurocards_core::domain::{Credits, LedgerReason, UserId};
use neurocards_core::marketplace::MarketplaceImages;
use neurocards_core::payments::yookassa_rail::YooKassaRail;
use neurocards_core::payments::{PackCatalogue, PaymentService};
use neurocards_core::ports::{Accounts, JobQueue, Products, PromptEngine};
use neurocards_core::prompts::TemplatePromptEngine;
use neurocards_core::queue_config::QueueConfig;
use neurocards_core::secret::Secret;
use neurocards_core::templates::TemplateCatalogue;
use neurocards_core::web::{self, HttpLimits, WebDeps, WebhookRoute};
use neurocards_core::yookassa::{IpAllowList, YooKassaClient};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use teloxide::prelude::*;
use teloxide::types::Update;

/// A small valid JPEG header, enough for the photo step (the bot never decodes it).
pub const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1];

/// How the harness sells packs: the catalogue, the referral bonus, and optionally YooKassa.
#[derive(Debug, Clone)]
pub struct PaymentsSetup {
    pub catalogue: PackCatalogue,
    pub referral_bonus: Credits,
    /// A YooKassa client (normally the fake's) and the notification allow-list.
    pub yookassa: Option<(YooKassaClient, Option<IpAllowList>)>,
}

impl Default for PaymentsSetup {
    /// The built-in catalogue, a bonus of 1 credit, Stars only.
    fn default() -> Self {
        Self {
            catalogue: PackCatalogue::builtin(),
            referral_bonus: Credits::new(1).unwrap_or_default(),
            yookassa: None,
        }
    }
}

impl PaymentsSetup {
    /// The defaults plus the YooKassa rail through `client`.
    pub fn with_yookassa(client: YooKassaClient, allowed: Option<IpAllowList>) -> Self {
        Self { yookassa: Some((client, allowed)), ..Self::default() }
    }
}

/// One bot process's conversation on a store, talking to a FakeTelegram.
pub struct BotHarness {
    pub telegram: FakeTelegram,
    pub store: StoreUnderTest,
    pub ctx: Arc<BotContext>,
    pub conversation: Arc<Conversation>,
    pub accounts: Arc<dyn Accounts>,
    pub queue: Arc<dyn JobQueue>,
    pub bot: Bot,
    /// Pack sales (always on, like in the bot).
    pub payments: Arc<PaymentService>,
    /// The YooKassa rail, when the setup has one.
    pub yookassa: Option<Arc<YooKassaRail>>,
    setup: PaymentsSetup,
}

impl std::fmt::Debug for BotHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotHarness").field("telegram", &self.telegram).finish_non_exhaustive()
    }
}

/// Settings for tests: 1 credit per video, a support link, no welcome videos.
pub fn test_settings() -> ConversationSettings {
    ConversationSettings {
        support_url: url::Url::parse("https://t.me/neurocards_support").ok(),
        terms_url: url::Url::parse("https://example.com/terms").ok(),
        price_per_video: Credits::new(1).unwrap_or_default(),
        ..ConversationSettings::default()
    }
}

impl BotHarness {
    /// A fresh FakeTelegram and a conversation on `pool` (migrated) with `settings`.
    pub async fn start(store: impl Into<StoreUnderTest>, settings: ConversationSettings) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            neurocards_core::telemetry::init(neurocards_core::telemetry::LogFormat::Text);
        }
        let telegram = FakeTelegram::start().await;
        Self::on(telegram, store.into(), settings, true, None, PaymentsSetup::default(), None).await
    }

    /// As [`BotHarness::start`], selling packs as `setup` says.
    pub async fn start_with_payments(
        store: impl Into<StoreUnderTest>,
        settings: ConversationSettings,
        setup: PaymentsSetup,
    ) -> Self {
        let telegram = FakeTelegram::start().await;
        Self::on(telegram, store.into(), settings, true, None, setup, None).await
    }

    /// As [`BotHarness::start`], with a prompt engine of the test's own (the default builds
    /// prompts from the templates alone).
    pub async fn start_with_prompts(
        store: impl Into<StoreUnderTest>,
        settings: ConversationSettings,
        prompts: Arc<dyn PromptEngine>,
    ) -> Self {
        let telegram = FakeTelegram::start().await;
        let setup = PaymentsSetup::default();
        Self::on(telegram, store.into(), settings, true, Some(prompts), setup, None).await
    }

    /// As [`BotHarness::with_telegram`], taking product images from marketplace links through
    /// `images` (for example [`crate::fake_marketplace::FakeMarketplace::images`]).
    pub async fn with_marketplace(
        telegram: FakeTelegram,
        store: impl Into<StoreUnderTest>,
        settings: ConversationSettings,
        images: Arc<dyn MarketplaceImages>,
    ) -> Self {
        let setup = PaymentsSetup::default();
        Self::on(telegram, store.into(), settings, true, None, setup, Some(images)).await
    }

    /// A conversation on an existing FakeTelegram (for example a [`crate::system::TestSystem`]'s,
    /// so that its workers deliver the videos the conversation ordered).
    pub async fn with_telegram(
        telegram: FakeTelegram,
        store: impl Into<StoreUnderTest>,
        settings: ConversationSettings,
    ) -> Self {
        Self::on(telegram, store.into(), settings, true, None, PaymentsSetup::default(), None).await
    }

    /// Another bot process on the same FakeTelegram and database: nothing in memory is shared,
    /// as after a restart or on a second replica.
    pub async fn restart(&self) -> Self {
        let prompts = Some(self.ctx.prompts.clone());
        Self::on(
            self.telegram.clone(),
            self.store.clone(),
            self.ctx.settings.clone(),
            true,
            prompts,
            self.setup.clone(),
            self.ctx.marketplace.clone(),
        )
        .await
    }

    /// As [`BotHarness::restart`], for a host without a
    /// [`neurocards_core::conversation::SessionReader`]: dialogue state and account are read
    /// separately, through the dialogue storage and the accounts port.
    pub async fn restart_reading_separately(&self) -> Self {
        let prompts = Some(self.ctx.prompts.clone());
        Self::on(
            self.telegram.clone(),
            self.store.clone(),
            self.ctx.settings.clone(),
            false,
            prompts,
            self.setup.clone(),
            self.ctx.marketplace.clone(),
        )
        .await
    }

    async fn on(
        telegram: FakeTelegram,
        store: StoreUnderTest,
        settings: ConversationSettings,
        combined_reads: bool,
        prompts: Option<Arc<dyn PromptEngine>>,
        setup: PaymentsSetup,
        marketplace: Option<Arc<dyn MarketplaceImages>>,
    ) -> Self {
        let bot = Bot::new(telegram.token().expose()).set_api_url(telegram.api_url());
        let stores = store.stores(QueueConfig::default());
        let bot_stores = store.bot_stores();
        let accounts = stores.accounts.clone();
        let products: Arc<dyn Products> = stores.products.clone();
        let queue = stores.queue.clone();
        let prompts: Arc<dyn PromptEngine> =
            prompts.unwrap_or_else(|| Arc::new(TemplatePromptEngine::new(2000)));
        let mut ctx = BotContext::new(
            accounts.clone(),
            products,
            queue.clone(),
            prompts,
            Arc::new(TemplateCatalogue::builtin()),
            settings,
        )
        .with_stats(bot_stores.stats.clone())
        .with_keys(stores.keys.clone())
        .with_history(bot_stores.history.clone())
        .with_update_claims(bot_stores.update_claims.clone())
        .with_usage_quota(bot_stores.usage.clone())
        .with_broadcasts(bot_stores.broadcasts.clone());
        if let Some(images) = marketplace {
            ctx = ctx.with_marketplace(images);
        }
        let payments = Arc::new(PaymentService::new(
            stores.payments.clone(),
            accounts.clone(),
            Arc::new(setup.catalogue.clone()),
            setup.referral_bonus,
        ));
        ctx = ctx.with_payments(payments.clone());
        let yookassa = setup.yookassa.clone().map(|(client, allowed)| {
            Arc::new(YooKassaRail::new(
                client,
                payments.clone(),
                Some("https://t.me/neurocards_test_bot".into()),
                allowed,
                bot.clone(),
                neurocards_core::i18n::Texts::builtin(),
            ))
        });
        if let Some(rail) = &yookassa {
            ctx = ctx.with_external_checkout(rail.clone());
        }
        if combined_reads {
            ctx = ctx.with_session_reader(bot_stores.sessions.clone());
        }
        let ctx = Arc::new(ctx);
        let storage: Arc<DialogueStorage> = bot_stores.dialogues.clone();
        let me = bot.get_me().await.expect("FakeTelegram answers getMe");
        let conversation = Arc::new(Conversation::new(bot.clone(), me, ctx.clone(), storage));
        Self { telegram, store, ctx, conversation, accounts, queue, bot, payments, yookassa, setup }
    }

    /// Serves the bot's HTTP surface (webhook with `secret`) on a random local port; returns
    /// its base URL. The server runs until the runtime stops.
    pub async fn serve_http(&self, secret: &str) -> String {
        self.serve_http_with(secret, None).await
    }

    /// As [`BotHarness::serve_http`], with a provider callback route.
    pub async fn serve_http_with(&self, secret: &str, kie: Option<web::CallbackRoute>) -> String {
        self.serve_http_bounded(secret, kie, None, HttpLimits::default()).await
    }

    /// As [`BotHarness::serve_http_with`], with a metrics token and bounds of its own.
    pub async fn serve_http_bounded(
        &self,
        secret: &str,
        kie: Option<web::CallbackRoute>,
        metrics_token: Option<&str>,
        limits: HttpLimits,
    ) -> String {
        let deps = WebDeps {
            readiness: self.store.opened().readiness(),
            queue: self.queue.clone(),
            metrics: vec![self.ctx.clone()],
            webhook: Some(WebhookRoute {
                secret: Secret::new(secret),
                updates: self.conversation.clone(),
            }),
            kie_callback: kie,
            stats_window: std::time::Duration::from_secs(3600),
            workers_configured: None,
            metrics_token: metrics_token.map(Secret::new),
            limits,
            yookassa: self.yookassa.clone(),
        };
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(web::serve_with(listener, web::router(deps), limits, std::future::pending()));
        format!("http://{addr}")
    }

    /// Handles one update JSON (built with FakeTelegram's `*_update` methods) to the end.
    pub async fn deliver(&self, update: Value) -> Delivery {
        // From text, as the webhook reads it: teloxide's `Update` does not deserialize its kind
        // from a `serde_json::Value` (it needs borrowed strings).
        let update: Update = serde_json::from_str(&update.to_string()).expect("a valid Update");
        self.conversation.handle(update).await
    }

    /// The user sends a command or text.
    pub async fn say(&self, user: &TgUser, text: &str) {
        let update = if text.starts_with('/') {
            self.telegram.command_update(user, text)
        } else {
            self.telegram.text_update(user, text)
        };
        self.deliver(update).await;
    }

    /// The user sends a product photo.
    pub async fn send_photo(&self, user: &TgUser) {
        let (update, _) = self.telegram.photo_update(user, JPEG.to_vec(), None);
        self.deliver(update).await;
    }

    /// The user presses the button with `data` on the latest bot message that has it; panics
    /// when no message offers it (the test's story would be wrong).
    pub async fn press(&self, user: &TgUser, data: &str) {
        let message = self
            .telegram
            .messages_to(user.id)
            .into_iter()
            .rev()
            .find(|m| m.callback_data().contains(&data))
            .unwrap_or_else(|| {
                panic!(
                    "no message offers the button {data:?}; the chat: {:?}; calls: {:?}",
                    self.telegram.texts_to(user.id),
                    self.telegram
                        .all_calls()
                        .iter()
                        .map(|c| (&c.method, c.answered_ok))
                        .collect::<Vec<_>>()
                )
            });
        self.press_on(user, message.message_id, data).await;
    }

    /// The user presses a button with `data` on message `message_id` (stale buttons too).
    pub async fn press_on(&self, user: &TgUser, message_id: i32, data: &str) {
        let update = self.telegram.callback_update(user, message_id, data);
        self.deliver(update).await;
    }

    /// The callback data of the button whose label contains `label` on the latest message
    /// that has one.
    pub fn button_data(&self, user: &TgUser, label: &str) -> String {
        self.telegram
            .messages_to(user.id)
            .iter()
            .rev()
            .flat_map(|m| m.all_buttons().into_iter().cloned().collect::<Vec<_>>())
            .find(|b| b.text.contains(label) && b.callback_data.is_some())
            .and_then(|b| b.callback_data)
            .unwrap_or_else(|| panic!("no button labelled {label:?}"))
    }

    /// The last message the bot sent the user.
    pub fn last(&self, user: &TgUser) -> SentMessage {
        self.telegram.last_message_to(user.id).expect("the bot answered")
    }

    /// How many messages the bot has sent the user.
    pub fn message_count(&self, user: &TgUser) -> usize {
        self.telegram.messages_to(user.id).len()
    }

    /// Registers the user and accepts the terms: the user is at the main menu.
    pub async fn onboard(&self, user: &TgUser) {
        self.say(user, "/start").await;
        self.press(user, "terms").await;
    }

    /// Adds credits to a user (as an admin grant).
    pub async fn grant(&self, user: &TgUser, credits: i64) {
        self.accounts
            .credit(
                UserId(user.id),
                Credits::new(credits).expect("non-negative"),
                LedgerReason::Grant,
                "test",
            )
            .await
            .expect("grant");
    }

    /// The bot's own metrics text (counters and payments), as `/metrics` shows it.
    pub fn ctx_metrics(&self) -> String {
        web::MetricsSource::render(self.ctx.as_ref())
    }

    /// Spends one credit of the user's on a one-video order through the conversation (the
    /// user must be at the main menu).
    pub async fn spend_one(&self, user: &TgUser) {
        self.press(user, "create").await;
        self.send_photo(user).await;
        self.say(user, "A ceramic mug").await;
        self.press(user, "tpl:ugc").await;
        self.press(user, "skip").await;
        self.press(user, "cnt:1").await;
        let start = self
            .last(user)
            .callback_data()
            .into_iter()
            .find(|d| d.starts_with("go:"))
            .map(str::to_owned)
            .expect("the summary offers Start");
        self.press(user, &start).await;
    }

    /// The user's balance.
    pub async fn balance(&self, user: &TgUser) -> i64 {
        self.accounts.balance(UserId(user.id)).await.expect("balance readable").get()
    }

    /// The PostgreSQL pool under the conversation; panics on the embedded store (for tests of
    /// PostgreSQL facts).
    pub fn pool(&self) -> &PgPool {
        self.store.pg_pool()
    }

    /// Orders placed by a user.
    pub async fn orders_of(&self, user: &TgUser) -> i64 {
        self.count_of_user("orders", user).await
    }

    /// Jobs of a user's orders.
    pub async fn jobs_of(&self, user: &TgUser) -> i64 {
        self.count_of_user("jobs", user).await
    }

    /// Rows of `table` (`orders` or `jobs`) belonging to the user.
    async fn count_of_user(&self, table: &'static str, user: &TgUser) -> i64 {
        let counted = match &self.store {
            StoreUnderTest::Postgres(pool) => {
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE user_id = $1"))
                    .bind(user.id)
                    .fetch_one(pool)
                    .await
            }
            StoreUnderTest::Sqlite(store) => {
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE user_id = ?"))
                    .bind(user.id)
                    .fetch_one(store.reader())
                    .await
            }
        };
        counted.expect("count rows")
    }
}

/// The `neurocards-bot` binary, freshly built (or `NEUROCARDS_BOT_BIN`); see
/// [`crate::binaries::workspace_binary`].
pub fn bot_binary() -> std::path::PathBuf {
    crate::binaries::workspace_binary("neurocards-bot", "NEUROCARDS_BOT_BIN")
}
