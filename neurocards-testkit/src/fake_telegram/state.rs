//! The fake's state and its answer to each Bot API method.

use super::model::{
    as_i64, buttons_of, BotCall, Failure, MediaSource, SentKind, SentMessage, BLOCKED,
};
use super::multipart::Part;
use super::payloads as p;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

/// Telegram refuses `getFile` above this size.
pub(crate) const DOWNLOAD_LIMIT: u64 = 20 * 1024 * 1024;

/// How long an empty long-poll waits before answering `[]` (short, so tests stay fast, but not
/// zero, so a polling loop does not spin).
const EMPTY_POLL_DELAY: Duration = Duration::from_millis(50);

const DATE: i64 = 1_700_000_000;

/// A message in a chat.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub view: SentMessage,
    pub from_bot: bool,
    pub reply_markup: Option<Value>,
    pub json: Value,
}

#[derive(Debug, Default)]
pub(crate) struct Chat {
    pub next_message_id: i32,
    pub messages: BTreeMap<i32, Stored>,
}

impl Chat {
    pub fn next_id(&mut self) -> i32 {
        self.next_message_id += 1;
        self.next_message_id
    }
}

/// A file the fake serves through `getFile` and `/file/bot<token>/<path>`.
#[derive(Debug, Clone)]
pub(crate) struct FileEntry {
    pub file_id: String,
    pub unique_id: String,
    pub path: String,
    pub declared_size: u64,
    pub bytes: bytes::Bytes,
}

/// An answer: HTTP status, body, and an optional delay.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub delay: Option<Duration>,
}

impl Answer {
    pub(crate) fn ok(result: Value) -> Self {
        Self { status: 200, body: p::ok(result), delay: None }
    }
    pub(crate) fn error(status: u16, description: &str) -> Self {
        Self { status, body: p::error(status, description), delay: None }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub calls: Vec<BotCall>,
    pub chats: HashMap<i64, Chat>,
    pub blocked: HashSet<i64>,
    pub failures: HashMap<String, VecDeque<Failure>>,
    pub refuse_video_urls: bool,
    pub files: HashMap<String, FileEntry>,
    pub next_file: u64,
    pub updates: VecDeque<Value>,
    pub next_update_id: i64,
    pub webhook: Option<String>,
    pub commands: Value,
    /// Methods answered only after this long (a slow or unreachable Telegram).
    pub slow: HashMap<String, Duration>,
    /// Invoices, pre-checkout answers, the star-transaction ledger and refunds.
    pub payments: super::payments::PaymentState,
}

impl State {
    pub fn chat(&mut self, chat_id: i64) -> &mut Chat {
        self.chats.entry(chat_id).or_default()
    }

    /// The next `update_id`. Each fake starts a range of its own, as each real bot has its own
    /// sequence, so two fakes of one test on one database never reuse an id (the bot dedupes
    /// updates by id).
    pub fn next_update_id(&mut self) -> i64 {
        if self.next_update_id == 0 {
            static INSTANCES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
            let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Update ids are 32-bit: 4,000 ranges of a million ids each.
            self.next_update_id = 1000 + (instance % 4000) * 1_000_000;
        }
        self.next_update_id += 1;
        self.next_update_id
    }

    pub fn add_file(
        &mut self,
        file_id: Option<&str>,
        bytes: bytes::Bytes,
        declared: Option<u64>,
        ext: &str,
    ) -> FileEntry {
        self.next_file += 1;
        let n = self.next_file;
        let entry = FileEntry {
            file_id: file_id.map(str::to_owned).unwrap_or_else(|| format!("file-{n}")),
            unique_id: format!("uniq-{n}"),
            path: format!("documents/file_{n}.{ext}"),
            declared_size: declared.unwrap_or(bytes.len() as u64),
            bytes,
        };
        self.files.insert(entry.file_id.clone(), entry.clone());
        entry
    }

    pub fn file_by_path(&self, path: &str) -> Option<&FileEntry> {
        self.files.values().find(|f| f.path == path)
    }

