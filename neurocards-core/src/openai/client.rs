//! The Chat Completions call and the classification of its answers.

use super::types::{
    ChatCompletion, ChatRequest, Content, ErrorEnvelope, ImageUrl, Message, Part, PromptAnswer,
    ResponseFormat,
};
use super::{OpenAiConfig, OpenAiError};
use crate::domain::ImageData;
use crate::secret::redact;
use base64::Engine as _;
use std::time::Duration;

/// Room for the JSON answer: a prompt of a few thousand characters plus notes, and the hidden
/// reasoning of reasoning models, which counts against the same limit.
const MAX_COMPLETION_TOKENS: u32 = 2_000;

/// Longest provider error text kept in our errors (they may quote the request).
const MAX_ERROR_TEXT: usize = 300;

/// `error.code` values that mean the account cannot pay, not that it is going too fast.
const QUOTA_CODES: [&str; 3] =
    ["insufficient_quota", "credit_balance_exhausted", "billing_hard_limit_reached"];

/// One structured request: the system instructions, the user's text and optionally the photo.
#[derive(Debug, Clone, Copy)]
pub struct ChatInput<'a> {
    /// The system message: the template's instructions and the answer format.
    pub system: &'a str,
    /// The user message's text part: product, wishes, language, variant.
    pub user_text: &'a str,
    /// Sent inline as a base64 `data:` URL.
    pub image: Option<&'a ImageData>,
}

/// An OpenAI Chat Completions client. Cheap to clone (the HTTP pool is shared). Makes exactly
/// one HTTP request per call and never retries by itself: the caller decides (the prompt
/// engine falls back to the template instead).
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    config: OpenAiConfig,
    endpoint: String,
}

impl OpenAiClient {
    /// A client for `config`. Fails only if the HTTP client cannot be built.
    pub fn new(config: OpenAiConfig) -> Result<Self, OpenAiError> {
        let http =
            crate::http::client(config.timeouts).map_err(|e| OpenAiError::Setup(e.to_string()))?;
        let endpoint =
            format!("{}/chat/completions", config.base_url.as_str().trim_end_matches('/'));
        Ok(Self { http, config, endpoint })
    }

    /// The model asked.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// The provider prompt limit this client was configured with.
    pub fn max_prompt_chars(&self) -> usize {
        self.config.max_prompt_chars
    }

    /// Asks for `{"video_prompt": ..., "notes": ...}` (JSON schema output). Returns the parsed
    /// answer, or an error saying whether a retry can help. The API key appears in no error.
    #[tracing::instrument(skip_all, fields(model = %self.config.model, with_image = input.image.is_some()))]
    pub async fn prompt_answer(&self, input: &ChatInput<'_>) -> Result<PromptAnswer, OpenAiError> {
        let mut parts = vec![Part::Text { text: input.user_text }];
        if let Some(image) = input.image {
            parts.push(Part::ImageUrl {
                image_url: ImageUrl { url: data_url(image), detail: "low" },
            });
        }
        let body = ChatRequest {
            model: &self.config.model,
            messages: vec![
                Message { role: "system", content: Content::Text(input.system) },
                Message { role: "user", content: Content::Parts(parts) },
            ],
            response_format: ResponseFormat::prompt_answer(),
            max_completion_tokens: MAX_COMPLETION_TOKENS,
        };

        let response = self
            .http
            .post(&self.endpoint)
            .bearer_auth(self.config.api_key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;

        let status = response.status();
        let request_id = header(&response, "x-request-id");
        let retry_after =
            header(&response, "retry-after").and_then(|v| crate::http::parse_retry_after(&v));
        let text = response.text().await.map_err(|e| self.transport_error(e))?;
        tracing::debug!(
            status = status.as_u16(),
            request_id = request_id.as_deref(),
            "OpenAI answered"
        );

        if !status.is_success() {
            return Err(self.classify_error(status.as_u16(), &text, retry_after));
        }
        parse_answer(&text)
    }

    fn transport_error(&self, e: reqwest::Error) -> OpenAiError {
        if e.is_timeout() {
            OpenAiError::Timeout
        } else if e.is_decode() {
            OpenAiError::Malformed(self.clean(&e.without_url().to_string()))
        } else {
            OpenAiError::Network(self.clean(&e.without_url().to_string()))
        }
    }

    fn classify_error(
        &self,
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
    ) -> OpenAiError {
        let api = serde_json::from_str::<ErrorEnvelope>(body).ok().map(|e| e.error);
        let code = api.as_ref().and_then(|a| a.code_str()).unwrap_or_default();
        let kind = api.as_ref().and_then(|a| a.kind.clone()).unwrap_or_default();
        let message = self.clean(
            &api.and_then(|a| a.message)
                .unwrap_or_else(|| format!("HTTP {status} without an error body")),
        );
        let quota = QUOTA_CODES.contains(&code.as_str()) || QUOTA_CODES.contains(&kind.as_str());
        match status {
            // Quota comes as a 429 but waiting does not help: check the code before the status.
            429 if quota => OpenAiError::InsufficientQuota {
                code: if code.is_empty() { kind } else { code },
                message,
            },
            429 => OpenAiError::RateLimited { retry_after, message },
            401 | 403 => OpenAiError::Unauthorized { status, message },
            404 => OpenAiError::NotFound { message },
            408 | 409 | 500..=599 => OpenAiError::Server { status, message },
            _ if quota => OpenAiError::InsufficientQuota { code, message },
            _ => OpenAiError::BadRequest { status, message },
        }
    }

    /// Provider text made safe for our errors: the key redacted, length bounded.
    fn clean(&self, text: &str) -> String {
        let text = redact(text, &[&self.config.api_key]);
        let mut out: String = text.chars().take(MAX_ERROR_TEXT).collect();
        if text.chars().count() > MAX_ERROR_TEXT {
            out.push('…');
        }
        out
    }
}

/// Reads a 200 answer: refusal, truncation and content filter are errors; the content is the
/// JSON object asked for (a fenced ```json block is tolerated, gateways add them), or, from an
/// endpoint that ignores `response_format`, plain text taken as the prompt itself (the prompt
/// engine validates it). A JSON object that does not parse is malformed.
fn parse_answer(body: &str) -> Result<PromptAnswer, OpenAiError> {
    let completion: ChatCompletion = serde_json::from_str(body)
        .map_err(|e| OpenAiError::Malformed(format!("not a chat completion: {e}")))?;
    if let Some(usage) = &completion.usage {
        tracing::debug!(
            model = completion.model.as_deref(),
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "OpenAI usage"
        );
    }
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| OpenAiError::Malformed("no choices".into()))?;
    let message = choice.message.ok_or_else(|| OpenAiError::Malformed("no message".into()))?;
    if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
        return Err(OpenAiError::Refused(refusal.chars().take(MAX_ERROR_TEXT).collect()));
    }
    match choice.finish_reason.as_deref() {
        Some("length") => return Err(OpenAiError::Truncated),
        Some("content_filter") => return Err(OpenAiError::ContentFiltered),
        _ => {}
    }
    let content = message
        .content
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| OpenAiError::Malformed("empty content".into()))?;
    let json = strip_fence(&content);
    if !json.starts_with('{') {
        // An OpenAI-compatible endpoint that ignores `response_format` answers in prose: the
        // text is the prompt, and the prompt engine validates it like any other.
        return Ok(PromptAnswer { video_prompt: json.to_owned(), notes: None });
    }
    let answer: PromptAnswer = serde_json::from_str(json)
        .map_err(|e| OpenAiError::Malformed(format!("content is not the JSON asked for: {e}")))?;
    if answer.video_prompt.trim().is_empty() {
        return Err(OpenAiError::Malformed("empty video_prompt".into()));
    }
    Ok(answer)
}

