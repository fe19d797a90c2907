//! Bot API object shapes the fake answers with (core.telegram.org/bots/api), built as JSON so
//! that teloxide parses them exactly as it parses Telegram's answers. Each builder has a unit test
//! that deserializes it with teloxide's own type.

use serde_json::{json, Value};

/// Bot id, name and username of the fake's bot.
pub const BOT_ID: i64 = 123_456;
/// The fake bot's username.
pub const BOT_USERNAME: &str = "neurocards_test_bot";

/// A successful answer.
pub fn ok(result: Value) -> Value {
    json!({ "ok": true, "result": result })
}

/// An error answer; `error_code` mirrors the HTTP status as Telegram does.
pub fn error(code: u16, description: &str) -> Value {
    json!({ "ok": false, "error_code": code, "description": description })
}

/// Telegram's flood-control answer.
pub fn retry_after(seconds: u32) -> Value {
    json!({
        "ok": false,
        "error_code": 429,
        "description": format!("Too Many Requests: retry after {seconds}"),
        "parameters": { "retry_after": seconds }
    })
}

/// The bot as a `User`.
pub fn bot_user() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "Neurocards Test", "username": BOT_USERNAME })
}

/// `getMe`'s `User` with the bot-only fields.
pub fn me() -> Value {
    let mut user = bot_user();
    if let Value::Object(map) = &mut user {
        for key in ["can_join_groups", "can_read_all_group_messages", "supports_inline_queries"] {
            map.insert(key.to_owned(), Value::Bool(false));
        }
        map.insert("can_connect_to_business".to_owned(), Value::Bool(false));
        map.insert("has_main_web_app".to_owned(), Value::Bool(false));
    }
    user
}

/// A human `User`.
pub fn user(id: i64, first_name: &str, username: Option<&str>, language: Option<&str>) -> Value {
    let mut user = json!({ "id": id, "is_bot": false, "first_name": first_name });
    if let Some(u) = username {
        user["username"] = json!(u);
    }
    if let Some(l) = language {
        user["language_code"] = json!(l);
    }
    user
}

/// A private chat (a user's chat id is the user's id).
pub fn private_chat(chat_id: i64) -> Value {
    json!({ "id": chat_id, "type": "private", "first_name": "User" })
}

/// The common part of a `Message`.
pub fn message(message_id: i32, chat_id: i64, from: Value, date: i64) -> Value {
    json!({ "message_id": message_id, "date": date, "chat": private_chat(chat_id), "from": from })
}

/// A `Video` object.
pub fn video(file_id: &str, unique_id: &str, size: u64) -> Value {
    json!({
        "file_id": file_id, "file_unique_id": unique_id,
        "width": 720, "height": 1280, "duration": 10,
        "mime_type": "video/mp4", "file_size": size
    })
}

/// A `Document` object.
pub fn document(file_id: &str, unique_id: &str, name: &str, mime: &str, size: u64) -> Value {
    json!({
        "file_id": file_id, "file_unique_id": unique_id,
        "file_name": name, "mime_type": mime, "file_size": size
    })
}

/// A `PhotoSize` object.
pub fn photo_size(file_id: &str, unique_id: &str, width: u32, height: u32, size: u64) -> Value {
    json!({
        "file_id": file_id, "file_unique_id": unique_id,
        "width": width, "height": height, "file_size": size
    })
}

/// A `File` from `getFile`.
pub fn file(file_id: &str, unique_id: &str, size: u64, path: &str) -> Value {
    json!({ "file_id": file_id, "file_unique_id": unique_id, "file_size": size, "file_path": path })
}

