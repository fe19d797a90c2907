//! Contract tests of the prompt engine with FakeOpenAi: the LLM's prompt is used when it is
//! good, and every failure of the LLM ends in the template prompt, never in a stopped job.

use neurocards_core::domain::{ImageData, ImageMime, Language, Prompt, TemplateId};
use neurocards_core::ports::{PromptEngine, PromptError, PromptRequest};
use neurocards_core::prompts::{LlmPromptEngine, TemplatePromptEngine, PRODUCT_FIDELITY};
use neurocards_core::templates::{Template, TemplateCatalogue};
use neurocards_testkit::fake_openai::{FakeOpenAi, OpenAiReply, DEFAULT_VIDEO_PROMPT};
use std::time::Duration;

const DESCRIPTION: &str = "Blue ceramic kettle, 1.7 l, keeps water hot for an hour";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn template(id: &str) -> Template {
    TemplateCatalogue::builtin()
        .get(&TemplateId::parse(id).expect("valid id"))
        .cloned()
        .expect("built-in template")
}

fn photo() -> ImageData {
    ImageData { bytes: PNG.into(), mime: ImageMime::Png }
}

fn request<'a>(t: &'a Template, image: Option<&'a ImageData>, variant: u32) -> PromptRequest<'a> {
    PromptRequest {
        template: t,
        image,
        description: DESCRIPTION,
        wishes: Some("рыжая девушка, немного юмора"),
        user_prompt: None,
        language: Language::Ru,
        variant,
    }
}

fn engine(fake: &FakeOpenAi) -> LlmPromptEngine {
    LlmPromptEngine::new(Some(fake.client()), Prompt::MAX_CHARS)
}

/// The template prompt the engine must fall back to for `t`.
async fn template_prompt(t: &Template, variant: u32) -> Prompt {
    TemplatePromptEngine::new(Prompt::MAX_CHARS)
        .build_prompt(&request(t, None, variant))
        .await
        .expect("template prompt")
}

#[tokio::test]
async fn llm_prompt_is_used_with_the_photo_instructions_and_wishes() {
    let fake = FakeOpenAi::start().await;
    let ugc = template("ugc");
    let image = photo();
    let prompt = engine(&fake).build_prompt(&request(&ugc, Some(&image), 1)).await.expect("prompt");

    assert_eq!(prompt.as_str(), format!("{DEFAULT_VIDEO_PROMPT} {PRODUCT_FIDELITY}"));
    let requests = fake.requests().await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert!(r.system_text().starts_with(ugc.instructions.ru.trim_start()), "template instructions");
    assert!(r.system_text().contains("\"video_prompt\""), "structured answer asked for");
    let user = r.user_text();
    assert!(user.contains(DESCRIPTION));
    assert!(user.contains("рыжая девушка, немного юмора"));
    assert!(user.contains("Russian"));
    assert_eq!(r.image_urls().len(), 1);
    assert!(r.image_urls()[0].starts_with("data:image/png;base64,"));
}

#[tokio::test]
async fn english_users_get_the_english_instructions() {
    let fake = FakeOpenAi::start().await;
    let ad = template("ad");
    let mut req = request(&ad, None, 1);
    req.language = Language::En;
    engine(&fake).build_prompt(&req).await.expect("prompt");
    let r = &fake.requests().await[0];
    assert!(r.system_text().starts_with(ad.instructions.en.trim_start()));
    assert!(r.user_text().contains("English"));
}

#[tokio::test]
async fn every_llm_failure_falls_back_to_the_template_prompt() {
    let scenarios = [
        OpenAiReply::Refusal("I can't help with that.".into()),
        OpenAiReply::Truncated,
        OpenAiReply::ContentFilter,
        OpenAiReply::InsufficientQuota,
        OpenAiReply::RateLimited { retry_after_secs: 30 },
        OpenAiReply::ServerError(500),
        OpenAiReply::ServerError(503),
        OpenAiReply::Unauthorized,
        OpenAiReply::MalformedBody,
        OpenAiReply::Content("Sure! Here is a great video idea for you.".into()),
    ];
    let ugc = template("ugc");
    let expected = template_prompt(&ugc, 2).await;
    for reply in scenarios {
        let fake = FakeOpenAi::start().await;
        fake.set_default(reply.clone());
        let prompt = engine(&fake)
            .build_prompt(&request(&ugc, Some(&photo()), 2))
            .await
            .unwrap_or_else(|e| panic!("{reply:?} must fall back, got {e}"));
        assert_eq!(prompt, expected, "{reply:?} gives the template prompt");
        assert_eq!(fake.requests().await.len(), 1, "{reply:?}: one call, no hidden retries");
    }
}