    /// Records the call and answers it.
    pub fn handle(
        &mut self,
        method: &str,
        params: Value,
        parts: Vec<Part>,
        multipart: bool,
    ) -> Answer {
        let mut answer = self.answer(method, &params, &parts);
        if let Some(slow) = self.slow.get(method) {
            answer.delay = Some(answer.delay.map_or(*slow, |d| d.max(*slow)));
        }
        let files = parts
            .into_iter()
            .filter(|p| p.file_name.is_some())
            .map(|p| super::model::UploadedFile {
                field: p.name,
                file_name: p.file_name,
                content_type: p.content_type,
                bytes: p.body,
            })
            .collect();
        let seq = self.calls.len() as u64 + 1;
        let answered_ok = answer.body["ok"] == json!(true);
        self.calls.push(BotCall {
            seq,
            method: method.to_owned(),
            params,
            files,
            multipart,
            answered_ok,
        });
        answer
    }

    fn answer(&mut self, method: &str, params: &Value, parts: &[Part]) -> Answer {
        if let Some(failure) = self.failures.get_mut(method).and_then(VecDeque::pop_front) {
            return match failure {
                Failure::RetryAfter(s) => {
                    Answer { status: 429, body: p::retry_after(s), delay: None }
                }
                Failure::Api { status, description } => Answer::error(status, &description),
            };
        }
        let chat_id = params.get("chat_id").and_then(as_i64);
        if chat_id.is_some_and(|c| self.blocked.contains(&c)) {
            return Answer::error(403, BLOCKED);
        }
        match method {
            "getMe" => Answer::ok(p::me()),
            "sendMessage" => self.send(params, SentKind::Text, "text"),
            "sendInvoice" => self.send_invoice(params),
            "sendVideo" => self.send_media(params, parts, "video"),
            "sendPhoto" => self.send_media(params, parts, "photo"),
            "sendDocument" => self.send_media(params, parts, "document"),
            "sendMediaGroup" => self.send_media_group(params, parts),
            "editMessageText" => self.edit(params, Some("text")),
            "editMessageCaption" => self.edit(params, Some("caption")),
            "editMessageReplyMarkup" => self.edit(params, None),
            "deleteMessage" => self.delete(params),
            "getFile" => self.get_file(params),
            "getUpdates" => self.get_updates(params),
            "setWebhook" => {
                self.webhook = params["url"].as_str().map(str::to_owned);
                if params["drop_pending_updates"] == json!(true) {
                    self.updates.clear();
                }
                Answer::ok(json!(true))
            }
            "deleteWebhook" => {
                self.webhook = None;
                if params["drop_pending_updates"] == json!(true) {
                    self.updates.clear();
                }
                Answer::ok(json!(true))
            }
            "getWebhookInfo" => {
                Answer::ok(p::webhook_info(self.webhook.as_deref(), self.updates.len()))
            }
            "setMyCommands" => {
                self.commands = params["commands"].clone();
                Answer::ok(json!(true))
            }
            "getMyCommands" => {
                Answer::ok(if self.commands.is_null() { json!([]) } else { self.commands.clone() })
            }
            "answerPreCheckoutQuery" => self.answer_pre_checkout_query(params),
            "getStarTransactions" => self.get_star_transactions(params),
            "refundStarPayment" => self.refund_star_payment(params),
            "sendChatAction"
            | "answerCallbackQuery"
            | "setMyDescription"
            | "setMyShortDescription"
            | "close"
            | "logOut" => Answer::ok(json!(true)),
            _ => Answer::error(404, "Not Found: method not found"),
        }
    }

    fn send(&mut self, params: &Value, kind: SentKind, text_field: &str) -> Answer {
        let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
            return Answer::error(400, "Bad Request: chat_id is empty");
        };
        let text = params[text_field].as_str().unwrap_or_default().to_owned();
        if kind == SentKind::Text && text.trim().is_empty() {
            return Answer::error(400, "Bad Request: message text is empty");
        }
        let extra = json!({ "text": text });
        Answer::ok(self.store(chat_id, kind, text, params, extra, None))
    }