fn strip_fence(content: &str) -> &str {
    let t = content.trim();
    match t.strip_prefix("```") {
        Some(rest) => {
            let rest = rest.strip_prefix("json").unwrap_or(rest);
            rest.strip_suffix("```").unwrap_or(rest).trim()
        }
        None => t,
    }
}

fn data_url(image: &ImageData) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image.bytes);
    format!("data:{};base64,{b64}", image.mime.as_mime())
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(content: serde_json::Value, finish: &str, refusal: Option<&str>) -> String {
        serde_json::json!({
            "choices": [{"index": 0, "finish_reason": finish,
                "message": {"role": "assistant", "content": content, "refusal": refusal}}]
        })
        .to_string()
    }

    #[test]
    fn structured_answer_is_parsed_even_in_a_fence() {
        let inner = r#"{"video_prompt":"A kettle on a table","notes":"fine"}"#;
        let a = parse_answer(&completion(inner.into(), "stop", None)).expect("parses");
        assert_eq!(a.video_prompt, "A kettle on a table");
        assert_eq!(a.notes.as_deref(), Some("fine"));
        let fenced = format!("```json\n{inner}\n```");
        assert!(parse_answer(&completion(fenced.into(), "stop", None)).is_ok());
    }

    #[test]
    fn a_plain_text_answer_is_the_prompt() {
        let prose = "A slow orbit around the kettle on white marble, soft morning light.";
        let a = parse_answer(&completion(prose.into(), "stop", None)).expect("parses");
        assert_eq!(a.video_prompt, prose);
        assert_eq!(a.notes, None);
    }

    #[test]
    fn refusal_length_filter_and_garbage_are_told_apart() {
        let r = parse_answer(&completion(serde_json::Value::Null, "stop", Some("I can't")));
        assert_eq!(r, Err(OpenAiError::Refused("I can't".into())));
        let r = parse_answer(&completion(r#"{"video_prompt":"A ke"#.into(), "length", None));
        assert_eq!(r, Err(OpenAiError::Truncated));
        let r = parse_answer(&completion(serde_json::Value::Null, "content_filter", None));
        assert_eq!(r, Err(OpenAiError::ContentFiltered));
        assert!(matches!(parse_answer("<html>"), Err(OpenAiError::Malformed(_))));
        let r = parse_answer(&completion(r#"{"video_prompt": 5}"#.into(), "stop", None));
        assert!(matches!(r, Err(OpenAiError::Malformed(_))));
        let r =
            parse_answer(&completion(r#"{"video_prompt":" ","notes":""}"#.into(), "stop", None));
        assert!(matches!(r, Err(OpenAiError::Malformed(_))));
    }
}
