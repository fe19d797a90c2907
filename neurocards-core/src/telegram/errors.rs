//! Mapping teloxide's errors to the ports' errors. Every text that leaves this module is
//! redacted: teloxide's network errors quote the request URL, which holds the bot token
//! (`…/bot<token>/sendMessage`, `…/file/bot<token>/<path>`).

use crate::ports::{NotifyError, PhotoError};
use crate::secret::{redact, Secret};
use std::time::Duration;
use teloxide::{ApiError, RequestError};

/// Longest error text kept (an unparseable body can be a whole HTML page).
const MAX_DETAIL: usize = 300;

/// Whether an API error means the user can no longer be messaged (blocked the bot, deleted the
/// account, never started the bot). The caller records it on the user; retrying cannot help.
pub fn is_unreachable_user(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
    ) || matches!(error, ApiError::Unknown(text) if text.starts_with("Forbidden:"))
}

/// Maps a Bot API call's error to [`NotifyError`]:
/// unreachable user → `BotBlocked`; `retry_after` → `RetryAfter`; server-side errors, a
/// connection that could not be made and local I/O errors → `Temporary`; a request that went
/// out without a readable answer (timeout, connection lost, unparseable answer) →
/// `Unanswered`; everything else (a request we built wrong,
/// a chat that does not exist) → `Permanent`.
pub fn notify_error(error: &RequestError, token: &Secret) -> NotifyError {
    match error {
        RequestError::RetryAfter(s) => {
            NotifyError::RetryAfter(crate::domain::cap_retry_after(s.duration()))
        }
        RequestError::Api(api) if is_unreachable_user(api) => NotifyError::BotBlocked,
        RequestError::Api(api) if is_server_side(api) => {
            NotifyError::Temporary(describe_request_error(error, token))
        }
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => {
            NotifyError::Permanent(describe_request_error(error, token))
        }
        // A request that never left (no connection) sent nothing; one that went out and got
        // no readable answer may have been acted on.
        RequestError::Network(e) if e.is_connect() || e.is_builder() => {
            NotifyError::Temporary(describe_request_error(error, token))
        }
        RequestError::Network(_) | RequestError::InvalidJson { .. } => {
            NotifyError::Unanswered(describe_request_error(error, token))
        }
        RequestError::Io(_) => NotifyError::Temporary(describe_request_error(error, token)),
    }
}

/// Maps a `getFile` error to [`PhotoError`]. `limit` is the download limit, used when Telegram
/// refuses a file as too big without saying its size.
pub fn photo_error(error: &RequestError, token: &Secret, limit: u64) -> PhotoError {
    match error {
        RequestError::Api(ApiError::WrongFileId | ApiError::FileIdInvalid) => {
            PhotoError::Gone(describe_request_error(error, token))
        }
        // Telegram refuses getFile above 20 MB without the size; report "more than the limit".
        RequestError::Api(ApiError::Unknown(text)) if text.contains("file is too big") => {
            PhotoError::TooLarge { size: limit.saturating_add(1), limit }
        }
        RequestError::Api(api) if !is_server_side(api) => {
            PhotoError::Gone(describe_request_error(error, token))
        }
        _ => PhotoError::Temporary(describe_request_error(error, token)),
    }
}

/// A 5xx-like error Telegram may answer with while it is struggling.
fn is_server_side(error: &ApiError) -> bool {
    match error {
        ApiError::Unknown(text) => {
            let t = text.to_ascii_lowercase();
            t.contains("internal server error")
                || t.contains("bad gateway")
                || t.contains("service unavailable")
                || t.contains("gateway timeout")
                || t.starts_with("too many requests")
        }
        _ => false,
    }
}

/// The error with its causes, token redacted, shortened.
pub fn describe_request_error(error: &RequestError, token: &Secret) -> String {
    match error {
        RequestError::InvalidJson { source, raw } => {
            let raw = shorten(&redact(raw, &[token]));
            format!("unparseable answer from the Bot API ({source}): {raw}")
        }
        _ => with_causes(error, token),
    }
}

/// Formats an error and its `source()` chain, redacts `token`, and shortens the result.
pub fn with_causes(error: &(dyn std::error::Error + 'static), token: &Secret) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    shorten(&redact(&text, &[token]))
}

/// The delay Telegram asked for, if the error carries one, capped at
/// [`crate::domain::MAX_RETRY_AFTER`].
pub fn retry_after(error: &RequestError) -> Option<Duration> {
    match error {
        RequestError::RetryAfter(s) => Some(crate::domain::cap_retry_after(s.duration())),
        _ => None,
    }
}

fn shorten(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_owned();
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn token() -> Secret {
        Secret::new("123456:SECRET-token")
    }

    #[test]
    fn blocked_and_deactivated_users_are_bot_blocked() {
        for api in [ApiError::BotBlocked, ApiError::UserDeactivated] {
            let e = notify_error(&RequestError::Api(api), &token());
            assert_eq!(e, NotifyError::BotBlocked);
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn retry_after_keeps_its_duration() {
        let e = RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(3));
        assert_eq!(notify_error(&e, &token()), NotifyError::RetryAfter(Duration::from_secs(3)));
    }

    #[test]
    fn a_retry_after_of_a_year_is_capped() {
        let year = RequestError::RetryAfter(teloxide::types::Seconds::from_seconds(31_536_000));
        assert_eq!(retry_after(&year), Some(crate::domain::MAX_RETRY_AFTER));
        assert_eq!(
            notify_error(&year, &token()),
            NotifyError::RetryAfter(crate::domain::MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn unparseable_answers_are_unanswered_retryable_and_redacted() {
        let raw = "<html>bad gateway at /bot123456:SECRET-token/sendMessage</html>";
        let source = serde_json::from_str::<u8>("x").expect_err("not json");
        let e = RequestError::InvalidJson { source: Arc::new(source), raw: raw.into() };
        let mapped = notify_error(&e, &token());
        assert!(matches!(mapped, NotifyError::Unanswered(_)), "{mapped:?}");
        assert!(mapped.is_retryable());
        assert!(mapped.may_have_been_sent());
        assert!(!mapped.to_string().contains("SECRET"), "{mapped}");
    }

    #[test]
    fn bad_requests_are_permanent_and_server_errors_temporary() {
        let bad = RequestError::Api(ApiError::ChatNotFound);
        assert!(matches!(notify_error(&bad, &token()), NotifyError::Permanent(_)));
        let server = RequestError::Api(ApiError::Unknown("Internal Server Error".into()));
        let server = notify_error(&server, &token());
        assert!(matches!(server, NotifyError::Temporary(_)));
        assert!(!server.may_have_been_sent(), "Telegram answered: nothing was sent");
    }

    #[test]
    fn get_file_errors_map_to_photo_errors() {
        let big = RequestError::Api(ApiError::Unknown("Bad Request: file is too big".into()));
        assert_eq!(
            photo_error(&big, &token(), 100),
            PhotoError::TooLarge { size: 101, limit: 100 }
        );
        let gone = RequestError::Api(ApiError::WrongFileId);
        assert!(matches!(photo_error(&gone, &token(), 100), PhotoError::Gone(_)));
    }
}
