//! Contract tests: creating tasks at KIE (keys, models, failures) against FakeKie.

mod kie_support;

use kie_support::*;
use neurocards_core::domain::{AspectRatio, ErrorClass, GenerationOptions};
use neurocards_core::kie::{key_id, KieProvider};
use neurocards_core::ports::KeyOffKind;
use neurocards_core::ports::{GenerationRequest, VideoProvider};
use neurocards_core::secret::Secret;
use neurocards_testkit::fake_kie::{Endpoint, Failure, FakeKie};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn submit_creates_exactly_one_task_with_the_sora_input() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let mut req = request(&fake);
    req.callback_url = Some(Secret::new("https://bot.example/kie/callback"));

    let task = kie.submit(&req).await.expect("task created");

    let creates = fake.create_requests();
    assert_eq!(creates.len(), 1, "one paid task, no duplicate");
    let c = &creates[0];
    assert_eq!(c.key, KEY_A);
    assert_eq!(c.task_id.as_deref(), Some(task.task_id.as_str()));
    assert_eq!(c.body["model"], SORA);
    // The key and model ride along, so that a task whose answer is lost can still be adopted.
    let key = neurocards_core::kie::key_id(&Secret::new(KEY_A));
    assert_eq!(
        c.body["callBackUrl"],
        format!("https://bot.example/kie/callback?key={key}&model=sora-2-image-to-video")
    );
    let input = &c.body["input"];
    assert_eq!(input["n_frames"], "15", "n_frames is a string");
    assert_eq!(input["aspect_ratio"], "portrait");
    assert_eq!(input["remove_watermark"], true);
    assert_eq!(input["image_urls"], serde_json::json!([req.image_url]));
    assert_eq!(input["prompt"], req.prompt.as_str());
    assert_eq!(task.model, SORA);
    assert_eq!(task.key_id, key_id(&Secret::new(KEY_A)));
    assert!(!task.key_id.contains(KEY_A));
}

#[tokio::test]
async fn every_request_carries_a_user_agent() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    kie.submit(&request(&fake)).await.expect("task created");
    let received = fake.jobs_server().received_requests().await.expect("recording on");
    let ua = received[0].headers.get("user-agent").and_then(|v| v.to_str().ok());
    assert!(ua.is_some_and(|u| u.starts_with("neurocards/")), "{ua:?}");
}

#[tokio::test]
async fn billing_failure_on_one_key_switches_to_the_next_key() {
    let fake = FakeKie::start().await;
    fake.fail_key(KEY_A, Failure::billing());
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);

    let task = kie.submit(&request(&fake)).await.expect("key B takes the task");

    let keys: Vec<String> = fake.create_requests().into_iter().map(|c| c.key).collect();
    assert_eq!(keys, [KEY_A, KEY_B]);
    assert_eq!(task.key_id, key_id(&Secret::new(KEY_B)));
    assert_eq!(fake.tasks_created(), 1);
    let health = kie.key_health().await.expect("health");
    let off = health[0].off.expect("key A is out");
    assert_eq!((off.kind, off.class), (KeyOffKind::Blocked, ErrorClass::Billing));
    assert!(health[1].off.is_none());
}

#[tokio::test]
async fn refused_key_is_blocked_and_not_used_again() {
    let fake = FakeKie::start().await;
    fake.fail_key(KEY_A, Failure::auth());
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);

    for _ in 0..3 {
        kie.submit(&request(&fake)).await.expect("key B takes the task");
    }

    let keys: Vec<String> = fake.create_requests().into_iter().map(|c| c.key).collect();
    assert_eq!(keys, [KEY_A, KEY_B, KEY_B, KEY_B], "the 401 key is tried once");
    let off = kie.key_health().await.expect("health")[0].off.expect("key A is out");
    assert_eq!((off.kind, off.class), (KeyOffKind::Blocked, ErrorClass::Config));
}

#[tokio::test]
async fn every_key_out_of_credits_is_a_billing_error() {
    let fake = FakeKie::start().await;
    fake.fail_key(KEY_A, Failure::billing());
    fake.fail_key(KEY_B, Failure::new(402, 402, "Credits insufficient"));
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);

    let err = kie.submit(&request(&fake)).await.expect_err("no key left");

    assert_eq!(err.class, ErrorClass::Billing);
    assert_eq!(fake.create_requests().len(), 2);
    assert_eq!(fake.tasks_created(), 0);
    assert!(!err.message.contains(KEY_A) && !err.message.contains(KEY_B));
}

