//! Rendering the worker's messages from the `[notify]` locale table. Every value that comes from
//! a user or a provider is escaped here; the catalogue's own markup is trusted HTML.

use crate::domain::{Credits, ErrorClass, Language};
use crate::i18n::{escape_html, Texts};
use crate::ports::{FailureNotice, ProgressStage};
use teloxide::types::ParseMode;

/// The one parse mode every message of the notifier uses.
pub const PARSE_MODE: ParseMode = ParseMode::Html;

/// The provider's reason is shown to the user only up to this many characters.
const MAX_DETAIL_CHARS: usize = 300;

/// The notifier's texts: a view of a locale catalogue under `notify.`.
#[derive(Debug, Clone, Copy)]
pub struct NotifyTexts {
    texts: &'static Texts,
}

impl Default for NotifyTexts {
    fn default() -> Self {
        Self::builtin()
    }
}

impl NotifyTexts {
    /// The texts shipped with the project.
    pub fn builtin() -> Self {
        Self { texts: Texts::builtin() }
    }

    /// Texts from another catalogue (e.g. an operator's customised copy).
    pub fn new(texts: &'static Texts) -> Self {
        Self { texts }
    }

    fn render(&self, language: Language, key: &str, args: &[(&str, &str)]) -> String {
        self.texts.render(language, &format!("notify.{key}"), args)
    }

    /// The label of a button (`make_another`, `main_menu`, `retry`, `send_video`,
    /// `another_photo`, `support`).
    pub fn button(&self, language: Language, name: &str) -> String {
        self.render(language, &format!("button.{name}"), &[])
    }

    /// The progress message for `stage`.
    pub fn progress(&self, language: Language, stage: &ProgressStage) -> String {
        match *stage {
            ProgressStage::Queued { total, position, eta_minutes, .. } => {
                let videos = self.counted(language, "videos", i64::from(total));
                if position == 0 {
                    self.render(language, "progress_queued_next", &[("total_videos", &videos)])
                } else {
                    self.render(
                        language,
                        "progress_queued",
                        &[
                            ("total_videos", &videos),
                            ("position", &position.to_string()),
                            ("eta", &eta_minutes.max(1).to_string()),
                        ],
                    )
                }
            }
            ProgressStage::Generating { done, total } => self.render(
                language,
                "progress_generating",
                &[("done", &done.to_string()), ("total", &total.to_string())],
            ),
            ProgressStage::Retrying { done, total, .. } => self.render(
                language,
                "progress_retrying",
                &[("done", &done.to_string()), ("total", &total.to_string())],
            ),
            ProgressStage::Finished { delivered, failed, total } => {
                let key =
                    if failed == 0 { "progress_finished" } else { "progress_finished_failed" };
                self.render(
                    language,
                    key,
                    &[
                        ("delivered", &delivered.to_string()),
                        ("failed", &failed.to_string()),
                        ("total", &total.to_string()),
                    ],
                )
            }
        }
    }

    /// The caption under video `index` (1-based) of `total`.
    pub fn video_caption(&self, language: Language, index: u32, total: u32) -> String {
        if total <= 1 {
            self.render(language, "video_caption", &[])
        } else {
            self.render(
                language,
                "video_caption_of",
                &[("index", &index.to_string()), ("total", &total.to_string())],
            )
        }
    }

    /// The message carrying a link to a video too large to upload.
    pub fn video_link(&self, language: Language, url: &str) -> String {
        self.render(language, "video_link", &[("url", &escape_html(url))])
    }

    /// The message offering a video whose earlier send may not have arrived, with a link to it.
    pub fn video_offer(&self, language: Language, index: u32, total: u32, url: &str) -> String {
        let url = escape_html(url);
        if total <= 1 {
            self.render(language, "video_offer", &[("url", &url)])
        } else {
            self.render(
                language,
                "video_offer_of",
                &[("index", &index.to_string()), ("total", &total.to_string()), ("url", &url)],
            )
        }
    }

    /// The failure message: what happened (per class, or the photo problem; for a user
    /// violation, what to change),
    /// the provider's reason when there is one, and the refund.
    pub fn failure(&self, language: Language, notice: &FailureNotice) -> String {
        let headline = match notice.photo_problem {
            Some(problem) => format!("failure_photo.{}", problem.as_str()),
            None => format!("failure.{}", notice.class),
        };
        let mut parts = vec![self.render(language, &headline, &[])];
        if notice.class == ErrorClass::UserViolation {
            if let Some(detail) = notice.detail.as_deref().map(str::trim).filter(|d| !d.is_empty())
            {
                let detail = escape_html(&truncate_chars(detail, MAX_DETAIL_CHARS));
                parts.push(self.render(language, "reason", &[("detail", &detail)]));
            }
        }
        if notice.refunded.get() > 0 {
            parts.push(self.refund(language, notice.refunded));
        }
        parts.join("\n\n")
    }

