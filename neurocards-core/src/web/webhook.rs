//! `POST /telegram/webhook`: Telegram's secret header checked in constant time (401 without
//! it), then the update handled within the request.

use super::WebhookRoute;
use crate::conversation::Delivery;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

/// The header Telegram echoes `secret_token` in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Whether the request carries the configured secret; compared in constant time.
pub(crate) fn secret_matches(headers: &HeaderMap, secret: &crate::secret::Secret) -> bool {
    let Some(given) = headers.get(SECRET_HEADER) else { return false };
    let expected = secret.expose().as_bytes();
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected))
}

pub(super) async fn receive(
    State(route): State<WebhookRoute>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if !secret_matches(&headers, &route.secret) {
        tracing::warn!("webhook request without the right secret refused");
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_slice::<teloxide::types::Update>(&body) {
        Ok(update) => match route.updates.handle(update).await {
            Delivery::Done => StatusCode::OK,
            // Nothing was done: Telegram delivers the update again later.
            Delivery::Retry => StatusCode::SERVICE_UNAVAILABLE,
        },
        Err(e) => {
            // Telegram would redeliver a refused update for a day; an unparseable one can
            // never succeed, so it is acknowledged and logged.
            tracing::warn!(error = %e, bytes = body.len(), "webhook update unparseable");
            StatusCode::OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn secret_must_be_present_and_equal() {
        let secret = Secret::new("s3cr3t_token");
        let mut headers = HeaderMap::new();
        assert!(!secret_matches(&headers, &secret));
        headers.insert(SECRET_HEADER, "s3cr3t_tokeN".parse().expect("header"));
        assert!(!secret_matches(&headers, &secret));
        headers.insert(SECRET_HEADER, "s3cr3t".parse().expect("header"));
        assert!(!secret_matches(&headers, &secret));
        headers.insert(SECRET_HEADER, "s3cr3t_token".parse().expect("header"));
        assert!(secret_matches(&headers, &secret));
        assert!(!secret_matches(&headers, &Secret::new("")));
    }
}