#[tokio::test]
async fn rate_limited_key_cools_down_and_another_key_takes_the_task() {
    let fake = FakeKie::start().await;
    fake.fail_next(Endpoint::Create, 1, Failure::rate_limited());
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);

    let task = kie.submit(&request(&fake)).await.expect("key B takes the task");

    assert_eq!(task.key_id, key_id(&Secret::new(KEY_B)));
    let off = kie.key_health().await.expect("health")[0].off.expect("key A is out");
    assert_eq!(off.kind, KeyOffKind::Cooling);
}

#[tokio::test]
async fn rate_limit_on_the_only_key_is_a_rate_limit_error_with_a_wait() {
    let fake = FakeKie::start().await;
    fake.fail_next(Endpoint::Create, 1, Failure::new(200, 429, ""));
    let kie = provider(&fake, &[KEY_A], &[SORA]);

    let err = kie.submit(&request(&fake)).await.expect_err("rate limited");

    assert_eq!(err.class, ErrorClass::RateLimit);
    assert!(err.retry_after.is_some_and(|d| d >= Duration::from_secs(10)));
    assert_eq!(fake.create_requests().len(), 1);
}

#[tokio::test]
async fn paused_primary_model_falls_back_to_the_next_model() {
    let fake = FakeKie::start().await;
    fake.pause_model(SORA);
    let kie = provider(&fake, &[KEY_A], &[SORA, KLING, SEEDANCE]);

    let first = kie.submit(&request(&fake)).await.expect("fallback model takes the task");
    let second = kie.submit(&request(&fake)).await.expect("fallback model takes the task");

    assert_eq!(first.model, KLING);
    assert_eq!(second.model, KLING);
    let models: Vec<String> = fake.create_requests().into_iter().map(|c| c.model).collect();
    assert_eq!(models, [SORA, KLING, KLING], "a paused model is skipped for a while");
    let kling_input = &fake.create_requests()[1].body["input"];
    assert_eq!(kling_input["duration"], "15");
    assert_eq!(kling_input["aspect_ratio"], "9:16");
    assert!(
        kie.key_health().await.expect("health")[0].off.is_none(),
        "a paused model is not the key's fault"
    );
}

#[tokio::test]
async fn the_sellers_model_goes_first_with_its_format_and_the_others_stay_fallbacks() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA, KLING, SEEDANCE]);
    let chosen = GenerationRequest {
        model: Some(KLING.to_owned()),
        options: GenerationOptions { aspect: AspectRatio::Landscape, duration_secs: 5 },
        ..request(&fake)
    };

    let task = kie.submit(&chosen).await.expect("created");
    assert_eq!(task.model, KLING);
    let input = &fake.create_requests()[0].body["input"];
    assert_eq!(
        (input["duration"].as_str(), input["aspect_ratio"].as_str()),
        (Some("5"), Some("16:9"))
    );

    // The chosen model paused: the configured order takes over, primary first.
    fake.pause_model(KLING);
    let task = kie.submit(&chosen).await.expect("a fallback takes it");
    assert_eq!(task.model, SORA);
    // A model that is not configured (an order from before a configuration change) is ignored.
    let unknown = GenerationRequest { model: Some("veo-9".to_owned()), ..request(&fake) };
    assert_eq!(kie.submit(&unknown).await.expect("created").model, SORA);
}

#[tokio::test]
async fn code_505_counts_as_paused_and_falls_back() {
    let fake = FakeKie::start().await;
    fake.fail_next(Endpoint::Create, 1, Failure::disabled());
    let kie = provider(&fake, &[KEY_A], &[SORA, SEEDANCE]);

    let task = kie.submit(&request(&fake)).await.expect("fallback model takes the task");

    assert_eq!(task.model, SEEDANCE);
    let input = &fake.create_requests()[1].body["input"];
    assert_eq!(input["duration"], 15);
    assert_eq!(input["reference_image_urls"][0], request(&fake).image_url);
}

#[tokio::test]
async fn unsupported_model_falls_back_too() {
    let fake = FakeKie::start().await;
    fake.fail_next(
        Endpoint::Create,
        1,
        Failure::new(200, 500, "The model name you specified is not supported"),
    );
    let kie = provider(&fake, &[KEY_A], &[SORA, KLING]);
    assert_eq!(kie.submit(&request(&fake)).await.expect("task").model, KLING);
}

