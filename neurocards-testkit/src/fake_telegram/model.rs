//! What the fake records and what tests read back: Bot API calls, and the messages a user
//! sees in their chat (in their current state, after edits).

use bytes::Bytes;
use serde_json::Value;

/// One Bot API call as the fake received it.
#[derive(Debug, Clone)]
pub struct BotCall {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// The method name as in the URL (`sendMessage`).
    pub method: String,
    /// The parameters: the JSON body, or the multipart text fields (values that look like JSON
    /// objects, arrays, integers or booleans are parsed, so `chat_id` is a number either way).
    pub params: Value,
    /// Uploaded files (multipart parts with a file name).
    pub files: Vec<UploadedFile>,
    /// Whether the call came as `multipart/form-data`.
    pub multipart: bool,
    /// Whether the fake answered `ok: true`.
    pub answered_ok: bool,
}

impl BotCall {
    /// The `chat_id` parameter, if numeric.
    pub fn chat_id(&self) -> Option<i64> {
        as_i64(self.params.get("chat_id")?)
    }

    /// A string parameter.
    pub fn str_param(&self, name: &str) -> Option<&str> {
        self.params.get(name)?.as_str()
    }

    /// The buttons of the call's `reply_markup`.
    pub fn buttons(&self) -> Vec<Vec<Button>> {
        buttons_of(self.params.get("reply_markup"))
    }
}

/// A file uploaded in a multipart call.
#[derive(Debug, Clone)]
pub struct UploadedFile {
    /// The multipart field name (teloxide uses a random id referenced as `attach://<id>`).
    pub field: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Bytes,
}

/// An inline keyboard button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub text: String,
    pub callback_data: Option<String>,
    pub url: Option<String>,
}

/// How a sent video reached Telegram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// By URL, for Telegram to fetch.
    Url(String),
    /// Uploaded in the request.
    Upload { file_name: Option<String>, size: usize },
    /// By an existing file id.
    FileId(String),
}

/// The kind of a message in a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentKind {
    Text,
    Video(MediaSource),
    Photo(MediaSource),
    Document(MediaSource),
    Invoice,
}

/// A message the bot sent to a chat, as the user sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: i32,
    pub chat_id: i64,
    pub kind: SentKind,
    /// The text, or the caption of a media message (empty when there is none).
    pub text: String,
    pub parse_mode: Option<String>,
    pub buttons: Vec<Vec<Button>>,
    /// How many times the message was edited.
    pub edits: u32,
    /// The file id Telegram gave a media message.
    pub file_id: Option<String>,
}

impl SentMessage {
    /// All buttons, row after row.
    pub fn all_buttons(&self) -> Vec<&Button> {
        self.buttons.iter().flatten().collect()
    }

    /// The callback data of every button, row after row.
    pub fn callback_data(&self) -> Vec<&str> {
        self.all_buttons().into_iter().filter_map(|b| b.callback_data.as_deref()).collect()
    }
}

/// A video the bot sent, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentVideoView {
    pub message_id: i32,
    pub source: MediaSource,
    pub caption: String,
    pub buttons: Vec<Vec<Button>>,
    pub file_id: Option<String>,
}

/// A scripted failure for the next call of a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 429 with `parameters.retry_after`.
    RetryAfter(u32),
    /// Any other error answer: HTTP status (and `error_code`) and Telegram's description.
    /// Keep to 4xx: teloxide sleeps 10 s after a 5xx before reading the answer.
    Api { status: u16, description: String },
}

impl Failure {
    /// `400 Bad Request: <what>`.
    pub fn bad_request(what: &str) -> Self {
        Failure::Api { status: 400, description: format!("Bad Request: {what}") }
    }

    /// `403 Forbidden: bot was blocked by the user`.
    pub fn blocked() -> Self {
        Failure::Api { status: 403, description: BLOCKED.to_owned() }
    }
}

/// Telegram's description for a user who blocked the bot.
pub const BLOCKED: &str = "Forbidden: bot was blocked by the user";

/// A Telegram user the tests act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TgUser {
    pub id: i64,
    pub first_name: String,
    pub username: Option<String>,
    pub language_code: Option<String>,
}

impl TgUser {
    /// A user with id `id`, named "User <id>", language `ru`.
    pub fn new(id: i64) -> Self {
        Self {
            id,
            first_name: format!("User {id}"),
            username: None,
            language_code: Some("ru".to_owned()),
        }
    }

    /// The same user with another client language (`en`, `ru`, …).
    pub fn language(mut self, code: &str) -> Self {
        self.language_code = Some(code.to_owned());
        self
    }

    pub(crate) fn json(&self) -> Value {
        super::payloads::user(
            self.id,
            &self.first_name,
            self.username.as_deref(),
            self.language_code.as_deref(),
        )
    }
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

pub(crate) fn buttons_of(markup: Option<&Value>) -> Vec<Vec<Button>> {
    let Some(rows) = markup.and_then(|m| m.get("inline_keyboard")).and_then(Value::as_array) else {
        return Vec::new();
    };
    rows.iter()
        .map(|row| {
            row.as_array()
                .map(|buttons| {
                    buttons
                        .iter()
                        .map(|b| Button {
                            text: b["text"].as_str().unwrap_or_default().to_owned(),
                            callback_data: b["callback_data"].as_str().map(str::to_owned),
                            url: b["url"].as_str().map(str::to_owned),
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}
