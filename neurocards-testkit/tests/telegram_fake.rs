//! FakeTelegram answers every Bot API method the system uses in shapes teloxide parses, and
//! serves updates to polling as Telegram does.

use neurocards_core::telegram::{build_bot, BotOptions};
use neurocards_testkit::fake_telegram::{FakeTelegram, TgUser};
use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters};
use teloxide::prelude::*;
use teloxide::types::{
    BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia, InputMediaPhoto,
    MessageId, UpdateKind,
};

#[tokio::test]
async fn every_method_the_system_uses_is_answered_in_a_parseable_shape() {
    let fake = FakeTelegram::start().await;
    let bot = build_bot(&fake.token(), &fake.api_url(), &BotOptions::default()).expect("bot");
    let chat = ChatId(77);
    let url = url::Url::parse("https://example.com/x").expect("url");

    let me = bot.get_me().await.expect("getMe");
    assert!(me.user.is_bot);
    bot.set_my_commands([BotCommand::new("start", "Start")]).await.expect("setMyCommands");
    assert_eq!(fake.registered_commands()[0]["command"], "start");
    let kb = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Menu", "menu")]]);
    let m = bot.send_message(chat, "hi").reply_markup(kb).await.expect("sendMessage");
    bot.edit_message_reply_markup(chat, m.id).await.expect("editMessageReplyMarkup");
    bot.edit_message_text(chat, m.id, "edited").await.expect("editMessageText");
    bot.send_chat_action(chat, teloxide::types::ChatAction::Typing).await.expect("sendChatAction");
    bot.answer_callback_query(teloxide::types::CallbackQueryId("cb".into()))
        .await
        .expect("answerCallbackQuery");
    bot.send_photo(chat, InputFile::memory(vec![1u8, 2, 3]).file_name("p.jpg"))
        .await
        .expect("sendPhoto");
    bot.send_document(chat, InputFile::url(url.clone())).await.expect("sendDocument");
    let group = bot
        .send_media_group(
            chat,
            [
                InputMedia::Photo(InputMediaPhoto::new(InputFile::url(url.clone()))),
                InputMedia::Photo(InputMediaPhoto::new(InputFile::memory(vec![9u8; 5]))),
            ],
        )
        .await
        .expect("sendMediaGroup");
    assert_eq!(group.len(), 2);
    bot.send_video(chat, InputFile::url(url)).await.expect("sendVideo");
    bot.set_webhook(url::Url::parse("https://bot.example/telegram/webhook").expect("url"))
        .await
        .expect("setWebhook");
    assert!(
        bot.get_updates().await.is_err(),
        "getUpdates conflicts with a webhook, as on Telegram"
    );
    bot.delete_webhook().await.expect("deleteWebhook");
    bot.get_updates().await.expect("getUpdates");

    let seen = fake.messages_to(77);
    assert_eq!(seen[0].text, "edited");
    assert_eq!(seen[0].edits, 2);
    assert_eq!(fake.videos_to(77).len(), 1);
    assert!(fake.all_calls().iter().all(|c| c.method != "editMessageText" || c.answered_ok));
    assert!(bot.edit_message_text(chat, MessageId(9_999), "x").await.is_err(), "unknown message");
}

#[tokio::test]
async fn get_updates_serves_the_queue_and_honours_offset() {
    let fake = FakeTelegram::start().await;
    let bot = build_bot(&fake.token(), &fake.api_url(), &BotOptions::default()).expect("bot");
    let ann = TgUser::new(5);
    fake.push_update(fake.command_update(&ann, "/start"));
    fake.push_update(fake.text_update(&ann, "hello"));
    let (photo, _) = fake.photo_update(&ann, vec![0xFF, 0xD8, 0xFF], None);
    fake.push_update(photo);

    let first = bot.get_updates().limit(2).await.expect("updates");
    assert_eq!(first.len(), 2);
    let again = bot.get_updates().await.expect("updates");
    assert_eq!(again.len(), 3, "nothing is confirmed without an offset");

    let next_offset = first[1].id.0 as i32 + 1;
    let rest = bot.get_updates().offset(next_offset).await.expect("updates");
    assert_eq!(rest.len(), 1);
    assert!(matches!(&rest[0].kind, UpdateKind::Message(m) if m.photo().is_some()));
    assert_eq!(fake.pending_updates(), 1);

    let empty =
        bot.get_updates().offset(rest[0].id.0 as i32 + 1).timeout(1).await.expect("updates");
    assert!(empty.is_empty());
    assert_eq!(fake.pending_updates(), 0);
}
