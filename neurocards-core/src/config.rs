//! Typed configuration, read once at start from the environment (a `.env` file is loaded by the
//! binaries first). A missing or malformed setting is one clear error naming the variable; it
//! never panics later.

use crate::domain::{parse_duration, Credits, RetryPolicy, UserId};
use crate::secret::Secret;
use crate::telemetry::LogFormat;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// A setting that is missing or malformed. Its message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// One `VIDEO_PRICES` entry: a video of `model` lasting `duration_secs` costs `credits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredPrice {
    pub model: String,
    pub duration_secs: u32,
    pub credits: Credits,
}

/// `model:seconds=credits`, the model one of `models`.
fn parse_video_price(entry: &str, models: &[String]) -> Result<ConfiguredPrice, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid { var: "VIDEO_PRICES", reason };
    let shape = || invalid(format!("{entry:?} is not model:seconds=credits"));
    let (key, credits) = entry.split_once('=').ok_or_else(shape)?;
    let (model, secs) = key.rsplit_once(':').ok_or_else(shape)?;
    let model = model.trim();
    if !models.iter().any(|m| m == model) {
        return Err(invalid(format!(
            "{model:?} is not a configured model (KIE_MODEL, KIE_FALLBACK_MODELS)"
        )));
    }
    let duration_secs = secs.trim().parse::<u32>().ok().filter(|s| (1..=600).contains(s));
    let credits = credits.trim().parse::<i64>().ok().filter(|c| (1..=1_000_000).contains(c));
    match (duration_secs, credits.and_then(|c| Credits::new(c).ok())) {
        (Some(duration_secs), Some(credits)) => {
            Ok(ConfiguredPrice { model: model.to_owned(), duration_secs, credits })
        }
        _ => Err(shape()),
    }
}

/// How the bot receives updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotMode {
    /// Long polling; one process at a time (an advisory lock), pending updates kept.
    #[default]
    Polling,
    /// Telegram pushes updates to `PUBLIC_BASE_URL/telegram/webhook`; any number of replicas.
    Webhook,
}

/// Where the system keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A PostgreSQL server (`DATABASE_URL=postgres://…`): any number of bot and worker
    /// processes on any number of machines.
    Postgres(Secret),
    /// The embedded store: one SQLite file (`DATABASE_URL=sqlite://…`, or `neurocards.db` in
    /// `DATA_DIR` when `DATABASE_URL` is unset), served by one process that runs everything.
    Sqlite(PathBuf),
}

impl StoreLocation {
    /// A short, secret-free description for logs: `postgres` or `sqlite <path>`.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(_) => "postgres".to_owned(),
            Self::Sqlite(path) => format!("sqlite {}", path.display()),
        }
    }

    /// Whether this is the embedded store.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }
}

/// The store `DATABASE_URL` and `DATA_DIR` name.
fn store_location(
    database_url: Option<String>,
    data_dir: Option<String>,
) -> Result<StoreLocation, ConfigError> {
    let dir = PathBuf::from(data_dir.unwrap_or_else(|| ".".to_owned()));
    let Some(url) = database_url else {
        return Ok(StoreLocation::Sqlite(dir.join("neurocards.db")));
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(StoreLocation::Postgres(Secret::new(url)));
    }
    if let Some(rest) = lower.strip_prefix("sqlite:").map(|_| &url["sqlite:".len()..]) {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() || path.contains('?') || path == ":memory:" {
            return Err(ConfigError::Invalid {
                var: "DATABASE_URL",
                reason: "use sqlite://<file path> (no query parameters, not :memory:)".into(),
            });
        }
        let path = PathBuf::from(path);
        // A relative file lives in DATA_DIR, like the default one.
        return Ok(StoreLocation::Sqlite(if path.is_absolute() { path } else { dir.join(path) }));
    }
    // Never echo the value: it may carry a password.
    Err(ConfigError::Invalid {
        var: "DATABASE_URL",
        reason: "expected postgres://…, postgresql://… or sqlite://<file>".into(),
    })
}

