//! End to end: each error class does what DESIGN.md's table says — attempts, delays, the
//! user's message, and the refund exactly when due.

use neurocards_core::domain::{JobStatus, UserId};
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_kie::{Endpoint, Failure, Scenario};
use neurocards_testkit::system::{SystemOptions, TestSystem};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// One video ordered by a user with 5 credits, run to its end by one worker.
async fn one_video(sys: &mut TestSystem) -> (UserId, JobStatus) {
    let (user, order) = sys.user_with_order(5, 1).await;
    sys.start_worker();
    let jobs = sys.wait_order(&order, WAIT).await;
    // The failure notice and the final progress edit follow the job's final write.
    sys.telegram
        .wait_until(Duration::from_secs(5), |t| {
            t.texts_to(user.get()).iter().any(|m| m.contains("Done") || m.contains("Finished"))
        })
        .await;
    (user, jobs[0].status)
}

fn failure_text(sys: &TestSystem, user: UserId) -> String {
    let texts = sys.telegram.texts_to(user.get());
    let failures: Vec<_> = texts.iter().filter(|t| t.starts_with('❌')).collect();
    assert_eq!(failures.len(), 1, "exactly one failure notice: {texts:?}");
    failures[0].clone()
}

/// Gaps between consecutive createTask requests.
fn create_gaps(sys: &TestSystem) -> Vec<Duration> {
    let creates = sys.kie.create_requests();
    creates.windows(2).map(|w| w[1].received_at.duration_since(w[0].received_at)).collect()
}

/// Each retry waited at least its scheduled delay less the jitter (0.8×), and not wildly more.
fn assert_schedule(gaps: &[Duration], schedule_ms: &[u64]) {
    assert_eq!(gaps.len(), schedule_ms.len(), "{gaps:?}");
    for (gap, ms) in gaps.iter().zip(schedule_ms) {
        let min = Duration::from_millis(ms * 8 / 10);
        assert!(*gap >= min, "retry after {gap:?}, scheduled {ms} ms");
        assert!(*gap < Duration::from_millis(ms + 3000), "retry after {gap:?}, scheduled {ms} ms");
    }
}

