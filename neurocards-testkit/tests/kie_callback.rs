//! Contract tests: KIE callbacks (signed, unsigned, duplicated, missing) against FakeKie. The
//! adapter only verifies a callback and names its task; the state always comes from a poll.

mod kie_support;

use kie_support::*;
use neurocards_core::domain::ErrorClass;
use neurocards_core::kie::{KieProvider, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use neurocards_core::ports::{CallbackError, CallbackHeaders, TaskState, VideoProvider};
use neurocards_core::secret::Secret;
use neurocards_testkit::fake_kie::{CallbackMode, FakeKie, Scenario};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const HMAC: &str = "webhook-hmac-key";

/// A receiver standing in for the bot's `/kie/callback`.
async fn receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/kie/callback"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"code":200,"msg":"success"})),
        )
        .mount(&server)
        .await;
    server
}

fn headers_of(req: &Request) -> CallbackHeaders {
    let get = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    CallbackHeaders { timestamp: get(TIMESTAMP_HEADER), signature: get(SIGNATURE_HEADER) }
}

fn signed_provider(fake: &FakeKie) -> KieProvider {
    let mut cfg = config(fake, &[KEY_A], &[SORA]);
    cfg.callback_hmac_key = Some(Secret::new(HMAC));
    KieProvider::new(cfg).expect("provider")
}

async fn received(server: &MockServer, at_least: usize) -> Vec<Request> {
    for _ in 0..250 {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= at_least {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn a_signed_callback_names_its_task() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::SucceedAfter(0));
    let kie = signed_provider(&fake);
    let bot = receiver().await;
    let task = kie.submit(&request(&fake)).await.expect("task");

    let status = fake
        .send_callback(&format!("{}/kie/callback", bot.uri()), &task.task_id, Some(HMAC))
        .await
        .expect("delivered");
    assert_eq!(status, 200);

    let req = &received(&bot, 1).await[0];
    let named = kie.callback_task_id(&headers_of(req), &req.body).expect("verified");
    assert_eq!(named, task.task_id);
}

#[tokio::test]
async fn a_failed_task_callback_names_its_task_and_the_poll_classifies_it() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::FailAfter {
        checks: 0,
        fail_code: "422".into(),
        fail_msg: "CONTENT_POLICY_BLOCKED: the input was flagged as sensitive.".into(),
    });
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let task = kie.submit(&request(&fake)).await.expect("task");
    let body = serde_json::to_vec(&fake.callback_body(&task.task_id).expect("task")).expect("json");
    assert_eq!(fake.callback_body(&task.task_id).expect("task")["code"], 501);

    let named = kie.callback_task_id(&CallbackHeaders::default(), &body).expect("verified");
    assert_eq!(named, task.task_id);

    match kie.check(&task).await.expect("status") {
        TaskState::Failed(e) => assert_eq!(e.class, ErrorClass::UserViolation),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_callbacks_are_refused_when_a_key_is_set() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::SucceedAfter(0));
    let kie = signed_provider(&fake);
    let bot = receiver().await;
    let task = kie.submit(&request(&fake)).await.expect("task");
    let url = format!("{}/kie/callback", bot.uri());
    fake.send_callback(&url, &task.task_id, None).await.expect("delivered");
    fake.send_callback(&url, &task.task_id, Some("another-key")).await.expect("delivered");

    let reqs = received(&bot, 2).await;
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        let err = kie.callback_task_id(&headers_of(req), &req.body).expect_err("refused");
        assert!(matches!(err, CallbackError::BadSignature(_)), "{err:?}");
    }
}

#[tokio::test]
async fn duplicate_callbacks_name_the_same_task() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::SucceedAfterTime(Duration::from_millis(50)));
    fake.auto_callbacks(CallbackMode::Twice, Some(HMAC));
    let kie = signed_provider(&fake);
    let bot = receiver().await;
    let mut req = request(&fake);
    req.callback_url = Some(Secret::new(format!("{}/kie/callback", bot.uri())));
    let task = kie.submit(&req).await.expect("task");

    let reqs = received(&bot, 2).await;

    assert_eq!(reqs.len(), 2, "KIE may call twice");
    let a = kie.callback_task_id(&headers_of(&reqs[0]), &reqs[0].body).expect("first");
    let b = kie.callback_task_id(&headers_of(&reqs[1]), &reqs[1].body).expect("second");
    assert_eq!(a, b);
    assert_eq!(a, task.task_id);
    assert_eq!(fake.task(&task.task_id).expect("task").callbacks_sent, 2);
}

#[tokio::test]
async fn a_missing_callback_leaves_polling_to_find_the_result() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::SucceedAfterTime(Duration::from_millis(30)));
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let bot = receiver().await;
    let mut req = request(&fake);
    req.callback_url = Some(Secret::new(format!("{}/kie/callback", bot.uri())));
    let task = kie.submit(&req).await.expect("task");

    tokio::time::sleep(Duration::from_millis(150)).await;

    assert!(bot.received_requests().await.unwrap_or_default().is_empty());
    assert!(matches!(kie.check(&task).await.expect("status"), TaskState::Succeeded { .. }));
}

#[tokio::test]
async fn malformed_callback_bodies_are_refused() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    for body in [&b"not json"[..], br#"{"code":200}"#, br#"{"data":{"taskId":""}}"#, b"[]"] {
        let err = kie.callback_task_id(&CallbackHeaders::default(), body).expect_err("refused");
        assert!(matches!(err, CallbackError::Malformed(_)), "{err:?}");
    }
}