/// A `WebhookInfo`.
pub fn webhook_info(url: Option<&str>, pending: usize) -> Value {
    json!({
        "url": url.unwrap_or(""), "has_custom_certificate": false,
        "pending_update_count": pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::{
        CallbackQuery, File, Me, Message, True, Update, UpdateKind, WebhookInfo,
    };

    /// Parsed from text, as teloxide parses answers (`Update` cannot be read from a `Value`).
    fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_str(&v.to_string()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }

    fn text_message() -> Value {
        let mut m = message(7, 42, bot_user(), 1_700_000_000);
        m["text"] = json!("hi");
        m["reply_markup"] =
            json!({ "inline_keyboard": [[{ "text": "Menu", "callback_data": "menu" }]] });
        m
    }

    #[test]
    fn get_me_parses_as_me() {
        let me: Me = parse(me());
        assert_eq!(me.user.id.0, BOT_ID as u64);
        assert_eq!(me.username(), BOT_USERNAME);
    }

    #[test]
    fn text_message_with_keyboard_parses() {
        let m: Message = parse(text_message());
        assert_eq!(m.id.0, 7);
        assert_eq!(m.chat.id.0, 42);
        assert_eq!(m.text(), Some("hi"));
        assert!(m.reply_markup().is_some());
    }

    #[test]
    fn video_message_parses_with_its_file_id() {
        let mut m = message(8, 42, bot_user(), 1_700_000_000);
        m["video"] = video("vid-1", "u-vid-1", 1234);
        m["caption"] = json!("done");
        let m: Message = parse(m);
        assert_eq!(m.video().map(|v| v.file.id.0.as_str()), Some("vid-1"));
        assert_eq!(m.caption(), Some("done"));
    }

    #[test]
    fn photo_and_document_messages_parse() {
        let mut m = message(9, 42, user(42, "Ann", None, Some("ru")), 1_700_000_000);
        m["photo"] = json!([
            photo_size("p-s", "u-p-s", 90, 90, 100),
            photo_size("p-x", "u-p-x", 1280, 1280, 5000)
        ]);
        let m: Message = parse(m);
        assert_eq!(m.photo().map(|p| p.len()), Some(2));
        let mut d = message(10, 42, user(42, "Ann", None, None), 1_700_000_000);
        d["document"] = document("d-1", "u-d-1", "p.png", "image/png", 10);
        let d: Message = parse(d);
        assert_eq!(
            d.document().and_then(|d| d.mime_type.clone()).map(|m| m.to_string()),
            Some("image/png".into())
        );
    }

    #[test]
    fn media_group_parses_as_messages() {
        let mut a = message(11, 42, bot_user(), 1);
        a["photo"] = json!([photo_size("p", "u", 10, 10, 1)]);
        a["media_group_id"] = json!("g1");
        let v: Vec<Message> = parse(json!([a.clone(), a]));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn file_parses_with_path_and_size() {
        let f: File = parse(file("f", "uf", 321, "photos/file_1.jpg"));
        assert_eq!(f.path, "photos/file_1.jpg");
        assert_eq!(f.meta.size, 321);
    }

    #[test]
    fn true_and_webhook_info_parse() {
        let _: True = parse(json!(true));
        let info: WebhookInfo = parse(webhook_info(Some("https://x/telegram/webhook"), 0));
        assert_eq!(info.pending_update_count, 0);
    }

    #[test]
    fn callback_query_update_parses() {
        let update = json!({
            "update_id": 5,
            "callback_query": {
                "id": "cb1", "from": user(42, "Ann", None, None), "chat_instance": "ci",
                "data": "menu", "message": text_message()
            }
        });
        let u: Update = parse(update);
        let UpdateKind::CallbackQuery(q): UpdateKind = u.kind else { panic!("not a callback") };
        let q: CallbackQuery = q;
        assert_eq!(q.data.as_deref(), Some("menu"));
        assert_eq!(q.message.map(|m| m.id().0), Some(7));
    }

    #[test]
    fn error_answers_parse_into_teloxide_errors() {
        use teloxide::{ApiError, RequestError};
        let blocked = error(403, "Forbidden: bot was blocked by the user");
        let parsed: Result<Message, RequestError> = teloxide_response(blocked);
        assert!(matches!(parsed, Err(RequestError::Api(ApiError::BotBlocked))));
        let parsed: Result<Message, RequestError> = teloxide_response(retry_after(2));
        assert!(matches!(parsed, Err(RequestError::RetryAfter(s)) if s.seconds() == 2));
    }

    /// Mirrors teloxide's response parsing (`{ok, result}` or `{ok, description, parameters}`).
    fn teloxide_response<T: serde::de::DeserializeOwned>(
        v: Value,
    ) -> Result<T, teloxide::RequestError> {
        use teloxide::types::ResponseParameters;
        if v["ok"] == json!(true) {
            return Ok(parse(v["result"].clone()));
        }
        if let Some(p) = v.get("parameters") {
            let p: ResponseParameters = parse(p.clone());
            if let ResponseParameters::RetryAfter(s) = p {
                return Err(teloxide::RequestError::RetryAfter(s));
            }
        }
        Err(teloxide::RequestError::Api(parse(v["description"].clone())))
    }
}