    /// "N credits returned to your balance."
    pub fn refund(&self, language: Language, credits: Credits) -> String {
        let credits = self.counted(language, "credits", credits.get());
        self.render(language, "refund", &[("credits", &credits)])
    }

    /// `n` with the noun in the right plural form (`notify.<noun>.one|few|many`).
    fn counted(&self, language: Language, noun: &str, n: i64) -> String {
        let form = plural_form(language, n);
        self.render(language, &format!("{noun}.{form}"), &[("n", &n.to_string())])
    }
}

/// The CLDR plural category used by the catalogue: Russian has one/few/many, English one/many.
fn plural_form(language: Language, n: i64) -> &'static str {
    let n = n.unsigned_abs();
    match language {
        Language::En => {
            if n == 1 {
                "one"
            } else {
                "many"
            }
        }
        Language::Ru => {
            let (m10, m100) = (n % 10, n % 100);
            if m10 == 1 && m100 != 11 {
                "one"
            } else if (2..=4).contains(&m10) && !(12..=14).contains(&m100) {
                "few"
            } else {
                "many"
            }
        }
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobId, OrderId};
    use crate::ports::PhotoProblem;

    fn notice(class: ErrorClass, refunded: i64, detail: Option<&str>) -> FailureNotice {
        FailureNotice {
            order_id: OrderId(1),
            job_id: JobId(2),
            class,
            refunded: Credits::new(refunded).expect("non-negative"),
            product_id: None,
            detail: detail.map(str::to_owned),
            photo_problem: None,
        }
    }

    #[test]
    fn a_photo_problem_is_told_as_such_never_as_moderation() {
        let texts = NotifyTexts::builtin();
        for language in [Language::Ru, Language::En] {
            for problem in [PhotoProblem::TooLarge, PhotoProblem::NotAnImage, PhotoProblem::Gone] {
                let mut n = notice(ErrorClass::Unknown, 1, None);
                n.photo_problem = Some(problem);
                let text = texts.failure(language, &n);
                assert!(!text.contains("notify."), "missing key for {problem:?}: {text}");
                assert!(!text.contains("модерац") && !text.contains("moderation"), "{text}");
                assert!(text.contains("💰 1 "), "{problem:?}: {text}");
            }
        }
    }

    #[test]
    fn every_class_has_a_failure_text_that_states_the_refund() {
        let texts = NotifyTexts::builtin();
        for language in [Language::Ru, Language::En] {
            for class in ErrorClass::ALL {
                let text = texts.failure(language, &notice(class, 1, None));
                assert!(!text.contains("notify."), "missing key for {class}: {text}");
                assert!(text.contains("💰 1 "), "{class}: {text}");
            }
        }
    }

    #[test]
    fn provider_reason_is_escaped() {
        let texts = NotifyTexts::builtin();
        let text = texts.failure(
            Language::En,
            &notice(ErrorClass::UserViolation, 3, Some("<script>x & y</script>")),
        );
        assert!(text.contains("&lt;script&gt;x &amp; y&lt;/script&gt;"), "{text}");
        assert!(text.contains("3 credits"), "{text}");
    }

    #[test]
    fn russian_plurals_follow_the_rules() {
        let forms: Vec<_> = [1, 2, 5, 11, 12, 21, 22, 25, 101, 111]
            .into_iter()
            .map(|n| plural_form(Language::Ru, n))
            .collect();
        assert_eq!(
            forms,
            ["one", "few", "many", "many", "many", "one", "few", "many", "one", "many"]
        );
    }

    #[test]
    fn every_progress_stage_renders_without_gaps() {
        let texts = NotifyTexts::builtin();
        let stages = [
            ProgressStage::Queued { order_id: OrderId(1), total: 3, position: 4, eta_minutes: 0 },
            ProgressStage::Queued { order_id: OrderId(1), total: 1, position: 0, eta_minutes: 0 },
            ProgressStage::Generating { done: 1, total: 3 },
            ProgressStage::Retrying { done: 0, total: 1, class: ErrorClass::RateLimit },
            ProgressStage::Finished { delivered: 3, failed: 0, total: 3 },
            ProgressStage::Finished { delivered: 2, failed: 1, total: 3 },
        ];
        for language in [Language::Ru, Language::En] {
            for stage in &stages {
                let text = texts.progress(language, stage);
                assert!(!text.contains('{') && !text.contains("notify."), "{stage:?}: {text}");
            }
        }
    }
}
