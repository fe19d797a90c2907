//! Building the `Update`s a user's actions produce: for `push_update` (polling) or to post to
//! the webhook. Each gets the next `update_id` and a message id from the chat's own sequence,
//! so it never collides with the bot's messages.

use super::model::TgUser;
use super::payloads as p;
use super::state::State;
use super::{lock, FakeTelegram};
use serde_json::{json, Value};

const DATE: i64 = 1_700_000_100;

impl FakeTelegram {
    fn user_message(&self, user: &TgUser, fill: impl FnOnce(&mut State, &mut Value)) -> Value {
        let mut state = lock(&self.state);
        let message_id = state.chat(user.id).next_id();
        let mut message = p::message(message_id, user.id, user.json(), DATE);
        fill(&mut state, &mut message);
        let update_id = state.next_update_id();
        json!({ "update_id": update_id, "message": message })
    }

    /// A text message from `user`.
    pub fn text_update(&self, user: &TgUser, text: &str) -> Value {
        self.user_message(user, |_, m| m["text"] = json!(text))
    }

    /// A command (`/start`, `/start ref_42`, `/balance`) with its `bot_command` entity.
    pub fn command_update(&self, user: &TgUser, command_line: &str) -> Value {
        let command_len =
            command_line.split_whitespace().next().map_or(0, |c| c.encode_utf16().count());
        self.user_message(user, |_, m| {
            m["text"] = json!(command_line);
            m["entities"] = json!([{ "type": "bot_command", "offset": 0, "length": command_len }]);
        })
    }

    /// A photo from `user` in three sizes (largest last, as Telegram sends them); every size is
    /// served with `bytes`. Returns the update and the largest size's file id.
    pub fn photo_update(
        &self,
        user: &TgUser,
        bytes: impl Into<bytes::Bytes>,
        caption: Option<&str>,
    ) -> (Value, String) {
        let bytes = bytes.into();
        let mut largest = String::new();
        let update = self.user_message(user, |state, m| {
            let sizes: Vec<Value> = [(90, 90), (320, 320), (1280, 1280)]
                .into_iter()
                .map(|(w, h)| {
                    let f = state.add_file(None, bytes.clone(), None, "jpg");
                    largest = f.file_id.clone();
                    p::photo_size(&f.file_id, &f.unique_id, w, h, f.declared_size)
                })
                .collect();
            m["photo"] = Value::Array(sizes);
            if let Some(c) = caption {
                m["caption"] = json!(c);
            }
        });
        (update, largest)
    }

    /// A file sent as a document (an uncompressed image, or anything else) with its
    /// `mime_type` and `file_size` (`declared_size`, or the length of `bytes`). Returns the update
    /// and the file id.
    pub fn document_update(
        &self,
        user: &TgUser,
        file_name: &str,
        mime_type: &str,
        bytes: impl Into<bytes::Bytes>,
        declared_size: Option<u64>,
    ) -> (Value, String) {
        let bytes = bytes.into();
        let mut file_id = String::new();
        let ext = file_name.rsplit_once('.').map_or("bin", |(_, e)| e).to_owned();
        let update = self.user_message(user, |state, m| {
            let f = state.add_file(None, bytes, declared_size, &ext);
            file_id = f.file_id.clone();
            m["document"] =
                p::document(&f.file_id, &f.unique_id, file_name, mime_type, f.declared_size);
        });
        (update, file_id)
    }

    /// A press on the newest button whose callback data starts with `prefix`, in the newest
    /// bot message in the user's chat that offers one; `None` when no message does. The full
    /// data is used, so `prefix` may leave out a generated part (an order token, say).
    pub fn press_update(&self, user: &TgUser, prefix: &str) -> Option<Value> {
        let message = self
            .messages_to(user.id)
            .into_iter()
            .rev()
            .find(|m| m.callback_data().iter().any(|d| d.starts_with(prefix)))?;
        let data = message.callback_data().into_iter().find(|d| d.starts_with(prefix))?;
        Some(self.callback_update(user, message.message_id, data))
    }

    /// A press on an inline button with `data` under the bot's message `message_id` in the
    /// user's chat (the message is included as Telegram includes it; an unknown id gives an
    /// inaccessible message).
    pub fn callback_update(&self, user: &TgUser, message_id: i32, data: &str) -> Value {
        let mut state = lock(&self.state);
        let message = state
            .chats
            .get(&user.id)
            .and_then(|c| c.messages.get(&message_id))
            .map(|m| m.json.clone())
            .unwrap_or_else(
                || json!({ "message_id": message_id, "date": 0, "chat": p::private_chat(user.id) }),
            );
        let update_id = state.next_update_id();
        json!({
            "update_id": update_id,
            "callback_query": {
                "id": format!("cbq-{update_id}"),
                "from": user.json(),
                "chat_instance": format!("ci-{}", user.id),
                "message": message,
                "data": data
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::{Update, UpdateKind};

    /// Parsed from text as teloxide does: `Update` cannot be read from a `serde_json::Value`
    /// (its deserializer wants borrowed keys).
    fn parse(v: Value) -> Update {
        serde_json::from_str(&v.to_string()).unwrap_or_else(|e| panic!("{e}: {v}"))
    }

    #[tokio::test]
    async fn built_updates_parse_as_teloxide_updates() {
        let fake = FakeTelegram::start().await;
        let ann = TgUser::new(42).language("en");

        let UpdateKind::Message(m) = parse(fake.text_update(&ann, "hello <b>")).kind else {
            panic!("text")
        };
        assert_eq!(m.text(), Some("hello <b>"));

        let UpdateKind::Message(m) = parse(fake.command_update(&ann, "/start ref_1")).kind else {
            panic!("command")
        };
        assert_eq!(m.entities().map(|e| e.len()), Some(1));

        let (photo, largest) = fake.photo_update(&ann, vec![0xFF, 0xD8, 0xFF, 0], Some("mug"));
        let UpdateKind::Message(m) = parse(photo).kind else { panic!("photo") };
        let sizes = m.photo().expect("photo sizes");
        assert_eq!(sizes.last().map(|s| s.file.id.0.clone()), Some(largest));

        let (doc, _) =
            fake.document_update(&ann, "mug.png", "image/png", vec![1, 2], Some(30_000_000));
        let UpdateKind::Message(m) = parse(doc).kind else { panic!("document") };
        let d = m.document().expect("document");
        assert_eq!(d.file.size, 30_000_000);

        let UpdateKind::CallbackQuery(q) = parse(fake.callback_update(&ann, 99, "menu")).kind
        else {
            panic!("callback")
        };
        assert_eq!(q.data.as_deref(), Some("menu"));
        assert!(q.message.is_some_and(|m| m.regular_message().is_none()));
    }

    #[tokio::test]
    async fn update_ids_increase_and_message_ids_do_not_collide() {
        let fake = FakeTelegram::start().await;
        let ann = TgUser::new(7);
        let a = fake.text_update(&ann, "a");
        let b = fake.text_update(&ann, "b");
        assert!(b["update_id"].as_i64() > a["update_id"].as_i64());
        assert_ne!(a["message"]["message_id"], b["message"]["message_id"]);
    }
}
