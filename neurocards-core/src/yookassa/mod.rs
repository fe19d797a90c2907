//! YooKassa (RUB) adapter: creates redirect payments, reads them back, parses notifications
//! and checks who posted them.
//!
//! - [`YooKassaClient::create_payment`] sends the purchase id as the `Idempotence-Key`, so a
//!   retry of the same purchase after a timeout or a 500 returns the payment already created.
//! - [`YooKassaClient::get_payment`] is the only trusted source of a payment's status and
//!   amount; a [`Notification`] says only which payment to re-read.
//! - [`IpAllowList`] decides which peers may post notifications.
//!
//! Errors say what the caller can do: [`YooKassaError::is_retryable`] is true for network
//! failures, timeouts, 429 and 5xx. The shop's secret key appears in no error and no log.

mod allow_list;
mod client;
mod money;
mod wire;

pub use allow_list::{AllowListError, IpAllowList, YOOKASSA_NETWORKS, YOOKASSA_WORD};
pub use client::{YooKassaClient, MAX_RESPONSE_BYTES};
pub use money::{kopecks_to_value, value_to_kopecks, MoneyError};
pub use wire::{
    is_valid_payment_id, Amount, CancellationDetails, Confirmation, CreatePayment,
    InvalidNotification, Notification, Payment, PaymentStatus, MAX_DESCRIPTION_CHARS,
    MAX_IDEMPOTENCE_KEY_CHARS, MAX_NOTIFICATION_BYTES,
};

use std::time::Duration;

/// YooKassa's API (`YOOKASSA_API_URL` may point elsewhere, e.g. at a fake in tests).
pub const DEFAULT_BASE_URL: &str = "https://api.yookassa.ru/v3";

/// A failed YooKassa call, classified by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YooKassaError {
    /// Network failure, timeout, `429`, `5xx`, or `202` (still processing). The outcome of a
    /// create is unknown: retry later with the same purchase id (the same `Idempotence-Key`),
    /// which returns the payment if it was created.
    #[error("YooKassa unavailable, retry later: {reason}")]
    Retryable {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// How long YooKassa asked to wait, when it said.
        retry_after: Option<Duration>,
        reason: String,
    },
    /// A `4xx` answer: the request is wrong (`invalid_request`), the credentials are
    /// (`invalid_credentials`, `forbidden`) or the payment does not exist (`not_found`).
    /// Repeating the same request gives the same answer.
    #[error("YooKassa rejected the request (HTTP {status}, {code}): {description}")]
    Rejected {
        status: u16,
        /// YooKassa's error code, or `http_<status>` when the body had none.
        code: String,
        /// YooKassa's description (and the parameter at fault), bounded and redacted.
        description: String,
    },
    /// A successful status with a body that is not a payment (unreadable JSON, an inexact
    /// amount, another payment's id, or larger than [`MAX_RESPONSE_BYTES`]). Not retryable;
    /// after a create the payment may exist, and a retry with the same key returns the same
    /// answer.
    #[error("malformed answer from YooKassa: {0}")]
    Malformed(String),
    /// Refused before sending: an invalid payment id, purchase id, amount or return URL.
    #[error("invalid YooKassa request: {0}")]
    InvalidRequest(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the YooKassa client: {0}")]
    Setup(String),
}

impl YooKassaError {
    /// Whether the same request may succeed later ([`YooKassaError::Retryable`] only).
    pub fn is_retryable(&self) -> bool {
        matches!(self, YooKassaError::Retryable { .. })
    }

    /// Whether YooKassa refused the shop's credentials (401/403): the operator must act.
    pub fn is_credentials(&self) -> bool {
        matches!(self, YooKassaError::Rejected { status: 401 | 403, .. })
    }

    /// Whether YooKassa knows no such payment (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, YooKassaError::Rejected { status: 404, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retryable_errors_are_retryable() {
        let r =
            YooKassaError::Retryable { status: Some(500), retry_after: None, reason: "x".into() };
        assert!(r.is_retryable());
        let creds = YooKassaError::Rejected {
            status: 401,
            code: "invalid_credentials".into(),
            description: "x".into(),
        };
        assert!(!creds.is_retryable());
        assert!(creds.is_credentials());
        assert!(!YooKassaError::Malformed("x".into()).is_retryable());
        assert!(!YooKassaError::InvalidRequest("x".into()).is_retryable());
    }
}
