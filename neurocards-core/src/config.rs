//! Typed configuration, read once at start from the environment (a `.env` file is loaded by the
//! binaries first). A missing or malformed setting is one clear error naming the variable; it
//! never panics later.

use crate::domain::{parse_duration, Credits, RetryPolicy, UserId};
use crate::secret::Secret;
use crate::telemetry::LogFormat;
use std::net::SocketAddr;
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

/// How the bot receives updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotMode {
    /// Long polling; one process at a time (an advisory lock), pending updates kept.
    #[default]
    Polling,
    /// Telegram pushes updates to `PUBLIC_BASE_URL/telegram/webhook`; any number of replicas.
    Webhook,
}

/// Everything the binaries read from the environment. See the README's configuration table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    pub database_max_connections: u32,
    pub bot_token: Secret,
    pub telegram_api_url: Url,
    pub bot_mode: BotMode,
    pub public_base_url: Option<Url>,
    pub webhook_secret: Option<Secret>,
    pub http_addr: SocketAddr,
    pub kie_base_url: Url,
    pub kie_upload_url: Url,
    /// The primary model first, then the fallbacks (`KIE_MODEL`, `KIE_FALLBACK_MODELS`).
    pub kie_models: Vec<String>,
    /// Optional HMAC key for verifying KIE callbacks (`KIE_WEBHOOK_HMAC_KEY`).
    pub kie_callback_hmac_key: Option<Secret>,
    /// Whole-request timeout of every KIE call (`KIE_REQUEST_TIMEOUT`, default 60 s); a worker
    /// stopping waits up to this long for a `createTask` in flight.
    pub kie_request_timeout: Duration,
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
    /// Rescues after which a job that keeps losing its worker is failed with refund.
    pub max_rescues: u32,
    /// Admins; empty means nobody.
    pub admin_ids: Vec<UserId>,
    pub start_credits: Credits,
    pub price_per_video: Credits,
    /// Orders one user may place per minute.
    pub orders_per_minute: u32,
    pub support_url: Option<Url>,
    pub terms_url: Option<Url>,
    /// Telegram file ids of demo videos shown after `/start`.
    pub welcome_video_ids: Vec<String>,
    /// A template catalogue replacing the built-in one.
    pub templates_path: Option<PathBuf>,
    pub retry: RetryPolicy,
    pub log_format: LogFormat,
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
            if s.len() > 256
                || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ConfigError::Invalid {
                    var: "WEBHOOK_SECRET",
                    reason: "use 1-256 characters of A-Z, a-z, 0-9, _ and -".into(),
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

        let worker_concurrency = env.number("WORKER_CONCURRENCY", 64)?;
        if !(1..=10_000).contains(&worker_concurrency) {
            return Err(ConfigError::Invalid {
                var: "WORKER_CONCURRENCY",
                reason: "use 1..=10000".into(),
            });
        }

        Ok(Self {
            database_url: get("DATABASE_URL")
                .map(Secret::new)
                .ok_or(ConfigError::Missing("DATABASE_URL"))?,
            database_max_connections: env.number("DATABASE_MAX_CONNECTIONS", 10)?,
            bot_token: get("BOT_TOKEN")
                .map(Secret::new)
                .ok_or(ConfigError::Missing("BOT_TOKEN"))?,
            telegram_api_url: env.url("TELEGRAM_API_URL", "https://api.telegram.org")?,
            bot_mode,
            public_base_url,
            webhook_secret,
            http_addr: env.addr("HTTP_ADDR", "0.0.0.0:10000")?,
            kie_base_url: env.url("KIE_BASE_URL", "https://api.kie.ai")?,
            kie_upload_url: env.url("KIE_UPLOAD_URL", "https://kieai.redpandaai.co")?,
            kie_models,
            kie_callback_hmac_key: get("KIE_WEBHOOK_HMAC_KEY").map(Secret::new),
            kie_request_timeout: env.duration("KIE_REQUEST_TIMEOUT", "60s")?,
            openai_api_key: get("OPENAI_API_KEY").map(Secret::new),
            openai_base_url: env.url("OPENAI_BASE_URL", "https://api.openai.com/v1")?,
            openai_model: get("OPENAI_MODEL").unwrap_or_else(|| "gpt-4.1-mini".into()),
            worker_concurrency,
            worker_http_addr: env.addr("WORKER_HTTP_ADDR", "0.0.0.0:10001")?,
            job_lease: env.duration("JOB_LEASE", "60s")?,
            generation_deadline: env.duration("GENERATION_DEADLINE", "20m")?,
            per_user_in_flight: env.number("PER_USER_IN_FLIGHT", 5)?,
            max_rescues: env.number("MAX_RESCUES", 3)?,
            admin_ids,
            start_credits: env.credits("START_CREDITS", 0)?,
            price_per_video: env.credits("PRICE_PER_VIDEO", 1)?,
            orders_per_minute: env.number("ORDERS_PER_MINUTE", 5)?,
            support_url: env.url_opt("SUPPORT_URL")?,
            terms_url: env.url_opt("TERMS_URL")?,
            welcome_video_ids: env.list("WELCOME_VIDEO_FILE_IDS"),
            templates_path: get("TEMPLATES_PATH").map(PathBuf::from),
            retry,
            log_format,
        })
    }

    /// The URL KIE should POST results to, when a public base URL is configured.
    pub fn kie_callback_url(&self) -> Option<String> {
        self.public_base_url.as_ref().and_then(|u| u.join("kie/callback").ok()).map(String::from)
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

    fn credits(&self, var: &'static str, default: i64) -> Result<Credits, ConfigError> {
        let n: i64 = self.number(var, default)?;
        Credits::new(n).map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })
    }

    fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let raw = (self.get)(var).unwrap_or_else(|| default.to_owned());
        match parse_duration(&raw) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(ConfigError::Invalid { var, reason: "must be more than zero".into() }),
            Err(reason) => Err(ConfigError::Invalid { var, reason }),
        }
    }

    fn schedule(&self, var: &'static str, default: &str) -> Result<Vec<Duration>, ConfigError> {
        let raw = (self.get)(var).unwrap_or_else(|| default.to_owned());
        RetryPolicy::parse_schedule(&raw).map_err(|reason| ConfigError::Invalid { var, reason })
    }

    fn list(&self, var: &str) -> Vec<String> {
        (self.get)(var)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

fn parse_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    // A base URL without a trailing slash would lose its last path segment in `join`.
    let fixed = if raw.ends_with('/') { raw.to_owned() } else { format!("{raw}/") };
    let url =
        Url::parse(&fixed).map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid { var, reason: "must be an http(s) URL".into() });
    }
    Ok(url)
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
    }

    #[test]
    fn missing_required_settings_name_the_variable() {
        let err = settings(&[("BOT_TOKEN", "1:abc")]).expect_err("needs DATABASE_URL");
        assert_eq!(err.to_string(), "DATABASE_URL is not set");
        let err = settings(&[("DATABASE_URL", "postgres://x")]).expect_err("needs BOT_TOKEN");
        assert_eq!(err.to_string(), "BOT_TOKEN is not set");
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
        pairs.push(("WEBHOOK_SECRET", "s3cret_token"));
        let s = settings(&pairs).expect("valid");
        assert_eq!(
            s.webhook_url().map(String::from).as_deref(),
            Some("https://bot.example.com/telegram/webhook")
        );
        assert_eq!(s.kie_callback_url().as_deref(), Some("https://bot.example.com/kie/callback"));
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
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = settings(&BASE).expect("valid");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("1:abc"));
        assert!(!dbg.contains("postgres://localhost"));
    }
}
