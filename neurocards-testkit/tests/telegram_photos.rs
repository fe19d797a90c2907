//! Contract tests of the photo download (getFile + file endpoint) and of token redaction.

use neurocards_core::domain::ImageMime;
use neurocards_core::domain::{Language, UserId};
use neurocards_core::ports::{
    Notifier, NotifyError, PhotoError, PhotoSource, ProgressStage, Recipient,
};
use neurocards_core::secret::Secret;
use neurocards_core::telegram::{
    build_bot, BotOptions, TelegramNotifier, TelegramPhotos, TELEGRAM_DOWNLOAD_LIMIT,
};
use neurocards_testkit::fake_telegram::{FakeTelegram, TOKEN};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

fn photos(fake: &FakeTelegram) -> TelegramPhotos {
    TelegramPhotos::new(
        build_bot(&fake.token(), &fake.api_url(), &BotOptions::default()).expect("bot"),
    )
}

#[tokio::test]
async fn photo_is_downloaded_by_file_id() {
    let fake = FakeTelegram::start().await;
    let mut bytes = JPEG.to_vec();
    bytes.extend(std::iter::repeat_n(1u8, 10_000));
    let file_id = fake.add_file(None, bytes.clone());

    let image = photos(&fake).fetch_photo(&file_id).await.expect("downloaded");

    assert_eq!(image.mime, ImageMime::Jpeg);
    assert_eq!(&image.bytes[..], &bytes[..]);
    assert_eq!(fake.calls("getFile").len(), 1);
}

#[tokio::test]
async fn photo_over_telegrams_20_mb_is_too_large() {
    let fake = FakeTelegram::start().await;
    let file_id = fake.add_file_with_size(None, JPEG.to_vec(), 25 * 1024 * 1024);

    let err = photos(&fake).fetch_photo(&file_id).await.expect_err("too large");

    assert!(
        matches!(err, PhotoError::TooLarge { limit, .. } if limit == TELEGRAM_DOWNLOAD_LIMIT),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn photo_over_the_configured_limit_is_refused_before_download() {
    let fake = FakeTelegram::start().await;
    let file_id = fake.add_file(None, [JPEG, &[0u8; 2_000]].concat());

    let err =
        photos(&fake).with_max_bytes(1_000).fetch_photo(&file_id).await.expect_err("too large");

    assert_eq!(err, PhotoError::TooLarge { size: 2_000 + JPEG.len() as u64, limit: 1_000 });
}

#[tokio::test]
async fn a_wrong_declared_size_cannot_make_it_read_past_the_limit() {
    let fake = FakeTelegram::start().await;
    let file_id = fake.add_file_with_size(None, [JPEG, &[0u8; 5_000]].concat(), 10);

    let err =
        photos(&fake).with_max_bytes(1_000).fetch_photo(&file_id).await.expect_err("too large");

    assert!(matches!(err, PhotoError::TooLarge { limit: 1_000, .. }), "{err:?}");
}

#[tokio::test]
async fn bytes_that_are_not_an_image_are_refused() {
    let fake = FakeTelegram::start().await;
    let file_id = fake.add_file(None, b"%PDF-1.7 not a photo".to_vec());

    let err = photos(&fake).fetch_photo(&file_id).await.expect_err("not an image");

    assert_eq!(err, PhotoError::NotAnImage);
}

#[tokio::test]
async fn unknown_file_id_is_gone() {
    let fake = FakeTelegram::start().await;
    let err = photos(&fake).fetch_photo("no-such-file").await.expect_err("gone");
    assert!(matches!(err, PhotoError::Gone(_)), "{err:?}");
}

#[tokio::test]
async fn the_bot_token_never_appears_in_errors() {
    // A download that fails after getFile: reqwest's error quotes the file URL (with the token).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("(?i)/getfile$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "result": {"file_id": "f", "file_unique_id": "u", "file_size": 10, "file_path": "photos/gone.jpg"}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(404)).mount(&server).await;
    let token = Secret::new(TOKEN);
    let url = url::Url::parse(&server.uri()).expect("url");
    let bot = build_bot(&token, &url, &BotOptions::default()).expect("bot");
    let download = TelegramPhotos::new(bot).fetch_photo("f").await.expect_err("404");

    // Nothing listening: the network error quotes the method URL (with the token).
    let closed = url::Url::parse("http://127.0.0.1:9").expect("url");
    let options = BotOptions { connect_timeout: Duration::from_secs(2), ..BotOptions::default() };
    let bot = build_bot(&token, &closed, &options).expect("bot");
    let network = TelegramNotifier::new(bot.clone(), neurocards_testkit::local_fetch())
        .show_progress(
            Recipient { user_id: UserId(1), language: Language::En },
            None,
            &ProgressStage::Generating { done: 0, total: 1 },
        )
        .await
        .expect_err("nothing listening");
    let get_file = TelegramPhotos::new(bot).fetch_photo("f").await.expect_err("nothing listening");

    assert!(matches!(download, PhotoError::Temporary(_)), "{download:?}");
    assert!(matches!(network, NotifyError::Temporary(_)), "{network:?}");
    let secret_part = TOKEN.split_once(':').map(|(_, s)| s).expect("token has a secret part");
    for text in [
        download.to_string(),
        format!("{download:?}"),
        network.to_string(),
        format!("{network:?}"),
        get_file.to_string(),
        format!("{get_file:?}"),
    ] {
        assert!(!text.contains(secret_part), "token leaked: {text}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
    assert!(network.to_string().contains("onnect"), "the cause is kept: {network}");
}