/// Everything the binaries read from the environment. See the README's configuration table.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where everything is stored (`DATABASE_URL`, `DATA_DIR`).
    pub store: StoreLocation,
    /// Whether the bot process also runs the generation pipeline (`ALL_IN_ONE`): always on the
    /// embedded store, off by default on PostgreSQL (separate `neurocards-worker` processes).
    pub all_in_one: bool,
    pub database_max_connections: u32,
    pub bot_token: Secret,
    pub telegram_api_url: Url,
    pub bot_mode: BotMode,
    pub public_base_url: Option<Url>,
    pub webhook_secret: Option<Secret>,
    pub http_addr: SocketAddr,
    /// Bearer token required on `/metrics` and `/queue_stats` (bot and worker); `None` leaves
    /// them open (bind them to a private address instead).
    pub metrics_token: Option<Secret>,
    /// Worker processes the operator runs, reported by `/queue_stats` as `workers_configured`
    /// (`WORKER_INSTANCES`); `None` reports the processes holding a lease.
    pub worker_instances: Option<u64>,
    /// Connections the HTTP server serves at once (`HTTP_MAX_CONNECTIONS`); more wait in the
    /// listen backlog.
    pub http_max_connections: u32,
    pub kie_base_url: Url,
    pub kie_upload_url: Url,
    /// The primary model first, then the fallbacks (`KIE_MODEL`, `KIE_FALLBACK_MODELS`).
    pub kie_models: Vec<String>,
    /// Prices of (model, length) other than `PRICE_PER_VIDEO` (`VIDEO_PRICES`,
    /// `model:seconds=credits,…`); each names a configured model.
    pub video_prices: Vec<ConfiguredPrice>,
    /// Optional HMAC key for verifying KIE callbacks (`KIE_WEBHOOK_HMAC_KEY`).
    pub kie_callback_hmac_key: Option<Secret>,
    /// Whole-request timeout of every KIE call (`KIE_REQUEST_TIMEOUT`, default 60 s); a worker
    /// stopping waits up to this long for a `createTask` in flight.
    pub kie_request_timeout: Duration,
    /// How often each KIE key's balance is read, fleet-wide (`KIE_BALANCE_EVERY`, default
    /// 5 min): one process reads each key per period.
    pub kie_balance_every: Duration,
    /// How long a job whose create call lost its answer waits for the provider's callback
    /// naming the task before it creates a new one (`LOST_TASK_WAIT`, default 10 min).
    pub lost_task_wait: Duration,
    /// The secret path segment of the KIE callback route (`KIE_CALLBACK_SECRET`); derived from
    /// the bot token when unset, so the bot and every worker agree without extra setup.
    pub kie_callback_secret: Secret,
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: Url,
    pub openai_model: String,
    pub worker_concurrency: u32,
    pub worker_http_addr: SocketAddr,
    /// Leases of claimed jobs (`JOB_LEASE`, default 60 s); heartbeats run every third of it.
    pub job_lease: Duration,
    /// How long a job may wait for the provider before it counts as a temporary error.
    pub generation_deadline: Duration,
    /// Jobs of one user running at once across all workers.
    pub per_user_in_flight: u32,
    /// Blamed rescues after which a job is failed with refund as a poison job (`MAX_RESCUES`);
    /// a rescue is blamed on a job when its worker died right after beginning a step on it.
    pub max_rescues: u32,
    /// How long a job may stay unfinished after its first claim before a rescue fails it with
    /// refund (`JOB_DEADLINE`, default 2 h).
    pub job_deadline: Duration,
    /// Admins; empty means nobody.
    pub admin_ids: Vec<UserId>,
    pub start_credits: Credits,
    pub price_per_video: Credits,
    /// Orders one user may place per minute.
    pub orders_per_minute: u32,
    /// Updates one user may send per minute before the bot pauses them
    /// (`UPDATES_PER_MINUTE`); 0 turns the limit off.
    pub updates_per_minute: u32,
    /// Own ideas one user may have refined by the LLM per hour (`IDEA_REFINES_PER_HOUR`);
    /// 0 means no limit.
    pub idea_refines_per_hour: u32,
    /// Result videos the worker downloads at once (`DOWNLOAD_CONCURRENCY`).
    pub download_concurrency: u32,
    /// Lets outbound fetches reach loopback and private addresses over plain HTTP
    /// (`FETCH_ALLOW_LOCAL`). For tests against local fakes only; never in production.
    pub fetch_allow_local: bool,
    /// The support contact shown in the menu and error texts (`SUPPORT_URL`), exactly as written.
    pub support_url: Option<Url>,
    /// The terms and privacy document linked from the consent question (`TERMS_URL`), exactly
    /// as written.
    pub terms_url: Option<Url>,
    /// Telegram file ids of demo videos shown after `/start`.
    pub welcome_video_ids: Vec<String>,
    /// A template catalogue replacing the built-in one.
    pub templates_path: Option<PathBuf>,
    /// A pack catalogue replacing the built-in one (`PACKS_PATH`).
    pub packs_path: Option<PathBuf>,
    /// Credits a referrer gets when a referred user's first purchase is credited
    /// (`REFERRAL_BONUS`, default 1; 0 turns the bonus off).
    pub referral_bonus: Credits,
    /// How often the bot walks Telegram's Star transactions to credit payments whose update was
    /// lost (`STARS_RECONCILE_INTERVAL`, default 5 min).
    pub stars_reconcile_interval: Duration,
    /// The YooKassa rail, on when `YOOKASSA_SHOP_ID` and `YOOKASSA_SECRET_KEY` are both set.
    pub yookassa: Option<YooKassaSettings>,
    pub retry: RetryPolicy,
    pub log_format: LogFormat,
}

/// The YooKassa rail's settings.
#[derive(Debug, Clone)]
pub struct YooKassaSettings {
    pub shop_id: String,
    pub secret_key: Secret,
    /// `YOOKASSA_API_URL`, default `https://api.yookassa.ru/v3`.
    pub api_url: Url,
    /// Where YooKassa sends the user after paying (`YOOKASSA_RETURN_URL`); the bot's own
    /// `https://t.me/<username>` when unset.
    pub return_url: Option<Url>,
    /// Addresses notifications may come from (`YOOKASSA_ALLOWED_IPS`: CIDRs and addresses, or
    /// `yookassa` for YooKassa's published list); unset accepts any sender, since every
    /// notification is verified by re-reading the payment from YooKassa anyway.
    pub allowed_ips: Option<String>,
    /// How often open purchases are re-read from YooKassa, so a lost notification is not lost
    /// money (`YOOKASSA_POLL_INTERVAL`, default 2 min).
    pub poll_interval: Duration,
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The environment variables the binaries read outside [`Settings`] and outside the KIE key
/// lookup (`kie::collect_keys`): the log filter and the machine name in worker ids. Together
/// with what [`Settings::from_lookup`] asks for, this is every variable the binaries read; the
/// README's configuration table and `.env.example` are checked against it.
pub const PROCESS_VARIABLES: &[&str] =
    &[crate::telemetry::LOG_FILTER_VAR, crate::domain::WorkerId::HOSTNAME_VAR];

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let env = Env { get: &get };