    /// Stores a bot message and returns its JSON.
    pub(crate) fn store(
        &mut self,
        chat_id: i64,
        kind: SentKind,
        text: String,
        params: &Value,
        extra: Value,
        file_id: Option<String>,
    ) -> Value {
        let chat = self.chat(chat_id);
        let message_id = chat.next_id();
        let reply_markup =
            params.get("reply_markup").filter(|m| m.get("inline_keyboard").is_some()).cloned();
        let mut json = p::message(message_id, chat_id, p::bot_user(), DATE);
        if let (Value::Object(m), Value::Object(e)) = (&mut json, extra) {
            m.extend(e);
            if let Some(markup) = &reply_markup {
                m.insert("reply_markup".to_owned(), markup.clone());
            }
        }
        let view = SentMessage {
            message_id,
            chat_id,
            kind,
            text,
            parse_mode: params["parse_mode"].as_str().map(str::to_owned),
            buttons: buttons_of(reply_markup.as_ref()),
            edits: 0,
            file_id,
        };
        chat.messages
            .insert(message_id, Stored { view, from_bot: true, reply_markup, json: json.clone() });
        json
    }

    fn media_source(
        &mut self,
        value: &Value,
        parts: &[Part],
    ) -> Result<(MediaSource, u64, Option<bytes::Bytes>), Answer> {
        let Some(s) = value.as_str() else {
            return Err(Answer::error(400, "Bad Request: there is no file in the request"));
        };
        if let Some(id) = s.strip_prefix("attach://") {
            let part = parts
                .iter()
                .find(|p| p.name == id)
                .ok_or_else(|| Answer::error(400, "Bad Request: file must be non-empty"))?;
            if part.body.is_empty() {
                return Err(Answer::error(400, "Bad Request: file must be non-empty"));
            }
            let size = part.body.len();
            let source = MediaSource::Upload { file_name: part.file_name.clone(), size };
            Ok((source, size as u64, Some(part.body.clone())))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            if self.refuse_video_urls {
                return Err(Answer::error(400, "Bad Request: failed to get HTTP URL content"));
            }
            Ok((MediaSource::Url(s.to_owned()), 1_000_000, None))
        } else {
            Ok((MediaSource::FileId(s.to_owned()), 1_000_000, None))
        }
    }

    fn send_media(&mut self, params: &Value, parts: &[Part], field: &str) -> Answer {
        let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
            return Answer::error(400, "Bad Request: chat_id is empty");
        };
        let (source, size, upload) = match self.media_source(&params[field], parts) {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        self.next_file += 1;
        let n = self.next_file;
        let file_id = format!("{field}-{n}");
        let unique = format!("uniq-{n}");
        // An uploaded file can be downloaded again by its new id, as from Telegram.
        if let Some(bytes) = upload {
            let entry = FileEntry {
                file_id: file_id.clone(),
                unique_id: unique.clone(),
                path: format!("{field}s/file_{n}"),
                declared_size: size,
                bytes,
            };
            self.files.insert(file_id.clone(), entry);
        }
        let caption = params["caption"].as_str().unwrap_or_default().to_owned();
        let mut extra = json!({});
        let kind = match field {
            "video" => {
                extra["video"] = p::video(&file_id, &unique, size);
                SentKind::Video(source)
            }
            "photo" => {
                extra["photo"] = json!([p::photo_size(&file_id, &unique, 1280, 1280, size)]);
                SentKind::Photo(source)
            }
            _ => {
                extra["document"] =
                    p::document(&file_id, &unique, "file", "application/octet-stream", size);
                SentKind::Document(source)
            }
        };
        if !caption.is_empty() {
            extra["caption"] = json!(caption);
        }
        Answer::ok(self.store(chat_id, kind, caption, params, extra, Some(file_id)))
    }

    fn send_media_group(&mut self, params: &Value, parts: &[Part]) -> Answer {
        let Some(chat_id) = params.get("chat_id").and_then(as_i64) else {
            return Answer::error(400, "Bad Request: chat_id is empty");
        };
        let Some(media) = params["media"].as_array().filter(|m| (2..=10).contains(&m.len())) else {
            return Answer::error(400, "Bad Request: media group must contain 2-10 items");
        };
        let mut messages = Vec::new();
        for item in media.clone() {
            let field = match item["type"].as_str() {
                Some("video") => "video",
                Some("photo") => "photo",
                _ => "document",
            };
            let mut item_params = json!({ "chat_id": chat_id, "caption": item["caption"], "parse_mode": item["parse_mode"] });
            item_params[field] = item["media"].clone();
            let answer = self.send_media(&item_params, parts, field);
            if answer.status != 200 {
                return answer;
            }
            let mut message = answer.body["result"].clone();
            message["media_group_id"] = json!("group-1");
            messages.push(message);
        }
        Answer::ok(Value::Array(messages))
    }

