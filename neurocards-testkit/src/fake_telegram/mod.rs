//! FakeTelegram: the Telegram Bot API on a local wiremock server.
//!
//! It records every call (method + JSON or multipart fields, uploaded files), answers the
//! methods the system uses with the Bot API's real shapes (so teloxide parses them), keeps each
//! chat's messages as the user would see them (edits applied), serves files for `getFile` and
//! `/file/bot<token>/<path>`, queues user updates for `getUpdates` (honouring `offset`) and
//! builds `Update` JSON for webhook tests (post it as text; teloxide's `Update` cannot be
//! deserialized from a `serde_json::Value`, only from a string or bytes). Payments in Stars
//! (invoices, pre-checkout queries, successful payments, the star-transaction ledger and
//! refunds) are in [`payments`]. Errors are answered with 4xx/429 bodies only:
//! teloxide sleeps 10 s after any 5xx.
//!
//! ```no_run
//! # async fn demo() {
//! use neurocards_testkit::fake_telegram::{FakeTelegram, Failure};
//! let fake = FakeTelegram::start().await;
//! fake.fail_next("sendMessage", Failure::RetryAfter(1));
//! // point the bot at fake.api_url() with fake.token() …
//! let seen = fake.messages_to(42);
//! # }
//! ```

mod model;
mod multipart;
pub mod payloads;
pub mod payments;
mod state;
mod updates;

pub use model::{
    BotCall, Button, Failure, MediaSource, SentKind, SentMessage, SentVideoView, TgUser,
    UploadedFile, BLOCKED,
};
pub use payments::{InvoicePrice, PreCheckoutAnswer, SentInvoice, StarPayment, StarRefund, STARS};

use neurocards_core::secret::Secret;
use serde_json::{Map, Value};
use state::State;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use url::Url;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The token the fake accepts (the part before `:` is the bot's id).
pub const TOKEN: &str = "123456:TEST-fake-telegram-token";

/// A running fake Bot API. Dropping it stops the server.
#[derive(Clone)]
pub struct FakeTelegram {
    server: Arc<MockServer>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram").field("uri", &self.server.uri()).finish_non_exhaustive()
    }
}

struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        let mut state = lock(&self.state);
        if let Some(rest) = path.strip_prefix("/file/bot") {
            return match rest.split_once('/') {
                // teloxide sends the file path as one percent-encoded segment (`a%2Fb.jpg`).
                Some((token, file_path)) if token == TOKEN => match state
                    .file_by_path(&percent_decode(file_path))
                {
                    Some(file) => ResponseTemplate::new(200)
                        .set_body_raw(file.bytes.to_vec(), "application/octet-stream"),
                    None => json_response(404, payloads::error(404, "Not Found: file not found")),
                },
                _ => json_response(401, payloads::error(401, "Unauthorized")),
            };
        }
        let Some((token, method)) = path.strip_prefix("/bot").and_then(|r| r.split_once('/'))
        else {
            return json_response(404, payloads::error(404, "Not Found"));
        };
        if token != TOKEN {
            return json_response(401, payloads::error(401, "Unauthorized"));
        }
        // Telegram matches method names case-insensitively and teloxide sends `SendMessage`;
        // record them as the Bot API documents them (`sendMessage`).
        let method = lower_camel(method);
        let (params, parts, multipart) = read_params(request);
        let answer = state.handle(&method, params, parts, multipart);
        let response = json_response(answer.status, answer.body);
        match answer.delay {
            Some(d) => response.set_delay(d),
            None => response,
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lower_camel(method: &str) -> String {
    let mut chars = method.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn json_response(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

fn read_params(request: &Request) -> (Value, Vec<multipart::Part>, bool) {
    let content_type = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Some(boundary) = multipart::boundary(&content_type) {
        let parts = multipart::parse(&request.body, &boundary).unwrap_or_default();
        let mut params = Map::new();
        for part in parts.iter().filter(|p| p.file_name.is_none()) {
            let text = String::from_utf8_lossy(&part.body).into_owned();
            params.insert(part.name.clone(), field_value(text));
        }
        return (Value::Object(params), parts, true);
    }
    if request.body.is_empty() {
        return (Value::Object(Map::new()), Vec::new(), false);
    }
    let params = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    (params, Vec::new(), false)
}

/// A multipart text field as JSON: objects, arrays, integers and booleans parsed, the rest kept
/// as strings.
fn field_value(text: String) -> Value {
    let looks_json = text.starts_with('{')
        || text.starts_with('[')
        || text == "true"
        || text == "false"
        || (!text.is_empty()
            && text.trim_start_matches('-').chars().all(|c| c.is_ascii_digit())
            && text != "-");
    if looks_json {
        if let Ok(v) = serde_json::from_str(&text) {
            return v;
        }
    }
    Value::String(text)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide its own failure behind ours.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeTelegram {
    /// Starts the fake on a random local port.
    pub async fn start() -> Self {
        // The fake records every call itself (see `all_calls`); wiremock's own copy of each
        // request would only grow.
        let server = MockServer::builder().disable_request_recording().start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any()).respond_with(Responder { state: state.clone() }).mount(&server).await;
        Self { server: Arc::new(server), state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The base URL to give the bot as `TELEGRAM_API_URL`.
    pub fn api_url(&self) -> Url {
        #[allow(clippy::expect_used)]
        Url::parse(&self.server.uri()).expect("wiremock serves a valid URI")
    }

    /// The token the fake accepts.
    pub fn token(&self) -> Secret {
        Secret::new(TOKEN)
    }

    // ---- scripting ----

    /// From now on every call for `chat_id` answers 403 "Forbidden: bot was blocked by the user".
    pub fn block_bot(&self, chat_id: i64) {
        self.state().blocked.insert(chat_id);
    }

    /// The user unblocked the bot.
    pub fn unblock_bot(&self, chat_id: i64) {
        self.state().blocked.remove(&chat_id);
    }

    /// The next call of `method` fails with `failure` (queued: call repeatedly for several).
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.state().failures.entry(method.to_owned()).or_default().push_back(failure);
    }

    /// Whether `sendVideo`/`sendPhoto`/`sendDocument` by URL fail with "failed to get HTTP URL
    /// content" (as when Telegram cannot fetch the file), so that the upload path is used.
    pub fn refuse_media_urls(&self, refuse: bool) {
        self.state().refuse_video_urls = refuse;
    }

    /// From now on every call of `method` is answered only after `delay`, as when Telegram is
    /// slow or the network drops packets (the caller's own timeout decides what happens).
    pub fn answer_slowly(&self, method: &str, delay: Duration) {
        self.state().slow.insert(method.to_owned(), delay);
    }

    /// The user deleted a message (editing it now fails with "message to edit not found").
    pub fn user_deletes_message(&self, chat_id: i64, message_id: i32) {
        if let Some(chat) = self.state().chats.get_mut(&chat_id) {
            chat.messages.remove(&message_id);
        }
    }

    /// Serves `bytes` as a file; returns its file id (`file_id` if given).
    pub fn add_file(&self, file_id: Option<&str>, bytes: impl Into<bytes::Bytes>) -> String {
        self.state().add_file(file_id, bytes.into(), None, "jpg").file_id
    }

    /// Serves `bytes` but reports `declared_size` in `getFile` (above 20 MB `getFile` answers
    /// "file is too big", as Telegram does).
    pub fn add_file_with_size(
        &self,
        file_id: Option<&str>,
        bytes: impl Into<bytes::Bytes>,
        declared_size: u64,
    ) -> String {
        self.state().add_file(file_id, bytes.into(), Some(declared_size), "jpg").file_id
    }

    // ---- updates ----

    /// Queues an update for `getUpdates` (build it with the `*_update` methods).
    pub fn push_update(&self, update: Value) {
        self.state().updates.push_back(update);
    }

    /// Updates not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.state().updates.len()
    }

    /// The webhook URL set with `setWebhook`, if any.
    pub fn webhook_url(&self) -> Option<String> {
        self.state().webhook.clone()
    }

    /// The commands registered with `setMyCommands` (`[{command, description}]`).
    pub fn registered_commands(&self) -> Value {
        self.state().commands.clone()
    }

    // ---- reading what happened ----

    /// Every call, in order.
    pub fn all_calls(&self) -> Vec<BotCall> {
        self.state().calls.clone()
    }

    /// The calls of one method, in order.
    pub fn calls(&self, method: &str) -> Vec<BotCall> {
        self.state().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// The bot's messages in a chat as the user sees them now (edits applied, deleted ones
    /// gone), oldest first.
    pub fn messages_to(&self, chat_id: i64) -> Vec<SentMessage> {
        self.state()
            .chats
            .get(&chat_id)
            .map(|c| c.messages.values().filter(|m| m.from_bot).map(|m| m.view.clone()).collect())
            .unwrap_or_default()
    }

    /// The text (or caption) of every bot message in a chat, oldest first.
    pub fn texts_to(&self, chat_id: i64) -> Vec<String> {
        self.messages_to(chat_id).into_iter().map(|m| m.text).collect()
    }

    /// The last bot message in a chat.
    pub fn last_message_to(&self, chat_id: i64) -> Option<SentMessage> {
        self.messages_to(chat_id).pop()
    }

    /// The videos the bot sent to a chat, oldest first.
    pub fn videos_to(&self, chat_id: i64) -> Vec<SentVideoView> {
        self.messages_to(chat_id)
            .into_iter()
            .filter_map(|m| match m.kind {
                SentKind::Video(source) => Some(SentVideoView {
                    message_id: m.message_id,
                    source,
                    caption: m.text,
                    buttons: m.buttons,
                    file_id: m.file_id,
                }),
                _ => None,
            })
            .collect()
    }

    /// The jobs whose video the bot offered in a chat instead of sending it (messages with a
    /// "Send the video" button, `vid:<job id>`), oldest first.
    pub fn video_offers_to(&self, chat_id: i64) -> Vec<i64> {
        self.messages_to(chat_id)
            .iter()
            .flat_map(|m| {
                m.callback_data()
                    .into_iter()
                    .filter_map(|d| d.strip_prefix("vid:").and_then(|id| id.parse().ok()))
                    .collect::<Vec<i64>>()
            })
            .collect()
    }

    /// Waits until `condition` holds (checked every 20 ms) or `timeout` passes; returns whether
    /// it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&FakeTelegram) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