        let bot_mode = match get("BOT_MODE").as_deref() {
            None | Some("polling") => BotMode::Polling,
            Some("webhook") => BotMode::Webhook,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "BOT_MODE",
                    reason: format!("{other:?} (expected polling or webhook)"),
                })
            }
        };
        let public_base_url = env.url_opt("PUBLIC_BASE_URL")?;
        let webhook_secret = get("WEBHOOK_SECRET").map(Secret::new);
        if let Some(secret) = &webhook_secret {
            let s = secret.expose();
            // Telegram accepts 1-256 characters of this alphabet; fewer than 16 is guessable.
            if !(MIN_SECRET_CHARS..=256).contains(&s.len())
                || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ConfigError::Invalid {
                    var: "WEBHOOK_SECRET",
                    reason: "use 16-256 characters of A-Z, a-z, 0-9, _ and -".into(),
                });
            }
        }
        let metrics_token = get("METRICS_TOKEN").map(Secret::new);
        if let Some(token) = &metrics_token {
            let t = token.expose();
            // Sent as `Authorization: Bearer <token>`: visible ASCII without spaces.
            if t.len() < MIN_SECRET_CHARS || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::Invalid {
                    var: "METRICS_TOKEN",
                    reason: "use at least 16 visible ASCII characters without spaces".into(),
                });
            }
        }
        if bot_mode == BotMode::Webhook {
            if public_base_url.is_none() {
                return Err(ConfigError::Missing("PUBLIC_BASE_URL"));
            }
            if webhook_secret.is_none() {
                return Err(ConfigError::Missing("WEBHOOK_SECRET"));
            }
        }

        let mut kie_models =
            vec![get("KIE_MODEL").unwrap_or_else(|| "sora-2-image-to-video".into())];
        for m in env.list("KIE_FALLBACK_MODELS") {
            if !kie_models.contains(&m) {
                kie_models.push(m);
            }
        }

        let video_prices = env
            .list("VIDEO_PRICES")
            .iter()
            .map(|entry| parse_video_price(entry, &kie_models))
            .collect::<Result<Vec<_>, _>>()?;

        let admin_ids = env
            .list("ADMIN_IDS")
            .into_iter()
            .map(|s| {
                s.parse::<i64>().map(UserId).map_err(|_| ConfigError::Invalid {
                    var: "ADMIN_IDS",
                    reason: format!("{s:?} is not a Telegram user id"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let retry = RetryPolicy {
            temporary: env.schedule("RETRY_TEMPORARY_DELAYS", "10s,20s,40s")?,
            rate_limit: env.schedule("RETRY_RATE_LIMIT_DELAYS", "60s,120s,240s")?,
        };

        let log_format = match get("LOG_FORMAT") {
            None => LogFormat::Text,
            Some(v) => LogFormat::parse(&v).ok_or_else(|| ConfigError::Invalid {
                var: "LOG_FORMAT",
                reason: format!("{v:?} (expected text or json)"),
            })?,
        };

        let worker_concurrency = env.number_within("WORKER_CONCURRENCY", 64, 1..=10_000)?;

        let kie_callback_secret = match get("KIE_CALLBACK_SECRET") {
            Some(s) => {
                let ok = (16..=128).contains(&s.len())
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(ConfigError::Invalid {
                        var: "KIE_CALLBACK_SECRET",
                        reason: "use 16-128 characters of A-Z, a-z, 0-9, _ and -".into(),
                    });
                }
                Secret::new(s)
            }
            None => derived_callback_secret(
                get("BOT_TOKEN").as_deref().ok_or(ConfigError::Missing("BOT_TOKEN"))?,
            ),
        };
        let store = store_location(get("DATABASE_URL"), get("DATA_DIR"))?;
        let all_in_one = match env.flag_opt("ALL_IN_ONE")? {
            Some(false) if store.is_embedded() => {
                return Err(ConfigError::Invalid {
                    var: "ALL_IN_ONE",
                    reason: "the embedded store (no postgres:// DATABASE_URL) serves one process, \
                             which must run the pipeline itself; set DATABASE_URL to a \
                             PostgreSQL server to run separate workers"
                        .into(),
                })
            }
            Some(on) => on,
            None => store.is_embedded(),
        };
        let yookassa = match (get("YOOKASSA_SHOP_ID"), get("YOOKASSA_SECRET_KEY")) {
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Missing("YOOKASSA_SECRET_KEY")),
            (None, Some(_)) => return Err(ConfigError::Missing("YOOKASSA_SHOP_ID")),
            (Some(shop_id), Some(secret)) => {
                if shop_id.len() > 64 || !shop_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(ConfigError::Invalid {
                        var: "YOOKASSA_SHOP_ID",
                        reason: "a shop id is a number from the YooKassa dashboard".into(),
                    });
                }
                Some(YooKassaSettings {
                    shop_id,
                    secret_key: Secret::new(secret),
                    api_url: env.url("YOOKASSA_API_URL", "https://api.yookassa.ru/v3")?,
                    return_url: env.link_opt("YOOKASSA_RETURN_URL")?,
                    allowed_ips: get("YOOKASSA_ALLOWED_IPS"),
                    poll_interval: env.duration(
                        "YOOKASSA_POLL_INTERVAL",
                        "2m",
                        ms(1000)..=hours(24),
                    )?,
                })
            }
        };

        Ok(Self {
            store,
            all_in_one,
            database_max_connections: env.number_within(
                "DATABASE_MAX_CONNECTIONS",
                10,
                1..=10_000,
            )?,
            bot_token: get("BOT_TOKEN")
                .map(Secret::new)
                .ok_or(ConfigError::Missing("BOT_TOKEN"))?,
            telegram_api_url: env.url("TELEGRAM_API_URL", "https://api.telegram.org")?,
            bot_mode,
            public_base_url,
            webhook_secret,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:10000")?,
            metrics_token,
            worker_instances: match get("WORKER_INSTANCES") {
                None => None,
                Some(_) => Some(env.number_within("WORKER_INSTANCES", 1u64, 1..=100_000)?),
            },
            http_max_connections: env.number_within("HTTP_MAX_CONNECTIONS", 256, 1..=100_000)?,
            kie_base_url: env.url("KIE_BASE_URL", "https://api.kie.ai")?,
            kie_upload_url: env.url("KIE_UPLOAD_URL", "https://kieai.redpandaai.co")?,
            kie_models,
            video_prices,
            kie_callback_hmac_key: get("KIE_WEBHOOK_HMAC_KEY").map(Secret::new),
            kie_request_timeout: env.duration("KIE_REQUEST_TIMEOUT", "60s", ms(1000)..=hours(1))?,
            kie_balance_every: env.duration("KIE_BALANCE_EVERY", "5m", ms(10_000)..=hours(24))?,
            lost_task_wait: env.duration("LOST_TASK_WAIT", "10m", Duration::ZERO..=hours(24))?,
            kie_callback_secret,
            openai_api_key: get("OPENAI_API_KEY").map(Secret::new),
            openai_base_url: env.url("OPENAI_BASE_URL", "https://api.openai.com/v1")?,
            openai_model: get("OPENAI_MODEL").unwrap_or_else(|| "gpt-4.1-mini".into()),
            worker_concurrency,
            worker_http_addr: env.addr("WORKER_HTTP_ADDR", "0.0.0.0:10001")?,
            job_lease: env.duration("JOB_LEASE", "60s", ms(500)..=hours(1))?,
            generation_deadline: env.duration(
                "GENERATION_DEADLINE",
                "20m",
                ms(1000)..=hours(24),
            )?,
            per_user_in_flight: env.number_within("PER_USER_IN_FLIGHT", 5, 1..=1_000)?,
            max_rescues: env.number_within("MAX_RESCUES", 3, 0..=100)?,
            job_deadline: env.duration("JOB_DEADLINE", "2h", ms(60_000)..=hours(720))?,
            admin_ids,
            start_credits: env.credits("START_CREDITS", 0)?,
            price_per_video: env.credits("PRICE_PER_VIDEO", 1)?,
            orders_per_minute: env.number_within("ORDERS_PER_MINUTE", 5, 0..=10_000)?,
            updates_per_minute: env.number_within("UPDATES_PER_MINUTE", 60, 0..=100_000)?,
            idea_refines_per_hour: env.number_within("IDEA_REFINES_PER_HOUR", 10, 0..=10_000)?,
            download_concurrency: env.number_within("DOWNLOAD_CONCURRENCY", 4, 1..=256)?,
            fetch_allow_local: env.flag("FETCH_ALLOW_LOCAL")?,
            support_url: env.link_opt("SUPPORT_URL")?,
            terms_url: env.link_opt("TERMS_URL")?,
            welcome_video_ids: env.list("WELCOME_VIDEO_FILE_IDS"),
            templates_path: get("TEMPLATES_PATH").map(PathBuf::from),
            packs_path: get("PACKS_PATH").map(PathBuf::from),
            referral_bonus: env.credits("REFERRAL_BONUS", 1)?,
            stars_reconcile_interval: env.duration(
                "STARS_RECONCILE_INTERVAL",
                "5m",
                ms(1000)..=hours(24),
            )?,
            yookassa,
            retry,
            log_format,
        })
    }

    /// The URL KIE should POST results to, when a public base URL is configured:
    /// `PUBLIC_BASE_URL/kie/callback/<secret>` (a secret itself: never log it). Workers add
    /// `?job=<id>` per task.
    pub fn kie_callback_url(&self) -> Option<Secret> {
        let base = self.public_base_url.as_ref()?;
        let url = base.join(&format!("kie/callback/{}", self.kie_callback_secret.expose())).ok()?;
        Some(Secret::new(String::from(url)))
    }

    /// The URL Telegram should POST updates to in webhook mode.
    pub fn webhook_url(&self) -> Option<Url> {
        self.public_base_url.as_ref().and_then(|u| u.join("telegram/webhook").ok())
    }

    /// Whether `user` may use admin commands (deny by default).
    pub fn is_admin(&self, user: UserId) -> bool {
        self.admin_ids.contains(&user)
    }
}

struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn url(&self, var: &'static str, default: &str) -> Result<Url, ConfigError> {
        let raw = (self.get)(var).unwrap_or_else(|| default.to_owned());
        parse_url(var, &raw)
    }

    fn url_opt(&self, var: &'static str) -> Result<Option<Url>, ConfigError> {
        (self.get)(var).map(|raw| parse_url(var, &raw)).transpose()
    }

    /// A link shown to users or given as a redirect, kept exactly as written (a document, a
    /// `?start=` deep link): unlike a base URL, nothing is appended.
    fn link_opt(&self, var: &'static str) -> Result<Option<Url>, ConfigError> {
        (self.get)(var).map(|raw| parse_link(var, &raw)).transpose()
    }

    fn addr(&self, var: &'static str, default: &str) -> Result<SocketAddr, ConfigError> {
        let raw = (self.get)(var).unwrap_or_else(|| default.to_owned());
        raw.parse()
            .map_err(|_| ConfigError::Invalid { var, reason: format!("{raw:?} is not host:port") })
    }

    fn number<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        match (self.get)(var) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| ConfigError::Invalid {
                var,
                reason: format!("{raw:?} is not a number"),
            }),
        }
    }

    fn number_within<T>(
        &self,
        var: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let n = self.number(var, default)?;
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(ConfigError::Invalid {
                var,
                reason: format!("{n} is out of range (use {}..={})", range.start(), range.end()),
            })
        }
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        Ok(self.flag_opt(var)?.unwrap_or(false))
    }

    /// A flag that may be unset (`None`), so that its default can depend on other settings.
    fn flag_opt(&self, var: &'static str) -> Result<Option<bool>, ConfigError> {
        match (self.get)(var).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(None),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some(other) => {
                Err(ConfigError::Invalid { var, reason: format!("{other:?} (expected 1 or 0)") })
            }
        }
    }

    fn credits(&self, var: &'static str, default: i64) -> Result<Credits, ConfigError> {
        let n: i64 = self.number(var, default)?;
        Credits::new(n).map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })
    }

    /// A duration within `range` (so that nothing downstream adds an absurd one to a clock).
    fn duration(
        &self,
        var: &'static str,
        default: &str,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let raw = (self.get)(var).unwrap_or_else(|| default.to_owned());
        let d = parse_duration(&raw).map_err(|reason| ConfigError::Invalid { var, reason })?;
        if range.contains(&d) {
            Ok(d)
        } else {
            Err(ConfigError::Invalid {
                var,
                reason: format!(
                    "{raw:?} is out of range (use {}..={})",
                    show(*range.start()),
                    show(*range.end())
                ),
            })
        }
    }

    /// A retry schedule: at most [`MAX_RETRIES`] delays, each at most a day.
    fn schedule(&self, var: &'static str, default: &str) -> Result<Vec<Duration>, ConfigError> {
        let raw = (self.get)(var).unwrap_or_else(|| default.to_owned());
        let delays = RetryPolicy::parse_schedule(&raw)
            .map_err(|reason| ConfigError::Invalid { var, reason })?;
        if delays.len() > MAX_RETRIES {
            return Err(ConfigError::Invalid {
                var,
                reason: format!("at most {MAX_RETRIES} delays"),
            });
        }
        if delays.iter().any(|d| *d > hours(24)) {
            return Err(ConfigError::Invalid { var, reason: "each delay is at most 24h".into() });
        }
        Ok(delays)
    }

    fn list(&self, var: &str) -> Vec<String> {
        (self.get)(var)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// Shortest accepted `WEBHOOK_SECRET` and `METRICS_TOKEN`.
const MIN_SECRET_CHARS: usize = 16;

/// Most retries a schedule may list.
const MAX_RETRIES: usize = 20;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// A bound in the units people write (`500ms`, `24h`).
fn show(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// A base URL that paths are joined onto: a trailing slash is added, since without one `join`
/// would drop the last path segment.
fn parse_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let fixed = if raw.ends_with('/') { raw.to_owned() } else { format!("{raw}/") };
    parse_link(var, &fixed)
}

/// An http(s) URL, exactly as written.
fn parse_link(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid { var, reason: "must be an http(s) URL".into() });
    }
    Ok(url)
}

