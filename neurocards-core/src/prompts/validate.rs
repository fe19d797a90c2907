//! What may reach the video provider: user text cleaned, LLM output checked for chatter and
//! leaked instructions, and the final prompt cut to the provider's limit with the
//! product-fidelity sentence kept.
//!
//! The previous system once sent the LLM's instruction manual to the video provider, and sent
//! the LLM's whole three-section answer instead of the prompt; both are refused here.

use crate::domain::{InvalidPrompt, Prompt};

/// Appended to every final prompt: image-to-video models drift from the photo unless told.
pub const PRODUCT_FIDELITY: &str = "Important: the product must look exactly as in the photo - \
the same colour, shape, size, proportions, logo and every detail.";

/// Why an LLM answer is not used as the video prompt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptRejection {
    #[error("the answer is empty")]
    Empty,
    #[error("the answer is too short to be a video prompt ({0} characters)")]
    TooShort(usize),
    #[error("the answer talks about itself instead of the video ({0:?})")]
    Chatter(&'static str),
    #[error("the answer quotes the instructions given to the LLM")]
    QuotesInstructions,
    #[error("the answer is a whole structured reply, not a prompt ({0})")]
    WholeAnswer(&'static str),
}

/// Shortest text accepted as an LLM-written prompt; anything shorter is a fragment.
const MIN_PROMPT_CHARS: usize = 40;

/// An instruction fragment at least this long found in the answer counts as quoting.
const QUOTE_FRAGMENT_CHARS: usize = 40;

/// Phrases that only appear when the model talks about itself or its brief.
const CHATTER: [&str; 18] = [
    "as an ai",
    "as a language model",
    "language model",
    "i'm sorry, but",
    "i am sorry, but",
    "i can't assist",
    "i cannot assist",
    "i can't help with",
    "i cannot help with",
    "system prompt",
    "return only",
    "video_prompt",
    "как ии",
    "как искусственный интеллект",
    "языковая модель",
    "я не могу помочь",
    "системный промпт",
    "верни только",
];

/// How a model opens a reply addressed to the person asking rather than a prompt ("Sure! Here
/// is…"); an answer starting with one of these is chatter.
const OPENERS: [&str; 12] = [
    "sure",
    "certainly",
    "of course",
    "here is",
    "here's",
    "absolutely",
    "great idea",
    "конечно",
    "вот промпт",
    "вот вариант",
    "вот ваш",
    "отличная идея",
];

/// Section labels of the old three-part answer (voice-over / hero description / mini-prompt).
const SECTION_LABELS: [&str; 6] = [
    "mini-prompt",
    "мини-промпт",
    "текст озвучки",
    "описание блогера",
    "voice-over text:",
    "blogger description:",
];

/// Labels a model puts before the prompt itself; removed, not refused.
const LEADING_LABELS: [&str; 6] = [
    "video prompt:",
    "sora prompt:",
    "prompt:",
    "промпт для видео:",
    "промпт:",
    "prompt for sora:",
];

/// Cleans text a user typed (description, wishes, idea): control characters dropped,
/// whitespace collapsed, cut to `max_chars` at a word boundary. Never fails; may return "".
pub fn sanitize_user_text(text: &str, max_chars: usize) -> String {
    let cleaned: String =
        text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    cut_at_word(&collapsed, max_chars)
}

/// The user's wishes, or `None` when they said there are none ("-", "нет", "no", …), the way
/// the previous bot understood them.
pub fn normalize_wishes(wishes: Option<&str>) -> Option<String> {
    let text = sanitize_user_text(wishes?, 1_000);
    let lower = text.to_lowercase();
    let lower = lower.trim_matches(|c: char| c.is_ascii_punctuation() || c == '—' || c == '–');
    let none = ["", "нет", "no", "none", "nothing", "не", "ничего", "без пожеланий"];
    if none.contains(&lower) {
        None
    } else {
        Some(text)
    }
}

/// Checks and tidies an LLM-written prompt. Markdown emphasis, code fences, a single heading
/// and a leading "Prompt:" label are removed; chatter, quoted instructions and whole
/// multi-section answers are refused. `instructions` are the texts the LLM was given.
pub fn clean_llm_prompt(raw: &str, instructions: &[&str]) -> Result<String, PromptRejection> {
    let lower_raw = raw.to_lowercase();
    if lower_raw.trim_start().starts_with('{') {
        return Err(PromptRejection::WholeAnswer("JSON object"));
    }
    if let Some(label) = SECTION_LABELS.iter().find(|l| lower_raw.contains(*l)) {
        return Err(PromptRejection::WholeAnswer(label));
    }
    let headings = raw.lines().filter(|l| l.trim_start().starts_with('#')).count();
    if headings > 1 {
        return Err(PromptRejection::WholeAnswer("several markdown sections"));
    }
    if let Some(phrase) = CHATTER.iter().find(|p| lower_raw.contains(*p)) {
        return Err(PromptRejection::Chatter(phrase));
    }
    let opening = lower_raw.trim_start_matches(|c: char| !c.is_alphanumeric());
    if let Some(opener) = OPENERS.iter().find(|o| opening.starts_with(*o)) {
        return Err(PromptRejection::Chatter(opener));
    }

    let mut lines = Vec::new();
    for line in raw.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("```") || line.starts_with('#') {
            continue;
        }
        lines.push(line.replace("**", "").replace("__", ""));
    }
    let mut text = lines.join("\n");
    let lower = text.to_lowercase();
    if let Some(label) = LEADING_LABELS.iter().find(|l| lower.starts_with(*l)) {
        // Lowercasing can change byte lengths outside ASCII; keep the text if it did.
        if let Some(rest) = text.get(label.len()..) {
            text = rest.trim_start().to_owned();
        }
    }

    if quotes_any(&text, instructions) {
        return Err(PromptRejection::QuotesInstructions);
    }
    let n = text.chars().count();
    if n == 0 {
        return Err(PromptRejection::Empty);
    }
    if n < MIN_PROMPT_CHARS {
        return Err(PromptRejection::TooShort(n));
    }
    Ok(text)
}

