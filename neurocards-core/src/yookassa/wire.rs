//! YooKassa's JSON: the create-payment body we send, the payment object it answers with, its
//! error body, and the notification it posts.
//!
//! Everything read is tolerant of fields we do not use and of statuses we do not know, but
//! strict where money is concerned: an amount that is not an exact decimal string fails to
//! parse.

use super::money::{kopecks_to_value, value_to_kopecks};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// YooKassa's limit on a payment description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 128;

/// YooKassa's limit on an `Idempotence-Key`, in characters.
pub const MAX_IDEMPOTENCE_KEY_CHARS: usize = 64;

/// The largest notification body [`Notification::parse`] reads (real ones are about 1 KiB).
pub const MAX_NOTIFICATION_BYTES: usize = 64 * 1024;

/// Whether `id` can be a YooKassa object id: 1–64 characters of `A-Z a-z 0-9 - _` (real ones
/// are UUID-like, `2d4f6d8a-000f-5000-9000-1b68e7b15f3f`). Anything else is never put in a URL.
pub fn is_valid_payment_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An amount of money: an exact count of minor units (kopecks for `RUB`) and the currency.
/// On the wire it is `{"value": "390.00", "currency": "RUB"}`; reading a value with more than
/// two decimals, a sign or an exponent fails, and so does writing a negative amount.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Amount {
    /// Minor units: 39000 is 390.00 RUB.
    pub kopecks: i64,
    /// ISO 4217 code as YooKassa writes it (`RUB`).
    pub currency: String,
}

impl Amount {
    /// An amount in roubles' kopecks.
    pub fn rub(kopecks: i64) -> Self {
        Self { kopecks, currency: "RUB".to_owned() }
    }
}

#[derive(Serialize, Deserialize)]
struct AmountWire {
    value: String,
    currency: String,
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = kopecks_to_value(self.kopecks).map_err(serde::ser::Error::custom)?;
        AmountWire { value, currency: self.currency.clone() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = AmountWire::deserialize(deserializer)?;
        let kopecks = value_to_kopecks(&wire.value).map_err(serde::de::Error::custom)?;
        Ok(Amount { kopecks, currency: wire.currency })
    }
}

/// A payment to create: one purchase of one user, paid on YooKassa's hosted page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePayment {
    /// Our purchase id. Sent as the `Idempotence-Key` and as `metadata.purchase_id`: every
    /// retry for the same purchase must pass the same id, so YooKassa returns the payment it
    /// already created instead of a second one. 1–64 printable ASCII characters.
    pub purchase_id: String,
    /// The paying Telegram user, sent as `metadata.user_id`.
    pub user_id: i64,
    /// The price; must be positive.
    pub amount: Amount,
    /// Shown to the payer; cut to [`MAX_DESCRIPTION_CHARS`] characters.
    pub description: String,
    /// Where YooKassa sends the payer after paying (e.g. `https://t.me/<bot>`).
    pub return_url: String,
}

impl CreatePayment {
    /// Checks what YooKassa would refuse, before anything is sent.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let key = &self.purchase_id;
        if key.is_empty()
            || key.chars().count() > MAX_IDEMPOTENCE_KEY_CHARS
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("the purchase id must be 1-64 printable ASCII characters".to_owned());
        }
        if self.amount.kopecks <= 0 {
            return Err(format!("the amount must be positive, not {}", self.amount.kopecks));
        }
        if self.amount.currency.len() != 3
            || !self.amount.currency.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err("the currency must be a three-letter code".to_owned());
        }
        if self.return_url.is_empty() {
            return Err("a return URL is required for a redirect confirmation".to_owned());
        }
        Ok(())
    }

    /// The JSON body of `POST /payments`.
    pub(crate) fn body(&self) -> CreatePaymentBody<'_> {
        CreatePaymentBody {
            amount: &self.amount,
            capture: true,
            confirmation: ConfirmationRequest { kind: "redirect", return_url: &self.return_url },
            description: self.description.chars().take(MAX_DESCRIPTION_CHARS).collect(),
            metadata: MetadataRequest {
                purchase_id: &self.purchase_id,
                user_id: self.user_id.to_string(),
            },
        }
    }
}

