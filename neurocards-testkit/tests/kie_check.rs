//! Contract tests: polling tasks, reading results and failures, uploads and credits, against
//! FakeKie.

mod kie_support;

use kie_support::*;
use neurocards_core::domain::{ErrorClass, ImageData, ImageMime};
use neurocards_core::ports::{TaskState, VideoProvider};
use neurocards_testkit::fake_kie::{Endpoint, Failure, FakeKie, Scenario, VIDEO_BYTES};
use std::sync::Arc;

async fn poll_until_final(
    kie: &dyn VideoProvider,
    task: &neurocards_core::domain::ProviderTaskRef,
) -> (TaskState, u32) {
    for n in 1..=20 {
        let state = kie.check(task).await.expect("status read");
        if state.is_final() {
            return (state, n);
        }
    }
    panic!("task never finished");
}

#[tokio::test]
async fn tasks_are_polled_with_the_key_that_created_them_until_success() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::SucceedAfter(2));
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);
    let first = kie.submit(&request(&fake)).await.expect("task");
    let second = kie.submit(&request(&fake)).await.expect("task");
    assert_ne!(first.key_id, second.key_id, "round robin");

    for task in [&first, &second] {
        let (state, checks) = poll_until_final(&kie, task).await;
        assert_eq!(checks, 3, "two pending answers, then success");
        let url = fake.video_url(&task.task_id);
        assert_eq!(state, TaskState::Succeeded { video_urls: vec![url.clone()] });
        let video = reqwest::get(&url).await.expect("download").bytes().await.expect("body");
        assert_eq!(&video[..], VIDEO_BYTES);
    }
    for s in fake.status_requests() {
        let creator = fake.task(&s.task_id).expect("known task").key;
        assert_eq!(s.key, creator, "polled with the creating key");
    }
}