    fn edit(&mut self, params: &Value, text_field: Option<&str>) -> Answer {
        if params.get("inline_message_id").is_some() {
            return Answer::ok(json!(true));
        }
        let (Some(chat_id), Some(message_id)) = (
            params.get("chat_id").and_then(as_i64),
            params.get("message_id").and_then(as_i64).and_then(|m| i32::try_from(m).ok()),
        ) else {
            return Answer::error(400, "Bad Request: message identifier is not specified");
        };
        let Some(stored) =
            self.chats.get_mut(&chat_id).and_then(|c| c.messages.get_mut(&message_id))
        else {
            return Answer::error(400, "Bad Request: message to edit not found");
        };
        if !stored.from_bot {
            return Answer::error(400, "Bad Request: message can't be edited");
        }
        let new_text = text_field.map(|f| params[f].as_str().unwrap_or_default().to_owned());
        let new_markup =
            params.get("reply_markup").filter(|m| m.get("inline_keyboard").is_some()).cloned();
        let text_same = new_text.as_ref().is_none_or(|t| *t == stored.view.text);
        if text_same && new_markup == stored.reply_markup {
            return Answer::error(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
            );
        }
        if let (Some(text), Some(field)) = (new_text, text_field) {
            stored.json[field] = json!(text);
            stored.view.text = text;
            stored.view.parse_mode = params["parse_mode"].as_str().map(str::to_owned);
        }
        match &new_markup {
            Some(m) => stored.json["reply_markup"] = m.clone(),
            None => {
                if let Value::Object(o) = &mut stored.json {
                    o.remove("reply_markup");
                }
            }
        }
        stored.view.buttons = buttons_of(new_markup.as_ref());
        stored.reply_markup = new_markup;
        stored.view.edits += 1;
        stored.json["edit_date"] = json!(DATE + 1);
        Answer::ok(stored.json.clone())
    }

    fn delete(&mut self, params: &Value) -> Answer {
        let chat_id = params.get("chat_id").and_then(as_i64);
        let message_id =
            params.get("message_id").and_then(as_i64).and_then(|m| i32::try_from(m).ok());
        match (chat_id, message_id) {
            (Some(c), Some(m))
                if self.chats.get_mut(&c).and_then(|chat| chat.messages.remove(&m)).is_some() =>
            {
                Answer::ok(json!(true))
            }
            _ => Answer::error(400, "Bad Request: message to delete not found"),
        }
    }

    fn get_file(&mut self, params: &Value) -> Answer {
        let Some(file) = params["file_id"].as_str().and_then(|id| self.files.get(id)) else {
            return Answer::error(400, "Bad Request: invalid file_id");
        };
        if file.declared_size > DOWNLOAD_LIMIT {
            return Answer::error(400, "Bad Request: file is too big");
        }
        Answer::ok(p::file(&file.file_id, &file.unique_id, file.declared_size, &file.path))
    }

    fn get_updates(&mut self, params: &Value) -> Answer {
        if self.webhook.is_some() {
            return Answer::error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            );
        }
        // An offset confirms every update below it (Bot API getUpdates).
        if let Some(offset) = params.get("offset").and_then(as_i64) {
            self.updates.retain(|u| u["update_id"].as_i64().unwrap_or(i64::MAX) >= offset);
        }
        let limit = params.get("limit").and_then(as_i64).unwrap_or(100).clamp(1, 100) as usize;
        let batch: Vec<Value> = self.updates.iter().take(limit).cloned().collect();
        let long_poll = params.get("timeout").and_then(as_i64).unwrap_or(0) > 0;
        let delay = (batch.is_empty() && long_poll).then_some(EMPTY_POLL_DELAY);
        Answer { status: 200, body: p::ok(Value::Array(batch)), delay }
    }
}