/// `POST /payments` body: a one-step payment (`capture: true`) with a redirect confirmation.
#[derive(Debug, Serialize)]
pub(crate) struct CreatePaymentBody<'a> {
    amount: &'a Amount,
    capture: bool,
    confirmation: ConfirmationRequest<'a>,
    description: String,
    metadata: MetadataRequest<'a>,
}

#[derive(Debug, Serialize)]
struct ConfirmationRequest<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    return_url: &'a str,
}

#[derive(Debug, Serialize)]
struct MetadataRequest<'a> {
    purchase_id: &'a str,
    user_id: String,
}

/// A payment's status. Statuses this code does not know are kept as [`PaymentStatus::Other`]
/// rather than failing the whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum PaymentStatus {
    /// Created; the payer has not paid yet.
    Pending,
    /// Paid and held, waiting for a capture (never for `capture: true` payments).
    WaitingForCapture,
    /// Paid: the money is ours. Final.
    Succeeded,
    /// Will never be paid (expired, declined, canceled). Final.
    Canceled,
    /// Any other status string.
    Other(String),
}

impl PaymentStatus {
    /// The status as YooKassa writes it.
    pub fn as_str(&self) -> &str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::WaitingForCapture => "waiting_for_capture",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Other(s) => s,
        }
    }

    /// Whether the status can no longer change (`succeeded` or `canceled`).
    pub fn is_final(&self) -> bool {
        matches!(self, PaymentStatus::Succeeded | PaymentStatus::Canceled)
    }
}

impl From<String> for PaymentStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "pending" => PaymentStatus::Pending,
            "waiting_for_capture" => PaymentStatus::WaitingForCapture,
            "succeeded" => PaymentStatus::Succeeded,
            "canceled" => PaymentStatus::Canceled,
            _ => PaymentStatus::Other(s),
        }
    }
}

/// Where the payer confirms the payment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Confirmation {
    /// `redirect` for the payments this client creates.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The hosted payment page (redirect confirmations only).
    #[serde(default)]
    pub confirmation_url: Option<String>,
}

/// Why a payment was canceled.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CancellationDetails {
    /// Who canceled: `yoo_money`, `payment_network` or `merchant`.
    #[serde(default)]
    pub party: Option<String>,
    /// Why, e.g. `expired_on_confirmation`, `insufficient_funds`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A payment object as YooKassa returns it. Only authoritative when read from YooKassa's API
/// with our credentials, never from a notification body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payment {
    /// YooKassa's payment id.
    pub id: String,
    pub status: PaymentStatus,
    /// Whether the payer has paid (true for `succeeded` and `waiting_for_capture`).
    #[serde(default)]
    pub paid: bool,
    pub amount: Amount,
    #[serde(default)]
    pub confirmation: Option<Confirmation>,
    /// Our metadata as sent (`purchase_id`, `user_id`); values that are not strings are
    /// dropped.
    #[serde(default, deserialize_with = "string_map")]
    pub metadata: BTreeMap<String, String>,
    /// Whether the payment was made in a test shop.
    #[serde(default)]
    pub test: bool,
    #[serde(default)]
    pub cancellation_details: Option<CancellationDetails>,
    #[serde(default)]
    pub description: Option<String>,
}

impl Payment {
    /// The hosted payment page, while there is one.
    pub fn confirmation_url(&self) -> Option<&str> {
        self.confirmation.as_ref()?.confirmation_url.as_deref()
    }

    /// `metadata.purchase_id`: the purchase this payment was created for.
    pub fn purchase_id(&self) -> Option<&str> {
        self.metadata.get("purchase_id").map(String::as_str)
    }

    /// `metadata.user_id` as a number, if it is one.
    pub fn user_id(&self) -> Option<i64> {
        self.metadata.get("user_id")?.parse().ok()
    }
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect())
}

