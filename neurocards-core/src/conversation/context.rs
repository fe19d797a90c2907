//! What the handlers depend on: the ports, the template catalogue and the settings, injected
//! into the handler tree as one `Arc<BotContext>`.

use super::guards::{UpdateClaims, UsageQuota};
use super::state::{Draft, State};
use crate::domain::{Credits, JobId, OrderId, ProductId, UserId};
use crate::i18n::Texts;
use crate::ports::{Accounts, AccountsError, JobQueue, Products, PromptEngine, User};
use crate::templates::TemplateCatalogue;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use teloxide::types::ChatId;

/// At most `max_orders` orders per user within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRateLimit {
    pub max_orders: u32,
    pub window: Duration,
}

impl OrderRateLimit {
    /// Parses `5/10m` (orders per window; units as in [`crate::domain::parse_duration`]).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (n, w) = s.split_once('/').ok_or_else(|| format!("expected N/window, got {s:?}"))?;
        let max_orders: u32 =
            n.trim().parse().map_err(|_| format!("not a number of orders: {n:?}"))?;
        if max_orders == 0 {
            return Err("the order limit must be at least 1".into());
        }
        Ok(Self { max_orders, window: crate::domain::parse_duration(w)? })
    }

    /// How long until another order is allowed, given the creation times of the user's most
    /// recent orders (newest first); `None` when an order is allowed now.
    pub fn wait(&self, recent: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<Duration> {
        let n = self.max_orders as usize;
        let window = chrono::Duration::from_std(self.window).ok()?;
        let oldest_counted = recent.get(n - 1)?;
        let frees_at = *oldest_counted + window;
        (frees_at > now).then(|| (frees_at - now).to_std().unwrap_or_default())
    }
}

/// The conversation's settings (from the environment, via the host's configuration).
#[derive(Debug, Clone)]
pub struct ConversationSettings {
    /// Users allowed admin commands; empty means nobody.
    pub admin_ids: HashSet<UserId>,
    /// Credits a new user gets, once.
    pub start_credits: Credits,
    /// What one video costs.
    pub price_per_video: Credits,
    /// The support contact (a `https://t.me/...` link), shown in the menu and error texts.
    pub support_url: Option<url::Url>,
    /// The terms and privacy documents linked from the consent question.
    pub terms_url: Option<url::Url>,
    /// Telegram file ids of demo videos sent after consent (at most 10 are sent).
    pub welcome_video_ids: Vec<String>,
    /// Per-user order rate limit; `None` means unlimited.
    pub order_rate_limit: Option<OrderRateLimit>,
    /// How long refining an own idea with the LLM may take before the idea is shown as written.
    pub refine_timeout: Duration,
    /// Own ideas one user may have refined by the LLM per hour; 0 means no limit. Counted
    /// through [`BotContext::usage`] (without one, nothing is counted).
    pub idea_refines_per_hour: u32,
    /// Messages per second a broadcast sends (Telegram allows about 30 overall).
    pub broadcast_per_second: u32,
    /// Updates one user may send per minute before the bot pauses them (see
    /// [`super::flood`]); 0 turns the limit off.
    pub updates_per_minute: u32,
    /// The models, aspects and lengths on offer and their prices (see [`super::formats`]).
    pub video_choices: super::formats::VideoChoices,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        Self {
            admin_ids: HashSet::new(),
            start_credits: Credits::ZERO,
            price_per_video: Credits::new(1).unwrap_or_default(),
            support_url: None,
            terms_url: None,
            welcome_video_ids: Vec::new(),
            order_rate_limit: None,
            refine_timeout: Duration::from_secs(20),
            idea_refines_per_hour: 10,
            broadcast_per_second: 25,
            updates_per_minute: 60,
            video_choices: super::formats::VideoChoices::default(),
        }
    }
}

/// Daily figures for `/stats` beyond the queue's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DailyStats {
    pub users_total: u64,
    pub users_new: u64,
    pub orders: u64,
    pub jobs: u64,
}