both_stores! {
    async fn a_user_violation_is_tried_once_explained_and_refunded(store) {
        let mut sys = TestSystem::start(store).await;
        sys.kie.script(Scenario::FailAfter {
            checks: 0,
            fail_code: "422".into(),
            fail_msg: "Your photo violates the content policy <b>".into(),
        });
        let (user, status) = one_video(&mut sys).await;

        assert_eq!(status, JobStatus::Failed);
        assert_eq!(sys.kie.create_requests().len(), 1, "never retried");
        let text = failure_text(&sys, user);
        assert!(text.contains("content moderation"), "{text}");
        assert!(
            text.contains("violates the content policy &lt;b&gt;"),
            "reason shown, escaped: {text}"
        );
        assert!(text.contains("1 credit returned"), "{text}");
        assert_eq!(sys.balance(user).await, 5, "refunded");
        assert!(sys.videos_to(user).is_empty());
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_temporary_error_is_retried_on_schedule_then_refunded(store) {
        let mut sys = TestSystem::start(store).await;
        sys.kie.fail_next(Endpoint::Create, 4, Failure::server_error());
        let (user, status) = one_video(&mut sys).await;

        assert_eq!(status, JobStatus::Failed);
        assert_eq!(sys.kie.create_requests().len(), 4, "1 attempt + 3 retries");
        assert_schedule(&create_gaps(&sys), &[50, 100, 200]);
        assert_eq!(sys.kie.tasks_created(), 0);
        let text = failure_text(&sys, user);
        assert!(text.contains("did not respond"), "{text}");
        assert!(text.contains("1 credit returned"), "{text}");
        assert_eq!(sys.balance(user).await, 5);
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_temporary_error_that_clears_succeeds_without_refund(store) {
        let mut sys = TestSystem::start(store).await;
        sys.kie.fail_next(Endpoint::Create, 2, Failure::server_error());
        let (user, status) = one_video(&mut sys).await;

        assert_eq!(status, JobStatus::Succeeded);
        assert_eq!(sys.kie.create_requests().len(), 3);
        assert_schedule(&create_gaps(&sys), &[50, 100]);
        assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
        assert_eq!(sys.videos_to(user).len(), 1);
        assert!(!sys.telegram.texts_to(user.get()).iter().any(|t| t.starts_with('❌')));
        assert_eq!(sys.balance(user).await, 4, "charged once, not refunded");
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_rate_limit_is_retried_on_its_schedule_then_refunded(store) {
        let options = SystemOptions {
            rate_limit_delays: "60ms,120ms,240ms".into(),
            ..SystemOptions::default()
        };
        let mut sys = TestSystem::start_with(store, options).await;
        sys.kie.retry_after_header(Some(0));
        sys.kie.fail_next(Endpoint::Create, 4, Failure::rate_limited());
        let (user, status) = one_video(&mut sys).await;

        assert_eq!(status, JobStatus::Failed);
        assert_eq!(sys.kie.create_requests().len(), 4);
        assert_schedule(&create_gaps(&sys), &[60, 120, 240]);
        let text = failure_text(&sys, user);
        assert!(text.contains("overloaded"), "{text}");
        assert_eq!(sys.balance(user).await, 5);
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn billing_with_a_single_key_fails_at_once_and_refunds(store) {
        let mut sys = TestSystem::start(store).await;
        sys.kie.fail_next(Endpoint::Create, 1, Failure::billing());
        let (user, status) = one_video(&mut sys).await;

        assert_eq!(status, JobStatus::Failed);
        assert_eq!(sys.kie.create_requests().len(), 1);
        let text = failure_text(&sys, user);
        assert!(text.contains("try again later"), "{text}");
        assert_eq!(sys.balance(user).await, 5);
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_configuration_error_fails_at_once_and_refunds(store) {
        let mut sys = TestSystem::start(store).await;
        let failure = Failure::new(200, 422, "The input field is required");
        sys.kie.fail_next(Endpoint::Create, 1, failure);
        let (user, status) = one_video(&mut sys).await;

        assert_eq!(status, JobStatus::Failed);
        assert_eq!(sys.kie.create_requests().len(), 1);
        let text = failure_text(&sys, user);
        assert!(text.contains("contact support"), "{text}");
        assert_eq!(sys.balance(user).await, 5);
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_paused_model_falls_back_to_the_next_model(store) {
        let options = SystemOptions {
            models: vec!["sora-2-image-to-video".into(), "kling-3.0/video".into()],
            ..SystemOptions::default()
        };
        let mut sys = TestSystem::start_with(store, options).await;
        sys.kie.pause_model("sora-2-image-to-video");
        let (user, order) = sys.user_with_order(5, 1).await;
        sys.start_worker();
        let jobs = sys.wait_order(&order, WAIT).await;

        assert_eq!(jobs[0].status, JobStatus::Succeeded);
        let models: Vec<String> = sys.kie.create_requests().into_iter().map(|c| c.model).collect();
        assert_eq!(models, ["sora-2-image-to-video", "kling-3.0/video"]);
        let task = sys.job(order.jobs[0]).await.progress.provider_task.expect("task recorded");
        assert_eq!(task.model, "kling-3.0/video");
        assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 1).await);
        assert_eq!(sys.balance(user).await, 4);
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_key_out_of_credits_hands_the_work_to_the_other_key(store) {
        let options = SystemOptions {
            kie_keys: vec!["kie-key-empty".into(), "kie-key-funded".into()],
            ..SystemOptions::default()
        };
        let mut sys = TestSystem::start_with(store, options).await;
        sys.kie.fail_key("kie-key-empty", Failure::billing());
        let (user, order) = sys.user_with_order(5, 3).await;
        sys.start_worker();
        let jobs = sys.wait_order(&order, WAIT).await;

        assert!(jobs.iter().all(|j| j.status == JobStatus::Succeeded), "{jobs:?}");
        let creates = sys.kie.create_requests();
        let empty = creates.iter().filter(|c| c.key == "kie-key-empty").count()
            + sys.kie.uploads().iter().filter(|u| u.key == "kie-key-empty").count();
        // Requests already in flight when the first 402 arrives may still go out on the empty key
        // (at most one per job); after that answer the key is blocked and never used again.
        assert!(
            (1..=3).contains(&empty),
            "the empty key is used at most once per job, used {empty}"
        );
        let created: Vec<_> = creates.iter().filter(|c| c.task_id.is_some()).collect();
        assert_eq!(created.len(), 3);
        assert!(created.iter().all(|c| c.key == "kie-key-funded"));
        assert!(sys.telegram.wait_until(WAIT, |t| t.videos_to(user.get()).len() == 3).await);
        assert_eq!(sys.balance(user).await, 2);
        sys.assert_invariants().await;
    }
}

both_stores! {
    async fn a_photo_the_worker_cannot_use_is_a_photo_problem_not_moderation(store) {
        use neurocards_core::domain::ImageMime;
        use neurocards_core::ports::{NewProduct, PhotoRef};
        let mut sys = TestSystem::start(store).await;
        // A file that is not an image, and a file id Telegram does not know.
        let not_an_image = sys.telegram.add_file(None, b"%PDF-1.7 not a photo".to_vec());
        let mut cases = Vec::new();
        for (file_id, expected) in [(not_an_image, "not a JPEG, PNG or WebP"), ("gone-file".to_owned(), "no longer available")] {
            let user = sys.funded_user(5).await;
            let product = NewProduct {
                user_id: user,
                photo: Some(PhotoRef { telegram_file_id: file_id, mime: ImageMime::Jpeg }),
                marketplace_url: None,
                description: "A ceramic mug".to_owned(),
            };
            let product = sys.products.create(&product).await.expect("product");
            let order = sys.order(user, product, 1).await;
            cases.push((user, order, expected));
        }
        sys.start_worker();
        for (user, order, expected) in cases {
            let jobs = sys.wait_order(&order, WAIT).await;
            assert_eq!(jobs[0].status, JobStatus::Failed);
            assert!(
                sys.telegram.wait_until(Duration::from_secs(5), |t| {
                    t.texts_to(user.get()).iter().any(|m| m.starts_with('❌'))
                }).await,
                "the user is told"
            );
            let text = failure_text(&sys, user);
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains("moderation"), "not a content violation: {text}");
            assert!(text.contains("1 credit returned"), "{text}");
            let notice = sys.telegram.messages_to(user.get()).into_iter()
                .find(|m| m.text.starts_with('❌')).expect("notice");
            assert_eq!(notice.callback_data(), ["create", "menu"], "send another photo, not Retry");
            assert_eq!(sys.balance(user).await, 5, "refunded");
        }
        assert!(sys.kie.create_requests().is_empty(), "nothing was generated");
        sys.assert_invariants().await;
    }
}