#[tokio::test]
async fn a_slow_llm_falls_back_instead_of_stalling_the_job() {
    let fake = FakeOpenAi::start().await;
    fake.set_default(OpenAiReply::Slow { delay: Duration::from_secs(3), then: Box::default() });
    let mut config = fake.config();
    config.timeouts.request = Duration::from_millis(300);
    let client = neurocards_core::openai::OpenAiClient::new(config).expect("client");
    let ad = template("ad");
    let prompt = LlmPromptEngine::new(Some(client), Prompt::MAX_CHARS)
        .build_prompt(&request(&ad, None, 1))
        .await
        .expect("fallback");
    assert_eq!(prompt, template_prompt(&ad, 1).await);
}

#[tokio::test]
async fn answers_that_leak_instructions_or_chatter_are_not_sent_to_the_provider() {
    let ugc = template("ugc");
    let quoted =
        format!("{} {}", DEFAULT_VIDEO_PROMPT, ugc.instructions.ru.lines().next().unwrap_or(""));
    let leaks = [
        "As an AI language model, I suggest: a woman holds a kettle in a kitchen and smiles.".to_owned(),
        format!("Текст озвучки: «Привет!»\nОписание блогера: девушка\nМини-промпт: {DEFAULT_VIDEO_PROMPT}"),
        format!("## Voice-over\nHi!\n## Scene\n{DEFAULT_VIDEO_PROMPT}"),
        quoted,
        "Kettle.".to_owned(),
    ];
    let expected = template_prompt(&ugc, 1).await;
    for leak in leaks {
        let fake = FakeOpenAi::start().await;
        fake.set_default(OpenAiReply::prompt(leak.clone()));
        let prompt = engine(&fake).build_prompt(&request(&ugc, None, 1)).await.expect("prompt");
        assert_eq!(prompt, expected, "not used: {leak}");
    }
}

#[tokio::test]
async fn a_long_llm_prompt_is_cut_to_the_provider_limit() {
    let fake = FakeOpenAi::start().await;
    fake.set_default(OpenAiReply::prompt("A slow orbit around the kettle on marble. ".repeat(200)));
    let ugc = template("ugc");
    let engine = LlmPromptEngine::new(Some(fake.client()), 1_000);
    let prompt = engine.build_prompt(&request(&ugc, None, 1)).await.expect("prompt");
    assert!(prompt.as_str().chars().count() <= 1_000);
    assert!(prompt.as_str().starts_with("A slow orbit around the kettle"));
    assert!(prompt.as_str().ends_with(PRODUCT_FIDELITY));
}

#[tokio::test]
async fn without_a_key_no_llm_is_called_and_the_template_prompt_is_used() {
    let ugc = template("ugc");
    let engine = LlmPromptEngine::new(None, Prompt::MAX_CHARS);
    assert!(!engine.has_llm());
    let prompt = engine.build_prompt(&request(&ugc, Some(&photo()), 3)).await.expect("prompt");
    assert_eq!(prompt, template_prompt(&ugc, 3).await);
    assert!(prompt.as_str().contains(DESCRIPTION));
}

#[tokio::test]
async fn variants_of_one_order_ask_for_different_videos() {
    let fake = FakeOpenAi::start().await;
    let ugc = template("ugc");
    let engine = engine(&fake);
    for variant in 1..=3 {
        engine.build_prompt(&request(&ugc, None, variant)).await.expect("prompt");
    }
    let texts: Vec<String> = fake.requests().await.iter().map(|r| r.user_text()).collect();
    for (k, text) in texts.iter().enumerate() {
        assert!(text.contains(&format!("This is video {}", k + 1)), "{text}");
        assert!(text.contains(&ugc.settings[k]), "variant {} gets its own setting", k + 1);
    }

    fake.set_default(OpenAiReply::ServerError(500));
    let a = engine.build_prompt(&request(&ugc, None, 1)).await.expect("fallback");
    let b = engine.build_prompt(&request(&ugc, None, 2)).await.expect("fallback");
    assert_ne!(a, b, "fallback prompts of one order differ too");
}

