//! Classifying KIE failures into the error classes of the design.
//!
//! Status codes decide first (HTTP status, the body `code`, the task's `failCode`), then a
//! narrow list of phrases. The previous system matched broad words ("content", "human", any
//! "500" inside a text) and read the HTTP library's exception text instead of KIE's body; this
//! one only ever sees KIE's own `msg`/`failMsg`.

use crate::domain::ErrorClass;
use crate::ports::ProviderError;
use std::time::Duration;

/// How long KIE asks a rate-limited caller to wait: its window is 10 s and excess requests are
/// rejected, not queued (api-facts §1.6).
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// Longest provider text kept in an error message.
const MAX_MESSAGE_CHARS: usize = 200;

/// Everything known about one failed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureSignal<'a> {
    /// The HTTP status, when the request got an answer.
    pub http_status: Option<u16>,
    /// The envelope's `code`.
    pub body_code: Option<i64>,
    /// The task's `failCode` (a string like `"500"` or `"422"`).
    pub fail_code: Option<&'a str>,
    /// KIE's text: `failMsg`, else `msg`.
    pub text: &'a str,
}

/// Phrases that mean the user's photo or wishes broke a content rule.
const USER_VIOLATION: &[&str] = &[
    "guardrail",
    "content polic",
    "content_policy",
    "prohibited",
    "flagged",
    "sensitive",
    "violat",
    "moderation",
    "nsfw",
    "real person",
    "real people",
    "public figure",
    "third-party",
    "third party",
];

/// Phrases that mean the model is switched off.
const PAUSED: &[&str] = &["temporarily paused", "interface is paused", "model is paused"];

/// Phrases that mean we built the request wrong or named a model KIE does not have.
const CONFIG: &[&str] = &["not supported", "is required", "invalid", "exceeds", "unsupported"];

/// Phrases that mean trying again later can help.
const TEMPORARY: &[&str] = &[
    "internal error",
    "internal server error",
    "timed out",
    "timeout",
    "try again",
    "service unavailable",
    "temporarily unavailable",
    "maintenance",
    "overloaded",
    "server busy",
    "system busy",
];

/// Phrases that mean the account is out of credits.
const BILLING: &[&str] = &["insufficient credit", "credits insufficient", "insufficient balance"];

/// Phrases that mean too many requests.
const RATE_LIMIT: &[&str] = &["rate limit", "too many requests"];

/// Whether the text says the model slug does not exist (a reason to try the next model).
pub fn is_model_unsupported(text: &str) -> bool {
    let t = text.to_lowercase();
    t.contains("model") && (t.contains("not supported") || t.contains("unsupported"))
}

/// Classifies one failure. The returned message is KIE's text, shortened, or a description of
/// the code when KIE gave no text; it never holds a key (KIE does not echo them).
pub fn classify(signal: &FailureSignal<'_>) -> ProviderError {
    let text = signal.text.trim();
    let lower = text.to_lowercase();
    let has = |list: &[&str]| list.iter().any(|p| lower.contains(p));
    let http = signal.http_status.filter(|s| !(200..300).contains(s)).map(i64::from);
    let body = signal.body_code.filter(|c| *c != 200);
    let fail = signal.fail_code.and_then(|c| c.trim().parse::<i64>().ok());
    let codes = [http, body, fail];
    let any = |pred: &dyn Fn(i64) -> bool| codes.iter().flatten().any(|c| pred(*c));

    let class = if has(PAUSED) || any(&|c| c == 505) {
        ErrorClass::ProviderPaused
    } else if any(&|c| c == 401) || body == Some(403) {
        // KIE itself refused the key.
        ErrorClass::Config
    } else if http == Some(403) {
        // A bare HTTP 403 is a proxy in front of KIE refusing this machine (Cloudflare's "error
        // code: 1010") or an address allow-list: not the key, and fixable by the operator, so
        // the job waits and tries again rather than failing at once.
        ErrorClass::Temporary
    } else if any(&|c| c == 402) || has(BILLING) {
        ErrorClass::Billing
    } else if any(&|c| c == 429) || has(RATE_LIMIT) {
        ErrorClass::RateLimit
    } else if has(USER_VIOLATION) {
        ErrorClass::UserViolation
    } else if has(CONFIG) {
        ErrorClass::Config
    } else if has(TEMPORARY) {
        ErrorClass::Temporary
    } else if fail == Some(422) {
        // A task that failed with failCode 422 was refused for its content (api-facts §1.5).
        ErrorClass::UserViolation
    } else if any(&|c| c == 408 || c == 455 || ((500..600).contains(&c) && c != 501)) {
        ErrorClass::Temporary
    } else if any(&|c| matches!(c, 400 | 404 | 405 | 422)) {
        ErrorClass::Config
    } else {
        ErrorClass::Unknown
    };

    let code = signal
        .fail_code
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .or_else(|| body.or(http).map(|c| c.to_string()));
    let message = if text.is_empty() {
        match (&code, signal.http_status) {
            (Some(c), _) => format!("KIE answered code {c}"),
            (None, Some(s)) => format!("KIE answered HTTP {s}"),
            (None, None) => "KIE gave no reason".to_owned(),
        }
    } else {
        shorten(text)
    };
    let retry_after = (class == ErrorClass::RateLimit).then_some(DEFAULT_RATE_LIMIT_WAIT);
    ProviderError { class, message, code, retry_after, task_may_exist: false }
}

/// Classifies a request that got no usable answer (timeout, refused connection, cut body).
/// These are temporary; the caller decides whether a retry could duplicate a paid task.
pub fn transport(err: &reqwest::Error) -> ProviderError {
    let what = if err.is_timeout() {
        "KIE did not answer in time"
    } else if err.is_connect() {
        "could not connect to KIE"
    } else {
        "the connection to KIE failed"
    };
    ProviderError::new(ErrorClass::Temporary, what)
}

