//! FakeYooKassa: YooKassa's payments API (`/v3/payments`) on a local wiremock server.
//!
//! It checks HTTP Basic credentials (401 `invalid_credentials` otherwise) and requires an
//! `Idempotence-Key` on every create (400 otherwise). A create with a key seen before returns
//! that key's payment as it is now; a new key creates a `pending` payment with a
//! `confirmation_url`. `GET /v3/payments/{id}` answers the payment's current state (404 for an
//! unknown id). Tests move payments along ([`FakeYooKassa::set_status`]), make them lie
//! ([`FakeYooKassa::set_amount`], [`FakeYooKassa::set_metadata`]), script failures, and read
//! what was created and how often each payment was read.

use base64::Engine as _;
use neurocards_core::secret::Secret;
use neurocards_core::yookassa::{value_to_kopecks, YooKassaClient};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use url::Url;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The shop id the fake accepts.
pub const FAKE_SHOP_ID: &str = "506751";
/// The secret key the fake accepts.
pub const FAKE_SECRET_KEY: &str = "test_fake-yookassa-secret-key";

/// A payment created through the fake, as first requested.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedPayment {
    /// The payment id the fake gave it.
    pub id: String,
    /// The `Idempotence-Key` it was created with.
    pub idempotence_key: String,
    /// The create request's JSON body.
    pub body: Value,
}

#[derive(Debug)]
struct StoredPayment {
    created: CreatedPayment,
    /// The payment object as `GET` answers it now.
    object: Value,
}

#[derive(Debug, Default)]
struct State {
    payments: Vec<StoredPayment>,
    by_key: HashMap<String, usize>,
    /// Statuses the next creates fail with, before anything is created.
    create_failures: VecDeque<u16>,
    /// How many next creates create the payment but answer 500 (the answer is lost).
    lost_create_answers: u32,
    /// Raw answers for the next requests of any kind, before any check.
    raw: VecDeque<(u16, Vec<u8>)>,
    gets: HashMap<String, u64>,
    create_requests: u64,
    delay: Option<Duration>,
}

/// A fake YooKassa on its own random port. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeYooKassa {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = lock(&self.state);
        let answer = answer(&mut state, request);
        match state.delay {
            Some(d) => answer.set_delay(d),
            None => answer,
        }
    }
}

fn answer(state: &mut State, request: &Request) -> ResponseTemplate {
    if let Some((status, body)) = state.raw.pop_front() {
        return ResponseTemplate::new(status).set_body_raw(body, "application/json");
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{FAKE_SHOP_ID}:{FAKE_SECRET_KEY}"))
    );
    let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        return error(
            401,
            "invalid_credentials",
            "Authentication by given credentials failed. Check the shop id and secret key.",
            None,
        );
    }
    let path = request.url.path().trim_end_matches('/');
    let method = request.method.as_str();
    match (method, path.strip_prefix("/v3/payments")) {
        ("POST", Some("")) => create(state, request),
        ("GET", Some(rest)) if rest.starts_with('/') && rest.len() > 1 => {
            let id = &rest[1..];
            *state.gets.entry(id.to_owned()).or_default() += 1;
            match state.payments.iter().find(|p| p.created.id == id) {
                Some(p) => ResponseTemplate::new(200).set_body_json(&p.object),
                None => error(404, "not_found", "Payment doesn't exist or access denied", None),
            }
        }
        _ => error(404, "not_found", "Unknown API method", None),
    }
}