#[tokio::test]
async fn pending_states_report_progress() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::SucceedAfter(3));
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let task = kie.submit(&request(&fake)).await.expect("task");
    let mut seen = Vec::new();
    for _ in 0..3 {
        match kie.check(&task).await.expect("status") {
            TaskState::Pending { progress } => seen.push(progress.unwrap_or(0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen[2] > 0);
}

#[tokio::test]
async fn failed_tasks_are_classified_from_fail_code_and_message() {
    let cases = [
        ("422", "Invalid prompt: prompt contains prohibited content", ErrorClass::UserViolation),
        ("500", "Internal Error, Please try again later.", ErrorClass::Temporary),
        ("500", "upstream API service timed out", ErrorClass::Temporary),
        (
            "500",
            "This content may violate our guardrails concerning similarity to third-party content.",
            ErrorClass::UserViolation,
        ),
        ("", "", ErrorClass::Unknown),
    ];
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    for (code, msg, class) in cases {
        fake.script(Scenario::FailAfter {
            checks: 1,
            fail_code: code.into(),
            fail_msg: msg.into(),
        });
        let task = kie.submit(&request(&fake)).await.expect("task");
        let (state, _) = poll_until_final(&kie, &task).await;
        match state {
            TaskState::Failed(e) => {
                assert_eq!(e.class, class, "{msg}");
                if !code.is_empty() {
                    assert_eq!(e.code.as_deref(), Some(code));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn status_errors_are_classified_and_do_not_end_the_task() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    fake.script(Scenario::SucceedAfter(0));
    let task = kie.submit(&request(&fake)).await.expect("task");

    fake.fail_next(Endpoint::Status, 1, Failure::rate_limited());
    assert_eq!(kie.check(&task).await.expect_err("429").class, ErrorClass::RateLimit);
    fake.fail_next(Endpoint::Status, 1, Failure::server_error());
    assert_eq!(kie.check(&task).await.expect_err("500").class, ErrorClass::Temporary);
    fake.malformed_next(Endpoint::Status, 1);
    assert_eq!(kie.check(&task).await.expect_err("garbage").class, ErrorClass::Temporary);

    assert!(matches!(kie.check(&task).await.expect("ok now"), TaskState::Succeeded { .. }));
}

#[tokio::test]
async fn an_unknown_task_is_an_error_not_a_pending_state() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let mut task = kie.submit(&request(&fake)).await.expect("task");
    task.task_id = "task_that_does_not_exist".into();
    let err = kie.check(&task).await.expect_err("not found");
    assert_eq!(err.code.as_deref(), Some("404"));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn many_concurrent_checks_stay_within_the_per_second_budget() {
    let fake = FakeKie::start().await;
    fake.script(Scenario::Never);
    let kie = Arc::new(provider(&fake, &[KEY_A], &[SORA]));
    let task = kie.submit(&request(&fake)).await.expect("task");

    // 25 checks at once on one key: the fake answers 429 beyond 10 per second, so every check
    // succeeding proves the client waited.
    let results = futures::future::join_all((0..25).map(|_| {
        let (kie, task) = (kie.clone(), task.clone());
        async move { kie.check(&task).await }
    }))
    .await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fake.status_requests().len(), 25);
}

#[tokio::test]
async fn photo_is_uploaded_as_a_file_named_for_its_format() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let image = jpeg();

    let url = kie.upload_image(&image, "job-42").await.expect("uploaded");

    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1);
    let u = &uploads[0];
    assert_eq!(u.key, KEY_A);
    assert!(u.file_name.starts_with("job-42-") && u.file_name.ends_with(".jpg"), "{}", u.file_name);
    assert_eq!(u.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(u.upload_path.as_deref(), Some("neurocards"));
    assert_eq!(u.bytes, image.bytes.to_vec());
    assert!(url.starts_with(fake.upload_url().as_str()), "{url}");
    let served = reqwest::get(&url).await.expect("fetch").bytes().await.expect("body");
    assert_eq!(served, image.bytes);

    let png = ImageData { bytes: b"\x89PNG\r\n\x1a\nrest".to_vec().into(), mime: ImageMime::Png };
    let url = kie.upload_image(&png, "job-43").await.expect("uploaded");
    assert!(url.ends_with(".png"));
}

#[tokio::test]
async fn the_submitted_image_is_the_uploaded_url() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let url = kie.upload_image(&jpeg(), "job-1").await.expect("uploaded");
    let mut req = request(&fake);
    req.image_url = url.clone();
    kie.submit(&req).await.expect("task");
    assert_eq!(fake.create_requests()[0].body["input"]["image_urls"][0], url);
}

#[tokio::test]
async fn upload_switches_key_when_one_is_refused() {
    let fake = FakeKie::start().await;
    fake.fail_key(KEY_A, Failure::auth());
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);
    kie.upload_image(&jpeg(), "job-1").await.expect("key B uploads");
    let keys: Vec<String> = fake.uploads().into_iter().map(|u| u.key).collect();
    assert_eq!(keys, [KEY_A, KEY_B]);
}

#[tokio::test]
async fn upload_failures_are_classified() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    fake.fail_next(Endpoint::Upload, 1, Failure::server_error());
    assert_eq!(kie.upload_image(&jpeg(), "j").await.expect_err("500").class, ErrorClass::Temporary);
    fake.malformed_next(Endpoint::Upload, 1);
    assert_eq!(
        kie.upload_image(&jpeg(), "j").await.expect_err("garbage").class,
        ErrorClass::Temporary
    );
    assert!(kie.upload_image(&jpeg(), "j").await.is_ok());
}

#[tokio::test]
async fn oversized_photo_is_refused_without_a_request() {
    let fake = FakeKie::start().await;
    let kie = provider(&fake, &[KEY_A], &[SORA]);
    let big =
        ImageData { bytes: vec![0u8; ImageMime::MAX_BYTES + 1].into(), mime: ImageMime::Jpeg };
    let err = kie.upload_image(&big, "job").await.expect_err("too big");
    assert_eq!(err.class, ErrorClass::UserViolation);
    assert!(fake.uploads().is_empty());
}

#[tokio::test]
async fn credits_are_read_per_key_and_an_unreadable_balance_is_an_error() {
    let fake = FakeKie::start().await;
    fake.set_credits(42.5);
    fake.fail_key(KEY_B, Failure::auth());
    let kie = provider(&fake, &[KEY_A, KEY_B], &[SORA]);

    let credits = kie.credits().await;

    assert_eq!(credits.len(), 2);
    assert_eq!(credits[0].credits, Ok(42.5));
    let err = credits[1].credits.clone().expect_err("refused key");
    assert_eq!(err.class, ErrorClass::Config);
}