fn shorten(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_MESSAGE_CHARS {
        one_line
    } else {
        let mut s: String = one_line.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    fn sig(
        http: Option<u16>,
        body: Option<i64>,
        fail: Option<&'static str>,
        text: &'static str,
    ) -> FailureSignal<'static> {
        FailureSignal { http_status: http, body_code: body, fail_code: fail, text }
    }

    /// Every example the reference lists (api-facts §1.4, §1.5, §1.6, §1.7, §1.11), plus the
    /// previous system's misreadings (§9 item 30) that must not come back.
    #[test]
    fn classification_table() {
        let ok = Some(200);
        let okc = Some(200);
        let table: Vec<(FailureSignal<'static>, ErrorClass)> = vec![
            // §1.11 failMsg texts
            (sig(ok, Some(500), None, "This interface is temporarily paused"), ProviderPaused),
            (
                sig(ok, Some(422), None, "The model name you specified is not supported"),
                Config,
            ),
            (sig(ok, Some(500), None, "The model name you specified is not supported"), Config),
            (sig(ok, Some(500), None, "This field is required"), Config),
            (sig(ok, Some(422), None, "image_urls is required"), Config),
            (sig(ok, okc, Some("500"), "Internal Error, Please try again later."), Temporary),
            (sig(ok, Some(501), Some("500"), "Internal server error"), Temporary),
            (sig(ok, okc, Some("500"), "upstream API service timed out"), Temporary),
            (
                sig(ok, okc, Some("422"), "Invalid prompt: prompt contains prohibited content"),
                UserViolation,
            ),
            (
                sig(ok, okc, Some("422"), "CONTENT_POLICY_BLOCKED: the input was flagged as sensitive."),
                UserViolation,
            ),
            (
                sig(ok, okc, Some("500"), "This content may violate our guardrails around nudity, sexuality, or erotic content."),
                UserViolation,
            ),
            (
                sig(ok, okc, Some("500"), "This content may violate our guardrails concerning similarity to third-party content."),
                UserViolation,
            ),
            (
                sig(ok, okc, None, "This content may violate our guardrails around violence or graphic content."),
                UserViolation,
            ),
            (
                sig(ok, okc, None, "This content may violate our guardrails around hate speech or discrimination."),
                UserViolation,
            ),
            (sig(ok, okc, None, "This content may violate our guardrails around self-harm."), UserViolation),
            (
                sig(ok, okc, None, "This content may violate our guardrails around illegal activity."),
                UserViolation,
            ),
            (sig(ok, okc, Some("400"), "Real person images are not supported"), UserViolation),
            (sig(ok, okc, Some("422"), ""), UserViolation),
            // §1.4 create errors and §1.6 envelope codes
            (sig(ok, Some(401), None, "You do not have access permissions"), Config),
            (sig(Some(401), None, None, ""), Config),
            (sig(Some(403), None, None, "error code: 1010"), Temporary),
            (sig(Some(200), Some(403), None, "no access"), Config),
            (sig(ok, Some(402), None, "Credits insufficient"), Billing),
            (sig(Some(402), None, None, ""), Billing),
            (sig(ok, Some(422), None, "prompt exceeds range"), Config),
            (sig(ok, Some(422), None, ""), Config),
            (sig(ok, Some(505), None, "success"), ProviderPaused),
            (sig(ok, Some(505), None, ""), ProviderPaused),
            (sig(ok, Some(429), None, ""), RateLimit),
            (sig(Some(429), None, None, "Rate limit exceeded"), RateLimit),
            (sig(ok, Some(455), None, "Service unavailable"), Temporary),
            (sig(ok, Some(455), None, ""), Temporary),
            (sig(ok, Some(500), None, "Server error"), Temporary),
            (sig(Some(502), None, None, "<html>Bad gateway</html>"), Temporary),
            (sig(Some(503), None, None, ""), Temporary),
            (sig(ok, Some(408), None, ""), Temporary),
            (sig(ok, Some(404), None, "task not found"), Config),
            (sig(ok, Some(400), None, "taskId parameter is required"), Config),
            (sig(ok, Some(501), None, "Playground task failed."), Unknown),
            (sig(ok, okc, Some("999"), "something odd happened"), Unknown),
            (sig(ok, okc, None, ""), Unknown),
            // §9 item 30: none of these is a content violation
            (sig(Some(400), Some(400), None, "bad parameter aspect_ratio"), Config),
            (sig(ok, Some(402), None, "account balance restricted"), Billing),
            (sig(ok, okc, None, "Order 500 items of content"), Unknown),
        ];
        for (signal, want) in table {
            let got = classify(&signal);
            assert_eq!(got.class, want, "{signal:?} -> {got:?}");
        }
    }

    #[test]
    fn codes_and_messages_are_reported() {
        let e = classify(&sig(Some(200), Some(402), None, ""));
        assert_eq!(e.code.as_deref(), Some("402"));
        assert_eq!(e.message, "KIE answered code 402");
        let e = classify(&sig(Some(200), Some(501), Some("422"), "  bad\n prompt  "));
        assert_eq!(e.code.as_deref(), Some("422"));
        assert_eq!(e.message, "bad prompt");
        let e = classify(&sig(Some(429), None, None, ""));
        assert_eq!(e.retry_after, Some(DEFAULT_RATE_LIMIT_WAIT));
        let long = "x".repeat(1000);
        let e = classify(&FailureSignal { text: &long, ..Default::default() });
        assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn model_unsupported_is_recognised() {
        assert!(is_model_unsupported("The model name you specified is not supported"));
        assert!(!is_model_unsupported("This field is required"));
    }
}