/// YooKassa's error body (`{"type":"error","code":"invalid_credentials","description":…}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The request field at fault, for `invalid_request`.
    #[serde(default)]
    pub parameter: Option<String>,
    /// Milliseconds to wait, sent with `202` ("still processing") answers.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// Why a notification body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a YooKassa notification: {0}")]
pub struct InvalidNotification(pub String);

/// A notification YooKassa posts (`{"type":"notification","event":…,"object":{"id":…}}`).
/// Only the event and the object's id are read: the body is unauthenticated, so the payment
/// itself must be re-read with [`super::YooKassaClient::get_payment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `payment.succeeded`, `payment.waiting_for_capture`, `payment.canceled`,
    /// `refund.succeeded`, …
    pub event: String,
    /// The object's id: a payment id for `payment.*` events, a refund id for `refund.*`.
    /// Always passes [`is_valid_payment_id`].
    pub object_id: String,
}

#[derive(Deserialize)]
struct NotificationWire {
    #[serde(rename = "type")]
    kind: String,
    event: String,
    object: NotificationObject,
}

#[derive(Deserialize)]
struct NotificationObject {
    id: String,
}

impl Notification {
    /// Reads a notification body: at most [`MAX_NOTIFICATION_BYTES`], `type` must be
    /// `notification`, `event` at most 64 characters, and `object.id` a valid id.
    pub fn parse(body: &[u8]) -> Result<Self, InvalidNotification> {
        if body.len() > MAX_NOTIFICATION_BYTES {
            return Err(InvalidNotification(format!(
                "body larger than {MAX_NOTIFICATION_BYTES} bytes"
            )));
        }
        let wire: NotificationWire = serde_json::from_slice(body)
            .map_err(|e| InvalidNotification(format!("unreadable JSON: {e}")))?;
        if wire.kind != "notification" {
            return Err(InvalidNotification("type is not \"notification\"".to_owned()));
        }
        if wire.event.is_empty()
            || wire.event.len() > 64
            || !wire.event.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        {
            return Err(InvalidNotification("unreadable event".to_owned()));
        }
        if !is_valid_payment_id(&wire.object.id) {
            return Err(InvalidNotification("unreadable object id".to_owned()));
        }
        Ok(Self { event: wire.event, object_id: wire.object.id })
    }

