//! Contract tests of the OpenAI client against FakeOpenAi: what is sent, and how every
//! answer is classified.

use neurocards_core::domain::{ImageData, ImageMime};
use neurocards_core::http::HttpTimeouts;
use neurocards_core::openai::{ChatInput, OpenAiClient, OpenAiError};
use neurocards_core::secret::Secret;
use neurocards_testkit::fake_openai::{FakeOpenAi, OpenAiReply, DEFAULT_VIDEO_PROMPT};
use std::time::Duration;

const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F'];

fn photo() -> ImageData {
    ImageData { bytes: JPEG.into(), mime: ImageMime::Jpeg }
}

async fn ask(client: &OpenAiClient, image: Option<&ImageData>) -> Result<String, OpenAiError> {
    let input = ChatInput { system: "SYSTEM INSTRUCTIONS", user_text: "USER TEXT", image };
    client.prompt_answer(&input).await.map(|a| a.video_prompt)
}

#[tokio::test]
async fn success_sends_the_photo_as_a_data_url_with_model_and_instructions() {
    let fake = FakeOpenAi::start().await;
    let mut config = fake.config();
    config.model = "gpt-test-vision".into();
    let client = OpenAiClient::new(config).expect("client");

    let prompt = ask(&client, Some(&photo())).await.expect("structured answer");
    assert_eq!(prompt, DEFAULT_VIDEO_PROMPT);

    let requests = fake.requests().await;
    assert_eq!(requests.len(), 1, "exactly one HTTP request per call");
    let r = &requests[0];
    assert_eq!(r.model(), Some("gpt-test-vision"));
    assert_eq!(r.system_text(), "SYSTEM INSTRUCTIONS");
    assert_eq!(r.user_text(), "USER TEXT");
    assert_eq!(r.response_format_type(), Some("json_schema"));
    let urls = r.image_urls();
    assert_eq!(urls, vec!["data:image/jpeg;base64,/9j/4AAQSkZJRg==".to_owned()]);
    assert!(!r.body.to_string().contains("api.telegram.org"));
    assert!(r.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer ")));
}

#[tokio::test]
async fn a_request_without_a_photo_has_no_image_part() {
    let fake = FakeOpenAi::start().await;
    ask(&fake.client(), None).await.expect("answer");
    assert!(fake.requests().await[0].image_urls().is_empty());
}

#[tokio::test]
async fn a_base_url_with_a_trailing_slash_reaches_the_same_endpoint() {
    let fake = FakeOpenAi::start().await;
    let mut config = fake.config();
    config.base_url = format!("{}/", fake.base_url()).parse().expect("url");
    let client = OpenAiClient::new(config).expect("client");
    ask(&client, None).await.expect("answer");
    assert_eq!(fake.requests().await.len(), 1);
}

#[tokio::test]
async fn refusal_is_not_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::Refusal("I can't help with that.".into()));
    let err = ask(&fake.client(), None).await.expect_err("refused");
    assert_eq!(err, OpenAiError::Refused("I can't help with that.".into()));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn finish_reason_length_is_a_truncated_answer() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::Truncated);
    assert_eq!(ask(&fake.client(), None).await, Err(OpenAiError::Truncated));
}

#[tokio::test]
async fn content_filter_is_told_apart() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::ContentFilter);
    assert_eq!(ask(&fake.client(), None).await, Err(OpenAiError::ContentFiltered));
}

#[tokio::test]
async fn insufficient_quota_is_config_and_not_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::InsufficientQuota);
    let err = ask(&fake.client(), None).await.expect_err("quota");
    assert!(
        matches!(&err, OpenAiError::InsufficientQuota { code, .. } if code == "insufficient_quota")
    );
    assert!(!err.is_retryable());
    assert!(err.is_config());
}

#[tokio::test]
async fn rate_limit_is_retryable_with_its_retry_after() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::RateLimited { retry_after_secs: 7 });
    let err = ask(&fake.client(), None).await.expect_err("rate limited");
    assert!(matches!(
        err,
        OpenAiError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    assert!(err.is_retryable());
    assert!(!err.is_config());
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let fake = FakeOpenAi::start().await;
    for status in [500, 502, 503] {
        fake.push(OpenAiReply::ServerError(status));
        let err = ask(&fake.client(), None).await.expect_err("server error");
        assert!(matches!(err, OpenAiError::Server { status: s, .. } if s == status));
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized_and_never_echoed() {
    let fake = FakeOpenAi::start().await;
    let mut config = fake.config();
    config.api_key = Secret::new("sk-wrong-key-12345");
    let client = OpenAiClient::new(config).expect("client");
    let err = ask(&client, None).await.expect_err("401");
    assert!(matches!(err, OpenAiError::Unauthorized { status: 401, .. }));
    assert!(err.is_config());
    assert!(!err.to_string().contains("sk-wrong-key-12345"));
    assert!(!format!("{client:?}").contains("sk-wrong-key-12345"));
}

#[tokio::test]
async fn malformed_bodies_are_malformed_and_prose_is_the_prompt() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::MalformedBody);
    fake.push(OpenAiReply::Content(r#"{"video_prompt": "a kettle on a tab"#.into()));
    fake.push(OpenAiReply::Content("A kettle on a table, slow push-in.".into()));
    for _ in 0..2 {
        let err = ask(&fake.client(), None).await.expect_err("malformed");
        assert!(matches!(err, OpenAiError::Malformed(_)), "{err:?}");
    }
    // Plain text from an endpoint that ignores `response_format`: the prompt engine validates it.
    let answer = ask(&fake.client(), None).await.expect("prose is an answer");
    assert_eq!(answer, "A kettle on a table, slow push-in.");
}

#[tokio::test]
async fn a_slow_answer_times_out_as_retryable() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::Slow { delay: Duration::from_secs(3), then: Box::default() });
    let mut config = fake.config();
    config.timeouts =
        HttpTimeouts { connect: Duration::from_secs(1), request: Duration::from_millis(300) };
    let client = OpenAiClient::new(config).expect("client");
    let err = ask(&client, None).await.expect_err("timeout");
    assert_eq!(err, OpenAiError::Timeout);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn notes_come_back_apart_from_the_prompt() {
    let fake = FakeOpenAi::start().await;
    fake.push(OpenAiReply::Prompt {
        video_prompt: "A kettle turning slowly on black marble.".into(),
        notes: "Replaced the celebrity with a fictional host.".into(),
    });
    let input = ChatInput { system: "s", user_text: "u", image: None };
    let answer = fake.client().prompt_answer(&input).await.expect("answer");
    assert_eq!(answer.video_prompt, "A kettle turning slowly on black marble.");
    assert_eq!(answer.notes.as_deref(), Some("Replaced the celebrity with a fictional host."));
}