/// Where `/stats` reads user and order counts since a moment.
#[async_trait::async_trait]
pub trait StatsSource: Send + Sync {
    async fn daily(&self, since: DateTime<Utc>) -> Result<DailyStats, AccountsError>;
}

/// The figures of `/stats` (and `neurocards-admin stats`) for the current UTC day.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TodayStats {
    /// The start of the day the figures count from (UTC midnight).
    pub since: DateTime<Utc>,
    /// The queue now, its terminal counts and waits since `since`.
    pub queue: crate::ports::QueueStats,
    /// Users, orders, jobs and key health since `since` (all zero without a stats source).
    pub daily: DailyStats,
}

/// Why [`today_stats`] could not read the figures.
#[derive(Debug, thiserror::Error)]
pub enum TodayStatsError {
    #[error(transparent)]
    Queue(#[from] crate::ports::QueueError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
}

/// Reads today's figures (the UTC day of `now`) from the queue and, when given, the stats
/// source: the one source of `/stats`, so every front end shows the same numbers. Reads only.
pub async fn today_stats(
    queue: &dyn JobQueue,
    source: Option<&dyn StatsSource>,
    now: DateTime<Utc>,
) -> Result<TodayStats, TodayStatsError> {
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc()).unwrap_or(now);
    let window = (now - midnight).to_std().unwrap_or_default().max(Duration::from_secs(1));
    let queue = queue.stats(window).await?;
    let daily = match source {
        Some(source) => source.daily(midnight).await?,
        None => DailyStats::default(),
    };
    Ok(TodayStats { since: midnight, queue, daily })
}

/// A video the user received, as "My videos" shows it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredVideo {
    pub job_id: JobId,
    pub order_id: OrderId,
    /// The order's product, when it is still stored.
    pub product_id: Option<ProductId>,
    /// The order's template id, as stored.
    pub template: String,
    /// The Telegram file id the video was delivered with (re-sent without any download, so a
    /// provider's expired link does not matter).
    pub file_id: String,
    pub delivered_at: DateTime<Utc>,
}

/// One page of a user's delivered videos.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoPage {
    /// Newest first.
    pub videos: Vec<DeliveredVideo>,
    /// All the user's delivered videos, on every page.
    pub total: u64,
}

/// Reads back past orders: what an order asked for, so "Retry" and "Repeat" can order it
/// again, and the videos delivered, for "My videos".
#[async_trait::async_trait]
pub trait OrderHistory: Send + Sync {
    /// The order's product, template, wishes and prompt, if the order exists and belongs to
    /// `owner`.
    async fn order_request(
        &self,
        order: OrderId,
        owner: UserId,
    ) -> Result<Option<Draft>, AccountsError>;

    /// `owner`'s videos delivered with a Telegram file id, newest first: at most `limit` of
    /// them from `offset`, and how many there are in all. Only the owner's.
    async fn delivered_videos(
        &self,
        owner: UserId,
        offset: u32,
        limit: u32,
    ) -> Result<VideoPage, AccountsError>;
}

/// Reads what every update needs before a handler runs — the chat's stored dialogue state and
/// the sender's account — in one round trip. Without one, the conversation reads them
/// separately (dialogue storage and [`Accounts::user`], in parallel).
#[async_trait::async_trait]
pub trait SessionReader: Send + Sync {
    /// The chat's dialogue state (`None` when none is stored, or when the stored one no longer
    /// parses) and the user's account (`None` before registration). An error means neither
    /// could be read; retrying later can help.
    async fn read(
        &self,
        chat: ChatId,
        user: UserId,
    ) -> Result<(Option<State>, Option<User>), AccountsError>;
}

