//! Contract tests of the Telegram notifier against FakeTelegram: what the user sees, and how
//! Telegram's refusals are handled.

use neurocards_core::domain::{Credits, ErrorClass, JobId, Language, OrderId, ProductId, UserId};
use neurocards_core::ports::{
    FailureNotice, Notifier, NotifyError, ProgressStage, Recipient, VideoMessage,
};
use neurocards_core::telegram::{build_bot, BotOptions, DeliveryLimits, TelegramNotifier};
use neurocards_testkit::fake_telegram::{Failure, FakeTelegram, MediaSource, SentKind};
use std::time::{Duration, Instant};
use teloxide::adaptors::throttle::Limits;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CHAT: i64 = 4242;

fn to(language: Language) -> Recipient {
    Recipient { user_id: UserId(CHAT), language }
}

fn options() -> BotOptions {
    BotOptions {
        limits: Limits {
            messages_per_sec_chat: 20,
            messages_per_min_chat: 600,
            ..Limits::default()
        },
        ..BotOptions::default()
    }
}

fn notifier(fake: &FakeTelegram, limits: DeliveryLimits) -> TelegramNotifier {
    let bot = build_bot(&fake.token(), &fake.api_url(), &options()).expect("bot builds");
    TelegramNotifier::new(bot, neurocards_testkit::local_fetch()).with_limits(limits)
}

/// Serves `size` bytes at `/video.mp4` (GET and HEAD, with Content-Length).
async fn video_host(size: usize) -> (MockServer, String) {
    let host = MockServer::start().await;
    let body = vec![7u8; size];
    for m in ["GET", "HEAD"] {
        Mock::given(method(m))
            .and(path("/video.mp4"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body.clone(), "video/mp4"))
            .mount(&host)
            .await;
    }
    let url = format!("{}/video.mp4", host.uri());
    (host, url)
}

fn video(url: &str) -> VideoMessage {
    VideoMessage {
        video_url: url.to_owned(),
        order_id: OrderId(5),
        job_id: JobId(9),
        product_id: Some(ProductId(77)),
        index: 1,
        total: 1,
    }
}

fn small_limits() -> DeliveryLimits {
    DeliveryLimits { url_max_bytes: 1_000, upload_max_bytes: 4_000, ..DeliveryLimits::default() }
}

#[tokio::test]
async fn progress_is_sent_once_then_edited_in_place() {
    let fake = FakeTelegram::start().await;
    let n = notifier(&fake, DeliveryLimits::default());

    let first = n
        .show_progress(
            to(Language::En),
            None,
            &ProgressStage::Queued { order_id: OrderId(7), total: 3, position: 2, eta_minutes: 4 },
        )
        .await
        .expect("sent");
    let queued = fake.messages_to(CHAT);
    assert_eq!(queued[0].callback_data(), vec!["cxl:7"], "a waiting order can be cancelled");
    let second = n
        .show_progress(
            to(Language::En),
            Some(first),
            &ProgressStage::Generating { done: 1, total: 3 },
        )
        .await
        .expect("edited");
    let third = n
        .show_progress(
            to(Language::En),
            Some(second),
            &ProgressStage::Generating { done: 1, total: 3 },
        )
        .await
        .expect("an unchanged text is not an error");

    assert_eq!(first, second);
    assert_eq!(second, third);
    let seen = fake.messages_to(CHAT);
    assert_eq!(seen.len(), 1, "one progress message: {seen:?}");
    assert!(seen[0].text.contains("1 of 3"), "{}", seen[0].text);
    assert_eq!(seen[0].edits, 1);
    assert!(seen[0].buttons.is_empty(), "generating: no Cancel any more");
    assert_eq!(seen[0].parse_mode.as_deref(), Some("HTML"));
    assert_eq!(fake.calls("sendMessage").len(), 1);
}

#[tokio::test]
async fn progress_whose_message_was_deleted_is_sent_anew() {
    let fake = FakeTelegram::start().await;
    let n = notifier(&fake, DeliveryLimits::default());
    let first = n
        .show_progress(to(Language::Ru), None, &ProgressStage::Generating { done: 0, total: 1 })
        .await
        .expect("sent");
    fake.user_deletes_message(CHAT, first.message_id);

    let next = n
        .show_progress(
            to(Language::Ru),
            Some(first),
            &ProgressStage::Retrying { done: 0, total: 1, class: ErrorClass::RateLimit },
        )
        .await
        .expect("a new message replaces the lost one");

    assert_ne!(next.message_id, first.message_id);
    let seen = fake.messages_to(CHAT);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message_id, next.message_id);
    assert!(seen[0].text.contains("продолжаем"), "{}", seen[0].text);
    assert_eq!(fake.calls("editMessageText").len(), 1);
}