fn create(state: &mut State, request: &Request) -> ResponseTemplate {
    state.create_requests += 1;
    let Some(key) = request
        .headers
        .get("idempotence-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return error(
            400,
            "invalid_request",
            "Idempotence key is missing. Specify the Idempotence-Key header.",
            Some("Idempotence-Key"),
        );
    };
    if key.chars().count() > 64 {
        return error(
            400,
            "invalid_request",
            "Idempotence key is too long",
            Some("Idempotence-Key"),
        );
    }
    if let Some(status) = state.create_failures.pop_front() {
        return failure(status);
    }
    if let Some(&i) = state.by_key.get(&key) {
        return ResponseTemplate::new(200).set_body_json(&state.payments[i].object);
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(v) => v,
        Err(_) => return error(400, "invalid_request", "Request body is not valid JSON", None),
    };
    if let Err((parameter, description)) = validate(&body) {
        return error(400, "invalid_request", description, Some(parameter));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let object = json!({
        "id": id,
        "status": "pending",
        "paid": false,
        "amount": body["amount"],
        "confirmation": {
            "type": "redirect",
            "return_url": body["confirmation"]["return_url"],
            "confirmation_url": format!("https://yoomoney.ru/checkout/payments/v2/contract?orderId={id}")
        },
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "description": body["description"],
        "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "recipient": { "account_id": FAKE_SHOP_ID, "gateway_id": "2180052" },
        "refundable": false,
        "test": true
    });
    state.by_key.insert(key.clone(), state.payments.len());
    state.payments.push(StoredPayment {
        created: CreatedPayment { id, idempotence_key: key, body },
        object: object.clone(),
    });
    if state.lost_create_answers > 0 {
        state.lost_create_answers -= 1;
        return failure(500);
    }
    ResponseTemplate::new(200).set_body_json(object)
}

/// What YooKassa would refuse in a create body: the parameter and why.
fn validate(body: &Value) -> Result<(), (&'static str, &'static str)> {
    let value = body["amount"]["value"].as_str().ok_or(("amount.value", "Amount is missing"))?;
    match value_to_kopecks(value) {
        Ok(k) if k > 0 => {}
        _ => return Err(("amount.value", "Invalid amount value")),
    }
    if body["amount"]["currency"].as_str().is_none_or(|c| c.len() != 3) {
        return Err(("amount.currency", "Invalid currency"));
    }
    if body["confirmation"]["type"] != "redirect" {
        return Err(("confirmation.type", "Only redirect confirmations are expected"));
    }
    if body["confirmation"]["return_url"].as_str().is_none_or(str::is_empty) {
        return Err(("confirmation.return_url", "Return URL is missing"));
    }
    if body["description"].as_str().is_some_and(|d| d.chars().count() > 128) {
        return Err(("description", "Description is longer than 128 characters"));
    }
    Ok(())
}

fn failure(status: u16) -> ResponseTemplate {
    let (code, description) = match status {
        400 => ("invalid_request", "Invalid request"),
        401 => ("invalid_credentials", "Authentication by given credentials failed"),
        403 => ("forbidden", "Insufficient rights to perform this operation"),
        404 => ("not_found", "Object not found"),
        429 => ("too_many_requests", "Too many requests"),
        _ => (
            "internal_server_error",
            "Internal server error. Retry the request with the same idempotence key.",
        ),
    };
    error(status, code, description, None)
}

fn error(status: u16, code: &str, description: &str, parameter: Option<&str>) -> ResponseTemplate {
    let mut body = json!({
        "type": "error",
        "id": uuid::Uuid::new_v4().to_string(),
        "code": code,
        "description": description
    });
    if let Some(p) = parameter {
        body["parameter"] = json!(p);
    }
    ResponseTemplate::new(status).set_body_json(body)
}

impl FakeYooKassa {
    /// Starts the fake on a random local port.
    pub async fn start() -> Self {
        let server = MockServer::builder().disable_request_recording().start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any()).respond_with(Responder { state: state.clone() }).mount(&server).await;
        Self { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The API base to configure (`http://127.0.0.1:<port>/v3`).
    pub fn base_url(&self) -> Url {
        #[allow(clippy::expect_used)]
        Url::parse(&format!("{}/v3", self.server.uri())).expect("wiremock serves a valid URI")
    }

    /// The shop id the fake accepts.
    pub fn shop_id(&self) -> &'static str {
        FAKE_SHOP_ID
    }

    /// The secret key the fake accepts.
    pub fn secret_key(&self) -> Secret {
        Secret::new(FAKE_SECRET_KEY)
    }

    /// A client for the fake with its credentials and a 5 s timeout.
    pub fn client(&self) -> YooKassaClient {
        self.client_with_timeout(Duration::from_secs(5))
    }

    /// A client for the fake with its credentials and this timeout.
    pub fn client_with_timeout(&self, timeout: Duration) -> YooKassaClient {
        #[allow(clippy::expect_used)]
        YooKassaClient::new(&self.base_url(), FAKE_SHOP_ID, self.secret_key(), timeout)
            .expect("the HTTP client builds")
    }

    // ---- scripting ----