/// The callback secret when `KIE_CALLBACK_SECRET` is unset: HMAC-SHA256 of a fixed label under
/// the bot token, hex, 32 characters. One-way, so the path reveals nothing about the token.
fn derived_callback_secret(bot_token: &str) -> Secret {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(bot_token.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot run.
        return Secret::new(String::new());
    };
    mac.update(b"neurocards kie callback path");
    let hex: String =
        mac.finalize().into_bytes().iter().take(16).map(|b| format!("{b:02x}")).collect();
    Secret::new(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(&move |k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] =
        [("DATABASE_URL", "postgres://localhost/x"), ("BOT_TOKEN", "1:abc")];

    #[test]
    fn links_are_kept_as_written_and_base_urls_get_their_slash() {
        let s = settings(&[
            BASE[0],
            BASE[1],
            ("SUPPORT_URL", "https://t.me/neurocards_support?start=bot"),
            ("TERMS_URL", "https://example.com/docs/oferta.pdf"),
            ("PUBLIC_BASE_URL", "https://bot.example.com/neurocards"),
        ])
        .expect("valid");
        let support = s.support_url.as_ref().expect("set");
        assert_eq!(support.as_str(), "https://t.me/neurocards_support?start=bot");
        let terms = s.terms_url.as_ref().expect("set");
        assert_eq!(terms.as_str(), "https://example.com/docs/oferta.pdf");
        let base = s.public_base_url.as_ref().expect("set");
        assert_eq!(base.as_str(), "https://bot.example.com/neurocards/");
        let bad = settings(&[BASE[0], BASE[1], ("TERMS_URL", "ftp://example.com/oferta.pdf")]);
        assert!(matches!(bad, Err(ConfigError::Invalid { var: "TERMS_URL", .. })));
    }

    #[test]
    fn yookassa_is_on_only_with_both_shop_id_and_secret() {
        let off = settings(&BASE).expect("valid");
        assert!(off.yookassa.is_none());
        assert_eq!(off.referral_bonus.get(), 1);
        assert_eq!(off.stars_reconcile_interval, Duration::from_secs(300));
        let half = settings(&[BASE[0], BASE[1], ("YOOKASSA_SHOP_ID", "12345")]);
        assert!(matches!(half, Err(ConfigError::Missing("YOOKASSA_SECRET_KEY"))));
        let half = settings(&[BASE[0], BASE[1], ("YOOKASSA_SECRET_KEY", "live_x")]);
        assert!(matches!(half, Err(ConfigError::Missing("YOOKASSA_SHOP_ID"))));
        let on = settings(&[
            BASE[0],
            BASE[1],
            ("YOOKASSA_SHOP_ID", "12345"),
            ("YOOKASSA_SECRET_KEY", "live_secret"),
        ])
        .expect("valid");
        let y = on.yookassa.expect("on");
        assert_eq!(y.api_url.as_str(), "https://api.yookassa.ru/v3/");
        assert!(!format!("{y:?}").contains("live_secret"), "the secret never reaches Debug");
        let bad = settings(&[
            BASE[0],
            BASE[1],
            ("YOOKASSA_SHOP_ID", "12 345"),
            ("YOOKASSA_SECRET_KEY", "x"),
        ]);
        assert!(matches!(bad, Err(ConfigError::Invalid { var: "YOOKASSA_SHOP_ID", .. })));
    }

    #[test]
    fn defaults_follow_the_design_table() {
        let s = settings(&BASE).expect("valid");
        assert_eq!(s.bot_mode, BotMode::Polling);
        assert_eq!(s.http_addr.to_string(), "0.0.0.0:10000");
        assert_eq!(s.worker_concurrency, 64);
        assert_eq!(s.kie_models, vec!["sora-2-image-to-video".to_owned()]);
        assert_eq!(s.retry, RetryPolicy::default());
        assert!(s.admin_ids.is_empty());
        assert!(!s.is_admin(UserId(1)));
        assert_eq!(s.start_credits, Credits::ZERO);
        assert_eq!(s.max_rescues, 3);
        assert_eq!(s.job_deadline, Duration::from_secs(2 * 3600));
        assert_eq!(s.metrics_token, None);
        assert_eq!(s.http_max_connections, 256);
        assert_eq!(s.idea_refines_per_hour, 10);
        assert_eq!(s.download_concurrency, 4);
        assert!(!s.fetch_allow_local);
    }

    #[test]
    fn webhook_secret_follows_telegrams_alphabet_and_is_long_enough() {
        for ok in ["abcdefghijklmnop", "A-Z_a-z_0-9-0123", &"x".repeat(256)] {
            let mut pairs = BASE.to_vec();
            pairs.push(("WEBHOOK_SECRET", ok));
            assert!(settings(&pairs).is_ok(), "{ok}");
        }
        let mut pairs = BASE.to_vec();
        pairs.push(("WEBHOOK_SECRET", "fifteen_chars15"));
        let err = settings(&pairs).expect_err("15 characters");
        assert_eq!(
            err.to_string(),
            "WEBHOOK_SECRET is invalid: use 16-256 characters of A-Z, a-z, 0-9, _ and -"
        );
    }

    #[test]
    fn durations_inside_their_range_are_accepted() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("JOB_LEASE", "500ms"),
            ("GENERATION_DEADLINE", "24h"),
            ("RETRY_RATE_LIMIT_DELAYS", "24h"),
            ("METRICS_TOKEN", "0123456789abcdef"),
            ("FETCH_ALLOW_LOCAL", "1"),
            ("IDEA_REFINES_PER_HOUR", "0"),
        ]);
        let s = settings(&pairs).expect("valid");
        assert_eq!(s.job_lease, Duration::from_millis(500));
        assert_eq!(s.generation_deadline, Duration::from_secs(24 * 3600));
        assert!(s.fetch_allow_local);
        assert_eq!(s.idea_refines_per_hour, 0);
        assert!(!format!("{s:?}").contains("0123456789abcdef"), "the token is a secret");
    }

    #[test]
    fn missing_required_settings_name_the_variable() {
        let err = settings(&[("DATABASE_URL", "postgres://x")]).expect_err("needs BOT_TOKEN");
        assert_eq!(err.to_string(), "BOT_TOKEN is not set");
    }

    #[test]
    fn without_database_url_everything_runs_on_the_embedded_store() {
        let s = settings(&[("BOT_TOKEN", "1:abc")]).expect("only the token is required");
        assert_eq!(s.store, StoreLocation::Sqlite(PathBuf::from("./neurocards.db")));
        assert!(s.all_in_one, "one process runs everything");
        let s = settings(&[("BOT_TOKEN", "1:abc"), ("DATA_DIR", "/var/lib/nc")]).expect("valid");
        assert_eq!(s.store, StoreLocation::Sqlite(PathBuf::from("/var/lib/nc/neurocards.db")));
        let s = settings(&[("BOT_TOKEN", "1:abc"), ("DATABASE_URL", "sqlite://shop.db")])
            .expect("valid");
        assert_eq!(s.store, StoreLocation::Sqlite(PathBuf::from("./shop.db")));
        let s = settings(&[("BOT_TOKEN", "1:abc"), ("DATABASE_URL", "sqlite:///srv/n.db")])
            .expect("valid");
        assert_eq!(s.store, StoreLocation::Sqlite(PathBuf::from("/srv/n.db")));
        let err = settings(&[("BOT_TOKEN", "1:abc"), ("ALL_IN_ONE", "0")])
            .expect_err("the embedded store cannot have separate workers");
        assert!(err.to_string().starts_with("ALL_IN_ONE is invalid"), "{err}");
    }

    #[test]
    fn postgres_runs_separate_workers_unless_all_in_one_is_set() {
        let s = settings(&BASE).expect("valid");
        assert!(matches!(s.store, StoreLocation::Postgres(_)));
        assert!(!s.all_in_one);
        let mut pairs = BASE.to_vec();
        pairs.push(("ALL_IN_ONE", "1"));
        assert!(settings(&pairs).expect("valid").all_in_one);
        let err = settings(&[("BOT_TOKEN", "1:abc"), ("DATABASE_URL", "mysql://u:pw@h/db")])
            .expect_err("unknown scheme");
        assert!(!err.to_string().contains("pw"), "the URL is never echoed: {err}");
        assert!(
            settings(&[("BOT_TOKEN", "1:abc"), ("DATABASE_URL", "sqlite://x.db?mode=ro")]).is_err()
        );
    }

    #[test]
    fn webhook_mode_requires_url_and_secret() {
        let mut pairs = BASE.to_vec();
        pairs.push(("BOT_MODE", "webhook"));
        assert_eq!(settings(&pairs).expect_err("no url"), ConfigError::Missing("PUBLIC_BASE_URL"));
        pairs.push(("PUBLIC_BASE_URL", "https://bot.example.com"));
        assert_eq!(
            settings(&pairs).expect_err("no secret"),
            ConfigError::Missing("WEBHOOK_SECRET")
        );
        pairs.push(("WEBHOOK_SECRET", "s3cret_token-0123456789"));
        let s = settings(&pairs).expect("valid");
        assert_eq!(
            s.webhook_url().map(String::from).as_deref(),
            Some("https://bot.example.com/telegram/webhook")
        );
        let url = s.kie_callback_url().expect("callback URL");
        let secret = s.kie_callback_secret.expose();
        assert_eq!(secret.len(), 32, "derived from the bot token");
        assert_eq!(url.expose(), format!("https://bot.example.com/kie/callback/{secret}"));
    }

    #[test]
    fn malformed_values_are_refused_with_the_variable_named() {
        for (var, value) in [
            ("WORKER_CONCURRENCY", "many"),
            ("HTTP_ADDR", "nowhere"),
            ("ADMIN_IDS", "1,bob"),
            ("RETRY_TEMPORARY_DELAYS", "10s,later"),
            ("START_CREDITS", "-2"),
            ("TELEGRAM_API_URL", "ftp://x"),
            ("BOT_MODE", "carrier-pigeon"),
            ("LOG_FORMAT", "xml"),
            ("WEBHOOK_SECRET", "has spaces"),
            ("JOB_DEADLINE", "soon"),
            ("VIDEO_PRICES", "sora-2-image-to-video=2"),
            ("VIDEO_PRICES", "sora-2-image-to-video:15"),
            ("VIDEO_PRICES", "veo-3:15=2"),
            ("VIDEO_PRICES", "sora-2-image-to-video:0=2"),
            ("VIDEO_PRICES", "sora-2-image-to-video:15=-1"),
            ("JOB_DEADLINE", "0s"),
            ("WEBHOOK_SECRET", "has spaces but is long enough"),
            ("WEBHOOK_SECRET", "short_secret"),
            ("WEBHOOK_SECRET", &"x".repeat(257)),
            ("WEBHOOK_SECRET", "long-enough-but-ünicode"),
            ("METRICS_TOKEN", "short"),
            ("METRICS_TOKEN", "has a space in the middle"),
            ("JOB_LEASE", "18446744073709551615h"),
            ("JOB_LEASE", "99999999999999999999999999"),
            ("JOB_LEASE", "2h"),
            ("JOB_LEASE", "10ms"),
            ("JOB_LEASE", "0"),
            ("GENERATION_DEADLINE", "5124095576030431h"),
            ("GENERATION_DEADLINE", "365d"),
            ("RETRY_TEMPORARY_DELAYS", "10s,99999999999999999h"),
            ("RETRY_RATE_LIMIT_DELAYS", "25h"),
            ("RETRY_RATE_LIMIT_DELAYS", &["1s"; 21].join(",")),
            ("WORKER_CONCURRENCY", "0"),
            ("WORKER_CONCURRENCY", "18446744073709551616"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("DOWNLOAD_CONCURRENCY", "0"),
            ("DOWNLOAD_CONCURRENCY", "100000"),
            ("IDEA_REFINES_PER_HOUR", "-1"),
            ("FETCH_ALLOW_LOCAL", "maybe"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((var, value));
            let err = settings(&pairs).expect_err(var);
            assert!(err.to_string().starts_with(var), "{var}: {err}");
        }
    }

    #[test]
    fn lists_and_fallback_models_are_parsed() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("ADMIN_IDS", " 10, 20 "),
            ("KIE_FALLBACK_MODELS", "kling-3.0/video, bytedance/seedance-2,sora-2-image-to-video"),
            ("RETRY_TEMPORARY_DELAYS", "100ms,200ms"),
        ]);
        let s = settings(&pairs).expect("valid");
        assert_eq!(s.admin_ids, vec![UserId(10), UserId(20)]);
        assert_eq!(
            s.kie_models,
            vec!["sora-2-image-to-video", "kling-3.0/video", "bytedance/seedance-2"]
        );
        assert_eq!(s.retry.temporary, vec![Duration::from_millis(100), Duration::from_millis(200)]);

        pairs.push(("VIDEO_PRICES", "sora-2-image-to-video:15=2, kling-3.0/video:5 = 1"));
        let s = settings(&pairs).expect("valid");
        let price = |model: &str, duration_secs, credits| ConfiguredPrice {
            model: model.to_owned(),
            duration_secs,
            credits: Credits::new(credits).expect("credits"),
        };
        assert_eq!(
            s.video_prices,
            vec![price("sora-2-image-to-video", 15, 2), price("kling-3.0/video", 5, 1)]
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = settings(&BASE).expect("valid");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("1:abc"));
        assert!(!dbg.contains("postgres://localhost"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const VARS: &[&str] = &[
            "BOT_MODE",
            "PUBLIC_BASE_URL",
            "WEBHOOK_SECRET",
            "METRICS_TOKEN",
            "HTTP_ADDR",
            "HTTP_MAX_CONNECTIONS",
            "KIE_MODEL",
            "KIE_BALANCE_EVERY",
            "ADMIN_IDS",
            "RETRY_TEMPORARY_DELAYS",
            "RETRY_RATE_LIMIT_DELAYS",
            "LOG_FORMAT",
            "WORKER_CONCURRENCY",
            "JOB_LEASE",
            "GENERATION_DEADLINE",
            "PER_USER_IN_FLIGHT",
            "MAX_RESCUES",
            "START_CREDITS",
            "PRICE_PER_VIDEO",
            "ORDERS_PER_MINUTE",
            "UPDATES_PER_MINUTE",
            "VIDEO_PRICES",
            "IDEA_REFINES_PER_HOUR",
            "DOWNLOAD_CONCURRENCY",
            "FETCH_ALLOW_LOCAL",
            "DATABASE_MAX_CONNECTIONS",
            "DATA_DIR",
            "TELEGRAM_API_URL",
            "SUPPORT_URL",
        ];

        /// Values that look like what operators type, plus absurd and random ones.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                (any::<u64>(), prop::sample::select(vec!["ms", "s", "m", "h", "d"]))
                    .prop_map(|(n, u)| format!("{n}{u}")),
                "[0-9]{1,3}(ms|s|m|h)(,[0-9]{1,25}(ms|s|m|h)){0,4}",
                "(https?|ftp)://[a-z.]{1,12}(:[0-9]{1,6})?/?",
                "[A-Za-z0-9_-]{0,40}",
                "\\PC{0,40}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any environment is either valid settings or one error naming a variable that was
            /// set; never a panic.
            #[test]
            fn any_environment_is_settings_or_an_error_naming_a_variable(
                pairs in prop::collection::vec((prop::sample::select(VARS.to_vec()), value()), 0..8)
            ) {
                let mut env: std::collections::HashMap<String, String> = pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                env.insert("DATABASE_URL".into(), "postgres://localhost/x".into());
                env.insert("BOT_TOKEN".into(), "1:abc".into());
                match Settings::from_lookup(&|k| env.get(k).cloned()) {
                    Ok(s) => {
                        prop_assert!(s.job_lease <= Duration::from_secs(3600));
                        prop_assert!(s.generation_deadline <= Duration::from_secs(24 * 3600));
                        prop_assert!(s.retry.temporary.iter().all(|d| *d <= Duration::from_secs(24 * 3600)));
                    }
                    Err(e) => {
                        let named = e.to_string();
                        let var = named.split_whitespace().next().unwrap_or_default();
                        prop_assert!(VARS.contains(&var) || var == "PUBLIC_BASE_URL" || var == "WEBHOOK_SECRET", "{}", named);
                    }
                }
            }
        }
    }
}