#[tokio::test]
async fn video_is_sent_by_url_with_make_another_and_menu() {
    let fake = FakeTelegram::start().await;
    let (_host, url) = video_host(500).await;
    let n = notifier(&fake, small_limits());

    let sent = n.send_video(to(Language::En), &video(&url)).await.expect("sent");

    let videos = fake.videos_to(CHAT);
    assert_eq!(videos.len(), 1);
    assert_eq!(videos[0].source, MediaSource::Url(url));
    assert_eq!(sent.message_id, videos[0].message_id);
    assert_eq!(sent.file_id, videos[0].file_id);
    assert!(sent.file_id.is_some());
    let data: Vec<_> =
        videos[0].buttons.iter().flatten().filter_map(|b| b.callback_data.clone()).collect();
    assert_eq!(data, ["mk:77", "menu"]);
    assert!(videos[0].caption.contains("ready"), "{}", videos[0].caption);
}

#[tokio::test]
async fn video_telegram_cannot_fetch_is_downloaded_and_uploaded() {
    let fake = FakeTelegram::start().await;
    fake.refuse_media_urls(true);
    let (_host, url) = video_host(700).await;
    let n = notifier(&fake, small_limits());

    let sent = n.send_video(to(Language::En), &video(&url)).await.expect("uploaded");

    let calls = fake.calls("sendVideo");
    assert_eq!(calls.len(), 2, "by URL, then by upload");
    assert!(!calls[0].answered_ok);
    assert!(calls[1].multipart);
    assert_eq!(calls[1].files.len(), 1);
    assert_eq!(calls[1].files[0].bytes.len(), 700);
    assert_eq!(calls[1].files[0].file_name.as_deref(), Some("video.mp4"));
    let videos = fake.videos_to(CHAT);
    assert_eq!(videos.len(), 1, "the user sees one video");
    assert!(matches!(videos[0].source, MediaSource::Upload { size: 700, .. }));
    assert_eq!(sent.message_id, videos[0].message_id);
}

#[tokio::test]
async fn video_over_the_url_limit_is_uploaded_directly() {
    let fake = FakeTelegram::start().await;
    let (_host, url) = video_host(2_000).await;
    let n = notifier(&fake, small_limits());

    n.send_video(to(Language::En), &video(&url)).await.expect("uploaded");

    let calls = fake.calls("sendVideo");
    assert_eq!(calls.len(), 1, "no doomed attempt by URL");
    assert_eq!(calls[0].files.first().map(|f| f.bytes.len()), Some(2_000));
}

#[tokio::test]
async fn video_over_the_upload_limit_is_sent_as_a_link() {
    let fake = FakeTelegram::start().await;
    fake.refuse_media_urls(true);
    let (_host, url) = video_host(5_000).await;
    let n = notifier(&fake, small_limits());

    let sent = n.send_video(to(Language::En), &video(&url)).await.expect("link sent");

    assert_eq!(sent.file_id, None);
    assert!(fake.videos_to(CHAT).is_empty());
    let last = fake.last_message_to(CHAT).expect("a message");
    assert_eq!(last.kind, SentKind::Text);
    assert!(last.text.contains(&url), "{}", last.text);
    assert_eq!(last.callback_data(), ["mk:77", "menu"]);
}

#[test]
fn default_limits_are_telegrams() {
    let d = DeliveryLimits::default();
    assert_eq!(d.url_max_bytes, 20 * 1024 * 1024);
    assert_eq!(d.upload_max_bytes, 50 * 1024 * 1024);
}

#[tokio::test]
async fn blocked_user_is_reported_and_not_retried() {
    let fake = FakeTelegram::start().await;
    fake.block_bot(CHAT);
    let n = notifier(&fake, DeliveryLimits::default());
    let notice = FailureNotice {
        order_id: OrderId(5),
        job_id: JobId(9),
        class: ErrorClass::Temporary,
        refunded: Credits::new(1).expect("valid"),
        product_id: None,
        detail: None,
        photo_problem: None,
    };

    let err = n.send_failure(to(Language::En), &notice).await.expect_err("blocked");

    assert_eq!(err, NotifyError::BotBlocked);
    assert!(!err.is_retryable());
    assert_eq!(fake.calls("sendMessage").len(), 1);
    let err = n.chat_action(to(Language::En)).await.expect_err("blocked");
    assert_eq!(err, NotifyError::BotBlocked);
}