/// The final prompt: `body` cut at a word boundary so that, with [`PRODUCT_FIDELITY`]
/// appended, it fits `max_chars` (also capped at [`Prompt::MAX_CHARS`]). When the limit is too
/// small for both, the body alone is cut to the limit.
pub fn finalize(body: &str, max_chars: usize) -> Result<Prompt, InvalidPrompt> {
    let max = max_chars.clamp(1, Prompt::MAX_CHARS);
    let body = body.trim();
    if body.is_empty() {
        return Err(InvalidPrompt::Empty);
    }
    if body.contains(PRODUCT_FIDELITY) {
        return Prompt::truncated(body, max);
    }
    let suffix_len = PRODUCT_FIDELITY.chars().count() + 1;
    if max < suffix_len * 2 {
        return Prompt::truncated(body, max);
    }
    let body = cut_at_word(body, max - suffix_len);
    Prompt::truncated(format!("{body} {PRODUCT_FIDELITY}"), max)
}

/// Whether `text` contains, verbatim up to case and spacing, a fragment of any instruction.
fn quotes_any(text: &str, instructions: &[&str]) -> bool {
    let hay = normalize_for_match(text);
    instructions.iter().any(|ins| {
        ins.split(['\n', '.', '!', '?', ':', ';'])
            .map(normalize_for_match)
            .filter(|f| f.chars().count() >= QUOTE_FRAGMENT_CHARS)
            .any(|f| hay.contains(&f))
    })
}