    /// The payment id, for `payment.*` events (`None` for refunds and other objects).
    pub fn payment_id(&self) -> Option<&str> {
        self.event.starts_with("payment.").then_some(self.object_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> CreatePayment {
        CreatePayment {
            purchase_id: "0f3c2b6a9d8e4f1a8b7c6d5e4f3a2b1c".into(),
            user_id: 42,
            amount: Amount::rub(39_000),
            description: "10 credits".into(),
            return_url: "https://t.me/neurocards_bot".into(),
        }
    }

    #[test]
    fn create_body_has_the_documented_shape() {
        let r = request();
        assert_eq!(r.validate(), Ok(()));
        let body = serde_json::to_value(r.body()).expect("serializes");
        assert_eq!(
            body,
            json!({
                "amount": {"value": "390.00", "currency": "RUB"},
                "capture": true,
                "confirmation": {"type": "redirect", "return_url": "https://t.me/neurocards_bot"},
                "description": "10 credits",
                "metadata": {"purchase_id": "0f3c2b6a9d8e4f1a8b7c6d5e4f3a2b1c", "user_id": "42"}
            })
        );
    }

    #[test]
    fn invalid_requests_are_refused_before_sending() {
        let mut r = request();
        r.amount.kopecks = 0;
        assert!(r.validate().is_err());
        let mut r = request();
        r.purchase_id = "x".repeat(65);
        assert!(r.validate().is_err());
        let mut r = request();
        r.purchase_id = "has space".into();
        assert!(r.validate().is_err());
        let mut r = request();
        r.description = "я".repeat(300);
        let body = serde_json::to_value(r.body()).expect("serializes");
        assert_eq!(body["description"].as_str().map(|d| d.chars().count()), Some(128));
    }

    #[test]
    fn payment_object_is_read_tolerantly() {
        let p: Payment = serde_json::from_value(json!({
            "id": "2d4f6d8a-000f-5000-9000-1b68e7b15f3f",
            "status": "pending",
            "paid": false,
            "amount": {"value": "390.00", "currency": "RUB"},
            "confirmation": {"type": "redirect", "confirmation_url": "https://yoomoney.ru/checkout/x"},
            "created_at": "2026-01-01T00:00:00.000Z",
            "metadata": {"purchase_id": "abc", "user_id": "42", "odd": 5},
            "recipient": {"account_id": "100500"},
            "test": true
        }))
        .expect("parses");
        assert_eq!(p.status, PaymentStatus::Pending);
        assert_eq!(p.amount, Amount::rub(39_000));
        assert_eq!(p.confirmation_url(), Some("https://yoomoney.ru/checkout/x"));
        assert_eq!(p.purchase_id(), Some("abc"));
        assert_eq!(p.user_id(), Some(42));
        assert!(!p.metadata.contains_key("odd"));
        assert!(p.test);

        let p: Payment = serde_json::from_value(json!({
            "id": "p1", "status": "refunded_partially", "paid": true,
            "amount": {"value": "1.5", "currency": "RUB"}, "metadata": null,
            "cancellation_details": {"party": "yoo_money", "reason": "expired_on_confirmation"}
        }))
        .expect("parses");
        assert_eq!(p.status, PaymentStatus::Other("refunded_partially".into()));
        assert_eq!(p.amount.kopecks, 150);
        assert!(p.metadata.is_empty());
        assert!(!p.status.is_final());
        assert_eq!(
            p.cancellation_details.and_then(|c| c.reason).as_deref(),
            Some("expired_on_confirmation")
        );
    }

    #[test]
    fn a_payment_with_an_inexact_amount_does_not_parse() {
        for value in ["390.001", "-390.00", "3.9e2", ""] {
            let r = serde_json::from_value::<Payment>(json!({
                "id": "p1", "status": "succeeded", "paid": true,
                "amount": {"value": value, "currency": "RUB"}
            }));
            assert!(r.is_err(), "{value}");
        }
    }

    #[test]
    fn notifications_yield_only_event_and_id() {
        let body = json!({
            "type": "notification", "event": "payment.succeeded",
            "object": {"id": "2d4f6d8a-000f-5000-9000-1b68e7b15f3f", "status": "succeeded",
                       "amount": {"value": "1000000.00", "currency": "RUB"}}
        });
        let n = Notification::parse(body.to_string().as_bytes()).expect("parses");
        assert_eq!(n.event, "payment.succeeded");
        assert_eq!(n.payment_id(), Some("2d4f6d8a-000f-5000-9000-1b68e7b15f3f"));

        let refund =
            json!({"type": "notification", "event": "refund.succeeded", "object": {"id": "r1"}});
        let n = Notification::parse(refund.to_string().as_bytes()).expect("parses");
        assert_eq!(n.payment_id(), None);

        for bad in [
            json!({"type": "other", "event": "payment.succeeded", "object": {"id": "p1"}}),
            json!({"type": "notification", "event": "payment.succeeded", "object": {"id": "../x"}}),
            json!({"type": "notification", "event": "payment.succeeded", "object": {}}),
            json!({"type": "notification", "event": "pay ment", "object": {"id": "p1"}}),
        ] {
            assert!(Notification::parse(bad.to_string().as_bytes()).is_err(), "{bad}");
        }
        assert!(Notification::parse(b"not json").is_err());
        assert!(Notification::parse(&vec![b' '; MAX_NOTIFICATION_BYTES + 1]).is_err());
    }

    #[test]
    fn payment_ids_are_validated() {
        assert!(is_valid_payment_id("2d4f6d8a-000f-5000-9000-1b68e7b15f3f"));
        assert!(is_valid_payment_id("a_b"));
        for bad in ["", "a/b", "a b", "a?b=1", "%2e%2e", "ы", &"a".repeat(65)] {
            assert!(!is_valid_payment_id(bad), "{bad:?}");
        }
    }
}