#[tokio::test]
async fn short_flood_control_is_waited_out_and_the_message_sent() {
    let fake = FakeTelegram::start().await;
    fake.fail_next("sendMessage", Failure::RetryAfter(1));
    let n = notifier(&fake, DeliveryLimits::default());

    let started = Instant::now();
    let sent = n
        .show_progress(to(Language::En), None, &ProgressStage::Generating { done: 0, total: 1 })
        .await
        .expect("sent after waiting");

    assert!(started.elapsed() >= Duration::from_millis(950), "retry_after honoured");
    assert_eq!(fake.calls("sendMessage").len(), 2);
    assert_eq!(fake.messages_to(CHAT).len(), 1);
    assert_eq!(fake.messages_to(CHAT)[0].message_id, sent.message_id);
}

#[tokio::test]
async fn long_flood_control_is_handed_back_to_the_caller() {
    let fake = FakeTelegram::start().await;
    fake.fail_next("sendMessage", Failure::RetryAfter(120));
    let n = notifier(
        &fake,
        DeliveryLimits { max_inline_wait: Duration::from_secs(5), ..DeliveryLimits::default() },
    );

    let err = n
        .show_progress(to(Language::En), None, &ProgressStage::Generating { done: 0, total: 1 })
        .await
        .expect_err("too long to wait in place");

    assert_eq!(err, NotifyError::RetryAfter(Duration::from_secs(120)));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn failure_states_the_refund_and_escapes_the_reason() {
    let fake = FakeTelegram::start().await;
    let n = notifier(&fake, DeliveryLimits::default());
    let violation = FailureNotice {
        order_id: OrderId(5),
        job_id: JobId(9),
        class: ErrorClass::UserViolation,
        refunded: Credits::new(1).expect("valid"),
        product_id: Some(ProductId(77)),
        detail: Some("Photo contains <real people> & logos".to_owned()),
        photo_problem: None,
    };
    n.send_failure(to(Language::Ru), &violation).await.expect("sent");
    let temporary = FailureNotice {
        class: ErrorClass::Temporary,
        refunded: Credits::new(3).expect("valid"),
        detail: None,
        ..violation.clone()
    };
    n.send_failure(to(Language::En), &temporary).await.expect("sent");

    let seen = fake.messages_to(CHAT);
    assert_eq!(seen.len(), 2);
    assert!(seen[0].text.contains("&lt;real people&gt; &amp; logos"), "{}", seen[0].text);
    assert!(seen[0].text.contains("1 кредит возвращено"), "{}", seen[0].text);
    assert!(seen[0].text.contains("людей") || seen[0].text.contains("люди"), "says what to change");
    assert_eq!(seen[0].callback_data(), ["menu"], "no retry for the user's content");
    assert!(seen[1].text.contains("3 credits returned"), "{}", seen[1].text);
    assert_eq!(seen[1].callback_data(), ["rt:5", "menu"]);
    assert!(seen.iter().all(|m| m.parse_mode.as_deref() == Some("HTML")));
}

#[tokio::test]
async fn chat_action_shows_video_upload() {
    let fake = FakeTelegram::start().await;
    let n = notifier(&fake, DeliveryLimits::default());
    n.chat_action(to(Language::En)).await.expect("sent");
    let calls = fake.calls("sendChatAction");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].chat_id(), Some(CHAT));
    assert_eq!(calls[0].str_param("action"), Some("upload_video"));
}

#[tokio::test]
async fn failures_only_we_can_fix_link_to_support_in_both_languages() {
    let fake = FakeTelegram::start().await;
    let support = url::Url::parse("https://t.me/neurocards_support?start=failure").expect("url");
    let n = notifier(&fake, DeliveryLimits::default()).with_support_url(Some(support.clone()));
    let billing = FailureNotice {
        order_id: OrderId(5),
        job_id: JobId(9),
        class: ErrorClass::Billing,
        refunded: Credits::new(1).expect("valid"),
        product_id: None,
        detail: None,
        photo_problem: None,
    };
    n.send_failure(to(Language::Ru), &billing).await.expect("sent");
    let unknown = FailureNotice { class: ErrorClass::Unknown, ..billing.clone() };
    n.send_failure(to(Language::En), &unknown).await.expect("sent");
    let temporary = FailureNotice { class: ErrorClass::Temporary, ..billing.clone() };
    n.send_failure(to(Language::En), &temporary).await.expect("sent");

    let seen = fake.messages_to(CHAT);
    assert_eq!(seen.len(), 3);
    for (message, label) in [(&seen[0], "Поддержка"), (&seen[1], "Support")] {
        let link = message.all_buttons().into_iter().find(|b| b.url.is_some()).expect("support");
        assert_eq!(link.url.as_deref(), Some(support.as_str()), "the link exactly as configured");
        assert!(link.text.contains(label), "{}", link.text);
        assert!(message.callback_data().contains(&"rt:5"), "Retry stays");
    }
    assert!(
        seen[2].all_buttons().iter().all(|b| b.url.is_none()),
        "a temporary failure is ours to retry, not the user's to report"
    );
}