    /// Moves a payment to `status` (`succeeded`, `canceled`, `waiting_for_capture`, or any
    /// string). `paid` follows the status; a canceled payment gets `cancellation_details`, and
    /// only a pending one keeps its confirmation. Returns whether the payment exists.
    pub fn set_status(&self, id: &str, status: &str) -> bool {
        self.edit(id, |object| {
            object["status"] = json!(status);
            object["paid"] = json!(matches!(status, "succeeded" | "waiting_for_capture"));
            if let Value::Object(map) = object {
                if status != "pending" {
                    map.remove("confirmation");
                }
                if status == "canceled" {
                    map.insert(
                        "cancellation_details".to_owned(),
                        json!({ "party": "yoo_money", "reason": "expired_on_confirmation" }),
                    );
                }
                if status == "succeeded" {
                    let now =
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    map.insert("captured_at".to_owned(), json!(now));
                    map.insert("refundable".to_owned(), json!(true));
                }
            }
        })
    }

    /// Makes the payment report another amount (e.g. `"1.00"`, `"RUB"`), as if it had been
    /// created for a different price. Returns whether the payment exists.
    pub fn set_amount(&self, id: &str, value: &str, currency: &str) -> bool {
        self.edit(id, |object| {
            object["amount"] = json!({ "value": value, "currency": currency });
        })
    }

    /// Replaces the payment's `metadata` with `metadata` (any JSON, to simulate foreign or
    /// broken metadata). Returns whether the payment exists.
    pub fn set_metadata(&self, id: &str, metadata: Value) -> bool {
        self.edit(id, |object| object["metadata"] = metadata)
    }

    fn edit(&self, id: &str, change: impl FnOnce(&mut Value)) -> bool {
        let mut state = self.state();
        match state.payments.iter_mut().find(|p| p.created.id == id) {
            Some(p) => {
                change(&mut p.object);
                true
            }
            None => false,
        }
    }

    /// The next `n` creates fail with `status` (and YooKassa's error body for it) without
    /// creating anything.
    pub fn fail_next_creates(&self, n: usize, status: u16) {
        self.state().create_failures.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` creates create their payment but answer 500, as when the answer is lost:
    /// a retry with the same key gets the payment.
    pub fn lose_next_create_answers(&self, n: u32) {
        self.state().lost_create_answers += n;
    }

    /// The next request of any kind gets exactly this status and body, before any check.
    pub fn respond_next_raw(&self, status: u16, body: impl Into<Vec<u8>>) {
        self.state().raw.push_back((status, body.into()));
    }

    /// From now on every answer comes only after `delay` (`None`: at once).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.state().delay = delay;
    }

    // ---- reading what happened ----

    /// Every payment created, oldest first, with its key and request body.
    pub fn payments(&self) -> Vec<CreatedPayment> {
        self.state().payments.iter().map(|p| p.created.clone()).collect()
    }

    /// The payment object as `GET` would answer it now.
    pub fn payment(&self, id: &str) -> Option<Value> {
        self.state().payments.iter().find(|p| p.created.id == id).map(|p| p.object.clone())
    }

    /// How many times `GET /payments/{id}` was called for `id`.
    pub fn get_count(&self, id: &str) -> u64 {
        self.state().gets.get(id).copied().unwrap_or(0)
    }

    /// How many create requests arrived (with valid credentials), failed ones included.
    pub fn create_count(&self) -> u64 {
        self.state().create_requests
    }

    /// The notification YooKassa would post for `event` with the payment as it is now (or
    /// [`notification_body`]'s minimal object for an unknown id).
    pub fn notification(&self, event: &str, id: &str) -> Value {
        match self.payment(id) {
            Some(object) => json!({ "type": "notification", "event": event, "object": object }),
            None => notification_body(event, id),
        }
    }
}

/// The JSON YooKassa posts for `event` (`payment.succeeded`, `payment.canceled`,
/// `payment.waiting_for_capture`) about `payment_id`. The object carries only what the event
/// implies (id, status, paid); a receiver must re-read the payment anyway.
pub fn notification_body(event: &str, payment_id: &str) -> Value {
    let status = event.strip_prefix("payment.").unwrap_or("pending");
    json!({
        "type": "notification",
        "event": event,
        "object": {
            "id": payment_id,
            "status": status,
            "paid": matches!(status, "succeeded" | "waiting_for_capture"),
            "metadata": {},
            "test": true
        }
    })
}