/// Counters the bot exports on `/metrics`.
#[derive(Debug, Default)]
pub struct BotCounters {
    pub updates: AtomicU64,
    pub orders_placed: AtomicU64,
    pub orders_insufficient: AtomicU64,
    pub handler_errors: AtomicU64,
    pub stale_buttons: AtomicU64,
    pub repeated_updates: AtomicU64,
    pub unclaimed_updates: AtomicU64,
    pub refines_limited: AtomicU64,
    pub jobs_cancelled: AtomicU64,
    pub flood_ignored: AtomicU64,
}

impl BotCounters {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        let lines = [
            ("neurocards_bot_updates_total", "Updates handled.", &self.updates),
            ("neurocards_bot_orders_placed_total", "Orders placed.", &self.orders_placed),
            (
                "neurocards_bot_orders_insufficient_total",
                "Start taps refused for lack of credits.",
                &self.orders_insufficient,
            ),
            ("neurocards_bot_handler_errors_total", "Handler errors.", &self.handler_errors),
            (
                "neurocards_bot_stale_buttons_total",
                "Stale or unknown buttons.",
                &self.stale_buttons,
            ),
            (
                "neurocards_bot_repeated_updates_total",
                "Redelivered updates skipped.",
                &self.repeated_updates,
            ),
            (
                "neurocards_bot_unclaimed_updates_total",
                "Updates not handled because their claim could not be recorded.",
                &self.unclaimed_updates,
            ),
            (
                "neurocards_bot_idea_refines_limited_total",
                "Own ideas shown unrefined because the user reached the hourly limit.",
                &self.refines_limited,
            ),
            (
                "neurocards_bot_jobs_cancelled_total",
                "Waiting videos cancelled with refund (by their owner or by a ban).",
                &self.jobs_cancelled,
            ),
            (
                "neurocards_bot_flood_updates_total",
                "Updates over a user's flood limit (the first answered, the rest ignored).",
                &self.flood_ignored,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in lines {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Everything the handlers need; shared by every update.
pub struct BotContext {
    pub accounts: Arc<dyn Accounts>,
    pub products: Arc<dyn Products>,
    pub queue: Arc<dyn JobQueue>,
    pub prompts: Arc<dyn PromptEngine>,
    pub templates: Arc<TemplateCatalogue>,
    pub settings: ConversationSettings,
    pub texts: &'static Texts,
    /// Extra `/stats` figures; without it `/stats` shows the queue only.
    pub stats: Option<Arc<dyn StatsSource>>,
    /// The provider keys' shared state, for the `/stats` key block.
    pub keys: Option<Arc<dyn crate::ports::KeyBudgets>>,
    /// Past orders for "Retry"; without it "Retry" starts a fresh order.
    pub history: Option<Arc<dyn OrderHistory>>,
    /// Reads dialogue state and account together; without it they are read separately.
    pub sessions: Option<Arc<dyn SessionReader>>,
    /// Claims of update ids; without it a redelivered update is handled again.
    pub update_claims: Option<Arc<dyn UpdateClaims>>,
    /// Per-user usage counters; without it costly actions are not limited.
    pub usage: Option<Arc<dyn UsageQuota>>,
    /// Selling packs; without it "Buy credits" points to support.
    pub payments: Option<Arc<crate::payments::PaymentService>>,
    /// The YooKassa rail; without it packs are sold for Stars only.
    pub yookassa: Option<Arc<dyn crate::payments::checkout::ExternalCheckout>>,
    /// Finds the product image behind a marketplace link; without it a link is answered with
    /// a request for a photo.
    pub marketplace: Option<Arc<dyn crate::marketplace::MarketplaceImages>>,
    /// Broadcasts and their progress; without it a broadcast is not resumed after a restart.
    pub broadcasts: Option<Arc<dyn super::broadcast::BroadcastStore>>,
    /// This process's name, unique across processes and restarts (holds broadcast leases).
    pub process_name: String,
    /// The bot's username, learnt from the first update (for referral links).
    pub bot_username: std::sync::OnceLock<String>,
    pub counters: BotCounters,
    /// The per-user flood limit (`None` when `updates_per_minute` is 0).
    pub flood: Option<super::flood::FloodGuard>,
}

impl std::fmt::Debug for BotContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotContext").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl BotContext {
    /// A context with the built-in texts and fresh counters.
    pub fn new(
        accounts: Arc<dyn Accounts>,
        products: Arc<dyn Products>,
        queue: Arc<dyn JobQueue>,
        prompts: Arc<dyn PromptEngine>,
        templates: Arc<TemplateCatalogue>,
        settings: ConversationSettings,
    ) -> Self {
        let flood = (settings.updates_per_minute > 0)
            .then(|| super::flood::FloodGuard::new(settings.updates_per_minute));
        Self {
            accounts,
            products,
            queue,
            prompts,
            templates,
            flood,
            settings,
            texts: Texts::builtin(),
            stats: None,
            keys: None,
            history: None,
            sessions: None,
            update_claims: None,
            usage: None,
            payments: None,
            yookassa: None,
            marketplace: None,
            broadcasts: None,
            process_name: format!("bot:{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            bot_username: std::sync::OnceLock::new(),
            counters: BotCounters::default(),
        }
    }

    /// Takes product images from marketplace links through `images`.
    pub fn with_marketplace(
        mut self,
        images: Arc<dyn crate::marketplace::MarketplaceImages>,
    ) -> Self {
        self.marketplace = Some(images);
        self
    }

    /// Keeps broadcasts in `store`, so that they survive restarts.
    pub fn with_broadcasts(mut self, store: Arc<dyn super::broadcast::BroadcastStore>) -> Self {
        self.broadcasts = Some(store);
        self
    }

    /// Adds the provider keys' shared state, shown in `/stats`.
    pub fn with_keys(mut self, keys: Arc<dyn crate::ports::KeyBudgets>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Adds the source of `/stats` user and order figures.
    pub fn with_stats(mut self, stats: Arc<dyn StatsSource>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Adds the order history "Retry" reads.
    pub fn with_history(mut self, history: Arc<dyn OrderHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// Adds the reader that loads dialogue state and account in one round trip. It must read
    /// the same dialogue storage the conversation writes.
    pub fn with_session_reader(mut self, sessions: Arc<dyn SessionReader>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Adds the store of update claims, so that each update is handled at most once across
    /// restarts and replicas. Every replica of one bot must use the same store.
    pub fn with_update_claims(mut self, claims: Arc<dyn UpdateClaims>) -> Self {
        self.update_claims = Some(claims);
        self
    }

    /// Adds the per-user usage counters that enforce `idea_refines_per_hour`.
    pub fn with_usage_quota(mut self, usage: Arc<dyn UsageQuota>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Adds pack sales (Telegram Stars), referral bonuses and `/refund`.
    pub fn with_payments(mut self, payments: Arc<crate::payments::PaymentService>) -> Self {
        self.payments = Some(payments);
        self
    }

    /// Adds a second rail that pays on an outside page (YooKassa).
    pub fn with_external_checkout(
        mut self,
        checkout: Arc<dyn crate::payments::checkout::ExternalCheckout>,
    ) -> Self {
        self.yookassa = Some(checkout);
        self
    }

    pub fn is_admin(&self, user: UserId) -> bool {
        self.settings.admin_ids.contains(&user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_parses_and_counts_orders_in_window() {
        let limit = OrderRateLimit::parse("2/10m").expect("valid");
        assert_eq!(limit, OrderRateLimit { max_orders: 2, window: Duration::from_secs(600) });
        assert!(OrderRateLimit::parse("0/1m").is_err());
        assert!(OrderRateLimit::parse("5").is_err());

        let now = Utc::now();
        let ago = |m: i64| now - chrono::Duration::minutes(m);
        assert_eq!(limit.wait(&[ago(1)], now), None);
        assert_eq!(limit.wait(&[ago(1), ago(11)], now), None);
        let wait = limit.wait(&[ago(1), ago(4)], now).expect("limited");
        assert_eq!(wait.as_secs(), 6 * 60);
    }
}