fn normalize_for_match(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Cuts to at most `max` characters, at the last whitespace if that keeps over half.
fn cut_at_word(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    match cut.rfind(char::is_whitespace) {
        Some(i) if i > max / 2 => cut[..i].trim_end().to_owned(),
        _ => cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "A vertical handheld video in a sunlit kitchen: a freckled woman in \
        her thirties lifts the blue kettle from the photo and says \"Finally, tea in a minute!\"";

    #[test]
    fn a_plain_scene_is_accepted_unchanged() {
        assert_eq!(clean_llm_prompt(GOOD, &[]).as_deref(), Ok(GOOD));
    }

    #[test]
    fn markdown_and_labels_are_stripped() {
        let raw = format!("```\n## Prompt\n**Video prompt:** {GOOD}\n```");
        assert_eq!(clean_llm_prompt(&raw, &[]).as_deref(), Ok(GOOD));
    }

    #[test]
    fn chatter_is_refused() {
        for raw in [
            format!("As an AI, I wrote this: {GOOD}"),
            "I'm sorry, but I can't help with that request about this product.".to_owned(),
            format!("Как ИИ, я предлагаю: {GOOD}"),
            "Sure! Here is a great video idea for you, with a kettle.".to_owned(),
            format!("Here's your prompt. {GOOD}"),
            format!("Конечно! {GOOD}"),
        ] {
            assert!(matches!(clean_llm_prompt(&raw, &[]), Err(PromptRejection::Chatter(_))));
        }
    }

    #[test]
    fn the_old_three_part_answer_is_refused() {
        let raw =
            format!("Текст озвучки: «Привет!»\nОписание блогера: девушка\nМини-промпт: {GOOD}");
        assert!(matches!(clean_llm_prompt(&raw, &[]), Err(PromptRejection::WholeAnswer(_))));
        let raw = format!("## Voice\nhello there\n## Scene\n{GOOD}");
        assert!(matches!(clean_llm_prompt(&raw, &[]), Err(PromptRejection::WholeAnswer(_))));
        let raw = format!("{{\"video_prompt\": \"{GOOD}\"}}");
        assert!(matches!(clean_llm_prompt(&raw, &[]), Err(PromptRejection::WholeAnswer(_))));
    }

    #[test]
    fn quoting_the_instructions_is_refused() {
        let instructions = "You write short selling UGC-style videos for Reels, TikTok and \
            Shorts.\nThe product in frame must be IDENTICAL to the one in the photo.";
        let raw = format!(
            "{GOOD}. You write short selling UGC-style   videos for reels, TikTok and Shorts."
        );
        assert_eq!(
            clean_llm_prompt(&raw, &[instructions]),
            Err(PromptRejection::QuotesInstructions)
        );
        assert!(clean_llm_prompt(GOOD, &[instructions]).is_ok());
    }

    #[test]
    fn fragments_are_refused() {
        assert_eq!(clean_llm_prompt("  ", &[]), Err(PromptRejection::Empty));
        assert!(matches!(clean_llm_prompt("A kettle.", &[]), Err(PromptRejection::TooShort(9))));
    }

    #[test]
    fn finalize_keeps_the_fidelity_sentence_within_the_limit() {
        let long = "scene ".repeat(2_000);
        let p = finalize(&long, 1_000).expect("fits");
        assert!(p.as_str().chars().count() <= 1_000);
        assert!(p.as_str().ends_with(PRODUCT_FIDELITY));
        let short = finalize(GOOD, 10_000).expect("fits");
        assert_eq!(short.as_str(), format!("{GOOD} {PRODUCT_FIDELITY}"));
        let again = finalize(short.as_str(), 10_000).expect("fits");
        assert_eq!(again, short, "the sentence is not appended twice");
        let tiny = finalize(&long, 50).expect("fits");
        assert!(tiny.as_str().chars().count() <= 50);
        assert!(finalize(" ", 100).is_err());
    }

    #[test]
    fn user_text_is_cleaned_and_cut() {
        assert_eq!(sanitize_user_text(" a\u{0}b\n\n c\t d ", 100), "a b c d");
        assert_eq!(sanitize_user_text("one two three", 9), "one two");
    }

    #[test]
    fn no_wishes_means_none() {
        for none in [None, Some("-"), Some("—"), Some(" нет "), Some("No."), Some("")] {
            assert_eq!(normalize_wishes(none), None, "{none:?}");
        }
        assert_eq!(normalize_wishes(Some(" рыжая девушка ")).as_deref(), Some("рыжая девушка"));
    }
}