#[tokio::test]
async fn every_model_paused_is_a_provider_paused_error() {
    let fake = FakeKie::start().await;
    fake.pause_model(SORA);
    fake.pause_model(KLING);
    let kie = provider(&fake, &[KEY_A], &[SORA, KLING]);

    let err = kie.submit(&request(&fake)).await.expect_err("nothing available");

    assert_eq!(err.class, ErrorClass::ProviderPaused);
    assert_eq!(fake.create_requests().len(), 2);
}

#[tokio::test]
async fn task_level_create_failures_are_returned_after_one_request() {
    let cases = [
        (
            Failure::validation("Invalid prompt: prompt contains prohibited content"),
            ErrorClass::UserViolation,
        ),
        (Failure::validation("prompt exceeds range"), ErrorClass::Config),
        (Failure::maintenance(), ErrorClass::Temporary),
        (Failure::server_error(), ErrorClass::Temporary),
        (Failure::new(502, 0, "<html>bad gateway</html>"), ErrorClass::Temporary),
    ];
    for (failure, class) in cases {
        let fake = FakeKie::start().await;
        fake.fail_next(Endpoint::Create, 1, failure.clone());
        let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA, KLING]);
        let err = kie.submit(&request(&fake)).await.expect_err("fails");
        assert_eq!(err.class, class, "{failure:?}");
        assert_eq!(fake.create_requests().len(), 1, "{failure:?}: no second request");
    }
}

#[tokio::test]
async fn malformed_create_answer_is_never_resent() {
    let fake = FakeKie::start().await;
    fake.malformed_next(Endpoint::Create, 1);
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA, KLING]);

    let err = kie.submit(&request(&fake)).await.expect_err("unreadable");

    assert_eq!(err.class, ErrorClass::Unknown, "the task may exist: not retried");
    assert_eq!(fake.create_requests().len(), 1);
}

#[tokio::test]
async fn slow_create_times_out_as_temporary_without_a_second_request() {
    let fake = FakeKie::start().await;
    fake.delay(Endpoint::Create, Duration::from_secs(3));
    let mut cfg = config(&fake, &[KEY_A, KEY_B], &[SORA]);
    cfg.timeouts.request = Duration::from_millis(300);
    let kie = KieProvider::new(cfg).expect("provider");

    let err = kie.submit(&request(&fake)).await.expect_err("timed out");

    assert_eq!(err.class, ErrorClass::Temporary);
    assert_eq!(fake.create_requests().len(), 1);
}

#[tokio::test]
async fn rate_limiter_waits_instead_of_sending_the_21st_create_within_10_s() {
    let fake = FakeKie::start().await;
    let kie = Arc::new(provider(&fake, &[KEY_A], &[SORA]));
    let req = request(&fake);

    let mut handles = Vec::new();
    for _ in 0..21 {
        let (kie, req) = (kie.clone(), req.clone());
        handles.push(tokio::spawn(async move { kie.submit(&req).await }));
    }
    // Wait (bounded) until the first 20 have reached KIE.
    for _ in 0..200 {
        if fake.create_requests().len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let creates = fake.create_requests();
    assert_eq!(creates.len(), 20, "the 21st create waits for the window");
    assert!(creates.iter().all(|c| c.task_id.is_some()), "no request was answered 429");
    assert_eq!(handles.iter().filter(|h| h.is_finished()).count(), 20);
    assert_eq!(
        kie.key_health().await.expect("health")[0].creates,
        20,
        "the 21st is still waiting for a slot"
    );
    for h in handles {
        h.abort();
    }
}

#[tokio::test]
async fn two_keys_double_the_create_budget() {
    let fake = FakeKie::start().await;
    let kie = Arc::new(provider(&fake, &[KEY_A, KEY_B], &[SORA]));
    let req = request(&fake);

    let tasks = futures::future::join_all((0..40).map(|_| {
        let (kie, req) = (kie.clone(), req.clone());
        async move { kie.submit(&req).await }
    }))
    .await;

    assert!(tasks.iter().all(Result::is_ok));
    let on_a = fake.create_requests().iter().filter(|c| c.key == KEY_A).count();
    assert_eq!(on_a, 20);
    assert_eq!(fake.tasks_created(), 40);
}

#[tokio::test]
async fn provider_debug_output_holds_no_key() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);
    let health = kie.key_health().await.expect("health");
    let dump = format!("{kie:?} {health:?} {:?}", config(&fake, &[KEY_A], &[SORA]));
    assert!(!dump.contains(KEY_A) && !dump.contains(KEY_B), "{dump}");
}
