//! `IDEA_REFINES_PER_HOUR`: the LLM refines at most so many own ideas per user per hour,
//! counted in the database so that replicas share the count; past it the user is told so in
//! their language and sees their idea as written.

use neurocards_core::conversation::ConversationSettings;
use neurocards_core::domain::{Language, Prompt};
use neurocards_core::ports::{PromptEngine, PromptError, PromptRequest};
use neurocards_core::prompts::TemplatePromptEngine;
use neurocards_testkit::bot_harness::{test_settings, BotHarness};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::stores::pg_database;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Counts refinements (each one an LLM call in production).
struct CountingEngine {
    inner: TemplatePromptEngine,
    refines: AtomicU32,
}

#[async_trait::async_trait]
impl PromptEngine for CountingEngine {
    async fn build_prompt<'a>(&self, request: &PromptRequest<'a>) -> Result<Prompt, PromptError> {
        self.inner.build_prompt(request).await
    }

    async fn refine_idea(
        &self,
        idea: &str,
        description: &str,
        language: Language,
    ) -> Result<String, PromptError> {
        self.refines.fetch_add(1, Ordering::SeqCst);
        let refined = self.inner.refine_idea(idea, description, language).await?;
        Ok(format!("REFINED {refined}"))
    }
}

async fn own_idea_step(h: &BotHarness, user: &TgUser) {
    h.onboard(user).await;
    h.press(user, "create").await;
    h.send_photo(user).await;
    h.say(user, "A ceramic mug").await;
    h.press(user, "tpl:own_idea").await;
}

#[tokio::test]
async fn idea_refinement_is_limited_per_user_per_hour_across_replicas() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let engine = Arc::new(CountingEngine {
        inner: TemplatePromptEngine::new(2000),
        refines: AtomicU32::new(0),
    });
    let settings = ConversationSettings { idea_refines_per_hour: 2, ..test_settings() };
    let h = BotHarness::start_with_prompts(pool, settings, engine.clone()).await;
    let other_replica = h.restart().await;
    let user = TgUser::new(801).language("en");
    own_idea_step(&h, &user).await;

    h.say(&user, "The mug on a windowsill at sunrise").await;
    assert!(h.last(&user).text.contains("REFINED"), "{}", h.last(&user).text);
    h.press(&user, "idea:more").await;
    other_replica.say(&user, "steam rising").await;
    assert!(h.last(&user).text.contains("REFINED"));
    assert_eq!(engine.refines.load(Ordering::SeqCst), 2);

    // The third within the hour, on either replica: no LLM call, a clear answer, and the idea
    // as written to approve.
    h.press(&user, "idea:more").await;
    other_replica.say(&user, "and a cat").await;
    assert_eq!(engine.refines.load(Ordering::SeqCst), 2, "the LLM is not called");
    let texts = h.telegram.texts_to(user.id);
    let limited = &texts[texts.len() - 2];
    assert!(
        limited.contains("limit of polished ideas") && limited.contains("2 per hour"),
        "{limited}"
    );
    assert!(limited.contains("60 min") || limited.contains("59 min"), "{limited}");
    let review = h.last(&user);
    assert!(!review.text.contains("REFINED"), "shown as written: {}", review.text);
    assert!(review.text.contains("and a cat"));
    assert!(review.callback_data().contains(&"idea:ok"), "the idea can still be approved");

    // Another user has their own count.
    let other = TgUser::new(802).language("ru");
    own_idea_step(&h, &other).await;
    h.say(&other, "Кружка на подоконнике").await;
    assert!(h.last(&other).text.contains("REFINED"));
    assert_eq!(engine.refines.load(Ordering::SeqCst), 3);

    // The replica that refused counts it.
    let metrics = other_replica.ctx.counters.render();
    assert!(metrics.contains("neurocards_bot_idea_refines_limited_total 1"), "{metrics}");
}

#[tokio::test]
async fn the_refine_limit_message_is_localized() {
    let Some(db) = pg_database().await else { return };
    let pool = db.pool.clone();
    let settings = ConversationSettings { idea_refines_per_hour: 1, ..test_settings() };
    let h = BotHarness::start(pool, settings).await;
    let user = TgUser::new(803).language("ru");
    own_idea_step(&h, &user).await;
    h.say(&user, "Кружка на подоконнике").await;
    h.press(&user, "idea:more").await;
    h.say(&user, "и кот").await;
    let texts = h.telegram.texts_to(user.id);
    let limited = &texts[texts.len() - 2];
    assert!(limited.contains("Лимит доработки идей") && limited.contains("1 в час"), "{limited}");
}
