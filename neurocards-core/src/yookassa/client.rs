//! The two YooKassa calls the bot makes, and the classification of their answers.

use super::wire::{is_valid_payment_id, CreatePayment, ErrorBody, Payment};
use super::YooKassaError;
use crate::http::HttpTimeouts;
use crate::secret::{redact, Secret};
use std::time::Duration;
use url::Url;

/// The most of an answer body that is read; a payment object is about 1 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest YooKassa error text kept in our errors.
const MAX_ERROR_TEXT: usize = 300;

/// Longest connect timeout, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A YooKassa API client for one shop. Cheap to clone (the HTTP pool is shared). Makes exactly
/// one HTTP request per call and never retries by itself: the caller retries
/// [`YooKassaError::Retryable`] errors with the same purchase id.
#[derive(Debug, Clone)]
pub struct YooKassaClient {
    http: reqwest::Client,
    base: String,
    shop_id: String,
    secret_key: Secret,
}

impl YooKassaClient {
    /// A client for the shop `shop_id` with its secret key, against `base_url` (normally
    /// [`super::DEFAULT_BASE_URL`]); `timeout` bounds each whole request. Fails only if the
    /// HTTP client cannot be built.
    pub fn new(
        base_url: &Url,
        shop_id: impl Into<String>,
        secret_key: Secret,
        timeout: Duration,
    ) -> Result<Self, YooKassaError> {
        let timeouts = HttpTimeouts { connect: timeout.min(MAX_CONNECT_TIMEOUT), request: timeout };
        let http =
            crate::http::client(timeouts).map_err(|e| YooKassaError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.as_str().trim_end_matches('/').to_owned(),
            shop_id: shop_id.into(),
            secret_key,
        })
    }

    /// Creates a one-step redirect payment (`POST {base}/payments`) with
    /// `Idempotence-Key: <purchase id>`. Returns the payment (normally `pending`, with a
    /// confirmation URL). Repeating the call for the same purchase returns the same payment.
    #[tracing::instrument(skip_all, fields(user_id = request.user_id, purchase_id = %request.purchase_id))]
    pub async fn create_payment(&self, request: &CreatePayment) -> Result<Payment, YooKassaError> {
        request.validate().map_err(YooKassaError::InvalidRequest)?;
        let response = self
            .http
            .post(format!("{}/payments", self.base))
            .basic_auth(&self.shop_id, Some(self.secret_key.expose()))
            .header("Idempotence-Key", &request.purchase_id)
            .json(&request.body())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let payment = self.read_payment(response).await?;
        tracing::info!(
            payment_id = %payment.id,
            status = payment.status.as_str(),
            "YooKassa payment created"
        );
        Ok(payment)
    }

    /// Reads a payment (`GET {base}/payments/{id}`): its current status, amount and
    /// metadata. `id` must pass [`is_valid_payment_id`]; the answer must be that payment.
    #[tracing::instrument(skip_all, fields(payment_id = %id))]
    pub async fn get_payment(&self, id: &str) -> Result<Payment, YooKassaError> {
        if !is_valid_payment_id(id) {
            return Err(YooKassaError::InvalidRequest("not a YooKassa payment id".to_owned()));
        }
        let response = self
            .http
            .get(format!("{}/payments/{id}", self.base))
            .basic_auth(&self.shop_id, Some(self.secret_key.expose()))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let payment = self.read_payment(response).await?;
        if payment.id != id {
            return Err(YooKassaError::Malformed("the answer is another payment".to_owned()));
        }
        tracing::debug!(status = payment.status.as_str(), "YooKassa payment read");
        Ok(payment)
    }

    async fn read_payment(&self, response: reqwest::Response) -> Result<Payment, YooKassaError> {
        let status = response.status().as_u16();
        let (body, complete) = self.read_bounded(response).await?;
        match status {
            202 => {
                let retry_after = serde_json::from_slice::<ErrorBody>(&body)
                    .ok()
                    .and_then(|e| e.retry_after)
                    .map(|ms| Duration::from_millis(ms.min(3_600_000)));
                Err(YooKassaError::Retryable {
                    status: Some(202),
                    retry_after,
                    reason: "the request is still being processed".to_owned(),
                })
            }
            200..=299 => {
                if !complete {
                    return Err(YooKassaError::Malformed(format!(
                        "answer larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                let payment: Payment = serde_json::from_slice(&body).map_err(|e| {
                    YooKassaError::Malformed(self.clean(&format!("not a payment: {e}")))
                })?;
                if !is_valid_payment_id(&payment.id) {
                    return Err(YooKassaError::Malformed("unreadable payment id".to_owned()));
                }
                Ok(payment)
            }
            400..=599 => Err(self.classify_error(status, &body)),
            _ => Err(YooKassaError::Malformed(format!("unexpected HTTP {status}"))),
        }
    }

    /// Reads at most [`MAX_RESPONSE_BYTES`]; the flag says whether the whole body fit.
    async fn read_bounded(
        &self,
        mut response: reqwest::Response,
    ) -> Result<(Vec<u8>, bool), YooKassaError> {
        if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
            return Ok((Vec::new(), false));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Ok((body, false));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, true))
    }

    fn classify_error(&self, status: u16, body: &[u8]) -> YooKassaError {
        let api = serde_json::from_slice::<ErrorBody>(body).unwrap_or_default();
        let mut description =
            api.description.unwrap_or_else(|| format!("HTTP {status} without an error body"));
        if let Some(parameter) = api.parameter {
            description = format!("{description} (parameter {parameter})");
        }
        let description = self.clean(&description);
        let code = api
            .code
            .filter(|c| !c.is_empty())
            .map(|c| self.clean(&c))
            .unwrap_or_else(|| format!("http_{status}"));
        match status {
            429 | 500..=599 => YooKassaError::Retryable {
                status: Some(status),
                retry_after: None,
                reason: format!("HTTP {status} {code}: {description}"),
            },
            _ => YooKassaError::Rejected { status, code, description },
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> YooKassaError {
        let reason = if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            self.clean(&e.without_url().to_string())
        };
        YooKassaError::Retryable { status: None, retry_after: None, reason }
    }

    /// Text made safe for our errors: the secret key redacted, length bounded.
    fn clean(&self, text: &str) -> String {
        let text = redact(text, &[&self.secret_key]);
        let mut out: String = text.chars().take(MAX_ERROR_TEXT).collect();
        if text.chars().count() > MAX_ERROR_TEXT {
            out.push('…');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> YooKassaClient {
        let url = Url::parse(super::super::DEFAULT_BASE_URL).expect("url");
        YooKassaClient::new(&url, "123456", Secret::new("live_secret"), Duration::from_secs(5))
            .expect("client")
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let c = client();
        assert!(!format!("{c:?}").contains("live_secret"));
    }

    #[test]
    fn errors_are_classified_by_status() {
        let c = client();
        let body = br#"{"type":"error","id":"e1","code":"invalid_credentials","description":"Authentication by given credentials failed: live_secret"}"#;
        let e = c.classify_error(401, body);
        assert!(e.is_credentials());
        assert!(!e.to_string().contains("live_secret"), "{e}");
        let e = c.classify_error(500, br#"{"type":"error","code":"internal_server_error"}"#);
        assert!(e.is_retryable());
        assert!(c.classify_error(429, b"").is_retryable());
        assert!(c.classify_error(503, b"<html>").is_retryable());
        let e = c.classify_error(
            400,
            br#"{"type":"error","code":"invalid_request","description":"Bad amount","parameter":"amount.value"}"#,
        );
        assert_eq!(
            e,
            YooKassaError::Rejected {
                status: 400,
                code: "invalid_request".into(),
                description: "Bad amount (parameter amount.value)".into()
            }
        );
        assert!(c.classify_error(404, b"{}").is_not_found());
    }

    #[tokio::test]
    async fn an_invalid_payment_id_is_never_sent() {
        let c = client();
        for id in ["", "../../me", "a b", "a?x=1"] {
            assert!(matches!(c.get_payment(id).await, Err(YooKassaError::InvalidRequest(_))));
        }
    }
}
