//! End to end: orders through the real pipeline, on each store, with the fakes.

use neurocards_core::domain::JobStatus;
use neurocards_testkit::both_stores;
use neurocards_testkit::fake_telegram::SentKind;
use neurocards_testkit::system::TestSystem;
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

both_stores! {
    async fn an_order_of_three_videos_delivers_each_video_once(store) {
        let mut sys = TestSystem::start(store).await;
        let (user, order) = sys.user_with_order(5, 3).await;
        assert_eq!(sys.balance(user).await, 2, "3 credits charged at once");
        sys.start_worker();

        let jobs = sys.wait_order(&order, WAIT).await;
        assert!(jobs.iter().all(|j| j.status == JobStatus::Succeeded), "{jobs:?}");
        assert!(
            sys.telegram
                .wait_until(WAIT, |t| t.videos_to(user.get()).len() >= 3
                    && t.texts_to(user.get()).iter().any(|m| m.contains("3")))
                .await
        );

        // The user: three videos, each once, each from its own task, and one progress message.
        let videos = sys.videos_to(user);
        assert_eq!(videos.len(), 3, "{videos:?}");
        assert_eq!(sys.telegram.calls("sendVideo").len(), 3, "no video was sent twice");
        let texts: Vec<_> = sys
            .telegram
            .messages_to(user.get())
            .into_iter()
            .filter(|m| m.kind == SentKind::Text)
            .collect();
        assert_eq!(texts.len(), 1, "one progress message, edited in place: {texts:?}");
        for v in &videos {
            assert!(!v.buttons.is_empty(), "each video has its buttons");
        }

        // KIE: one upload and one task per job, each with the uploaded photo and a prompt.
        let creates = sys.kie.create_requests();
        assert_eq!(creates.len(), 3);
        let tasks: HashSet<_> = creates.iter().filter_map(|c| c.task_id.clone()).collect();
        assert_eq!(tasks.len(), 3);
        assert_eq!(sys.kie.uploads().len(), 3);
        for c in &creates {
            let input = &c.body["input"];
            assert!(input["prompt"].as_str().is_some_and(|p| !p.is_empty()), "{input}");
            assert!(input["image_urls"][0].as_str().is_some(), "{input}");
        }
        assert!(!sys.openai.requests().await.is_empty(), "the LLM wrote the prompts");

        // The credit: 3 spent, nothing refunded.
        assert_eq!(sys.balance(user).await, 2);
        sys.assert_invariants().await;
    }
}
