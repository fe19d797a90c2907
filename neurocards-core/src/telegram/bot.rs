//! Building the bot client: the API URL from configuration (tests point it at the fake), a
//! reqwest client with timeouts long enough for a 50 MB video upload, and teloxide's `Throttle`
//! in front so that outbound limits hold however many jobs send at once.

use crate::http::{self, HttpTimeouts};
use crate::secret::Secret;
use std::time::Duration;
use teloxide::adaptors::throttle::{Limits, Settings, Throttle};
use teloxide::Bot;
use url::Url;

/// The bot type used everywhere: teloxide's `Bot` behind the `Throttle` adaptor.
///
/// Its `Debug` output contains the bot token (teloxide derives it): never log a `TgBot` with
/// `{:?}`; types holding one implement `Debug` by hand.
pub type TgBot = Throttle<Bot>;

/// How the bot client talks to the Bot API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout. teloxide has only a client-wide timeout, so this must cover the
    /// slowest call: uploading a video of up to 50 MB, and a long-polling `getUpdates`.
    pub request_timeout: Duration,
    /// Outbound limits (Telegram's documented defaults: 1 message/s and 20/min per chat,
    /// 30/s overall).
    pub limits: Limits,
}

impl Default for BotOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(180),
            limits: Limits::default(),
        }
    }
}

/// The bot client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildBotError {
    /// The HTTP client could not be built (TLS backend initialisation); not retryable.
    #[error("cannot build the Telegram HTTP client: {0}")]
    Client(String),
    /// The API URL has a non-root path ending in `/`, which would make teloxide build
    /// `…//bot<token>/…` URLs.
    #[error("TELEGRAM_API_URL must not end with '/' after a path: {0}")]
    TrailingSlash(String),
}

/// Builds the throttled bot for `api_url` (e.g. `https://api.telegram.org` or the fake's URL).
///
/// Must be called inside a Tokio runtime: the `Throttle` worker is spawned on it and lives as
/// long as a clone of the returned bot does. Requests that Telegram answers with `retry_after`
/// are not re-sent by the throttle; the callers decide (see [`super::TelegramNotifier`]), but the
/// throttle still freezes all sending for the period Telegram asked for.
pub fn build_bot(
    token: &Secret,
    api_url: &Url,
    options: &BotOptions,
) -> Result<TgBot, BuildBotError> {
    if api_url.path() != "/" && api_url.path().ends_with('/') {
        return Err(BuildBotError::TrailingSlash(api_url.to_string()));
    }
    let client = http::client(HttpTimeouts {
        connect: options.connect_timeout,
        request: options.request_timeout,
    })
    .map_err(|e| BuildBotError::Client(e.to_string()))?;
    let bot = Bot::with_client(token.expose(), client).set_api_url(api_url.clone());
    let settings = Settings::default().limits(options.limits).no_retry();
    Ok(Throttle::spawn_with_settings(bot, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_path_with_a_trailing_slash_is_refused() {
        let url = Url::parse("http://127.0.0.1:1/tg/").expect("valid url");
        let err = build_bot(&Secret::new("1:x"), &url, &BotOptions::default())
            .expect_err("trailing slash is refused");
        assert!(matches!(err, BuildBotError::TrailingSlash(_)));
    }

    #[tokio::test]
    async fn root_and_plain_paths_are_accepted() {
        for u in ["http://127.0.0.1:1", "http://127.0.0.1:1/", "http://127.0.0.1:1/tg"] {
            let url = Url::parse(u).expect("valid url");
            assert!(build_bot(&Secret::new("1:x"), &url, &BotOptions::default()).is_ok(), "{u}");
        }
    }
}