#[tokio::test]
async fn an_approved_own_idea_is_used_without_asking_the_llm_again() {
    let fake = FakeOpenAi::start().await;
    let own = template("own_idea");
    let image = photo();
    let mut req = request(&own, Some(&image), 1);
    req.user_prompt = Some("The kettle sails across a calm lake at dawn, steam rising");
    let prompt = engine(&fake).build_prompt(&req).await.expect("prompt");
    assert!(prompt.as_str().contains("The kettle sails across a calm lake at dawn, steam rising."));
    assert!(fake.requests().await.is_empty());
}

#[tokio::test]
async fn refine_idea_returns_the_llm_text_for_the_user_to_approve() {
    let fake = FakeOpenAi::start().await;
    let refined = "Чайник плывёт по спокойному озеру на рассвете, камера медленно облетает его, \
                   из носика поднимается пар.";
    fake.push(OpenAiReply::prompt(refined));
    let text = engine(&fake)
        .refine_idea("чайник плывёт по озеру", DESCRIPTION, Language::Ru)
        .await
        .expect("refined");
    assert_eq!(text, refined.split_whitespace().collect::<Vec<_>>().join(" "));
    let r = &fake.requests().await[0];
    let own = template("own_idea");
    assert!(r.system_text().starts_with(own.instructions.ru.trim_start()));
    assert!(r.system_text().contains("Russian"));
    assert!(r.user_text().contains("чайник плывёт по озеру"));
    assert!(r.user_text().contains(DESCRIPTION));
}

#[tokio::test]
async fn refine_idea_offers_the_idea_as_written_when_the_llm_fails() {
    let fake = FakeOpenAi::start().await;
    fake.set_default(OpenAiReply::InsufficientQuota);
    let text = engine(&fake)
        .refine_idea("  чайник   плывёт\nпо озеру ", DESCRIPTION, Language::Ru)
        .await
        .expect("the idea itself");
    assert_eq!(text, "чайник плывёт по озеру");
    let engine = engine(&fake);
    let empty = engine.refine_idea(" \n ", DESCRIPTION, Language::Ru).await;
    assert!(matches!(empty, Err(PromptError::Rejected(_))));
}

#[tokio::test]
async fn an_operator_catalogue_governs_refinement() {
    let fake = FakeOpenAi::start().await;
    let catalogue = TemplateCatalogue::from_toml(
        r#"
[[template]]
id = "mine"
kind = "own_idea"
name = { ru = "Моя идея", en = "My idea" }
description = { ru = "д", en = "d" }
instructions = { ru = "ОПЕРАТОРСКИЕ ИНСТРУКЦИИ", en = "OPERATOR INSTRUCTIONS" }
fallback_prompt = "{idea} {description}"
"#,
    )
    .expect("valid catalogue");
    let engine = engine(&fake).with_catalogue(&catalogue);
    engine.refine_idea("a kettle on the moon", DESCRIPTION, Language::En).await.expect("refined");
    assert!(fake.requests().await[0].system_text().starts_with("OPERATOR INSTRUCTIONS"));
}

#[tokio::test]
async fn a_plain_text_answer_that_passes_validation_is_the_prompt() {
    // An OpenAI-compatible endpoint that ignores `response_format`.
    let fake = FakeOpenAi::start().await;
    let prose = "A slow orbit around the mug on white marble, soft morning light, steam rising.";
    fake.set_default(OpenAiReply::Content(prose.into()));
    let ugc = template("ugc");
    let prompt =
        engine(&fake).build_prompt(&request(&ugc, Some(&photo()), 1)).await.expect("prompt");
    assert_eq!(prompt.as_str(), format!("{prose} {PRODUCT_FIDELITY}"));
    assert_ne!(prompt, template_prompt(&ugc, 1).await, "not the bare template");

    // Prose that talks to the asker still falls back.
    let fake = FakeOpenAi::start().await;
    fake.set_default(OpenAiReply::Content(format!("Sure! Here it is: {prose}")));
    let prompt =
        engine(&fake).build_prompt(&request(&ugc, Some(&photo()), 1)).await.expect("prompt");
    assert_eq!(prompt, template_prompt(&ugc, 1).await);
}
