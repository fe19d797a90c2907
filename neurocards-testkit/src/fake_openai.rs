//! FakeOpenAi: OpenAI Chat Completions on a local wiremock server (random port).
//!
//! It answers `POST /v1/chat/completions` with scripted replies — a structured prompt, a
//! refusal, `finish_reason: length`, quota and rate-limit 429s, 5xx, malformed bodies, slow
//! answers — and records every request so tests can check what was sent (model, instructions,
//! the photo as a `data:` URL, never a Telegram URL). Requests without the fake's key get the
//! real API's 401.

use neurocards_core::http::HttpTimeouts;
use neurocards_core::openai::{OpenAiClient, OpenAiConfig};
use neurocards_core::secret::Secret;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The API key the fake accepts.
pub const FAKE_OPENAI_KEY: &str = "sk-fake-openai-key";

/// The model name the fake reports when a request names none.
const FAKE_MODEL_VERSION: &str = "gpt-4.1-mini-2025-04-14";

/// A prompt the fake returns by default: a plausible, valid scene.
pub const DEFAULT_VIDEO_PROMPT: &str = "A vertical handheld smartphone video in a sunlit \
    kitchen: a freckled woman in her thirties with a messy bun lifts the product from the photo, \
    smiles into the camera and says \"Finally, something that actually works!\" Close-ups of the \
    product in her hands, natural light, slight camera shake.";

/// One scripted answer of the fake.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenAiReply {
    /// 200 with the structured answer `{"video_prompt", "notes"}` as the message content.
    Prompt { video_prompt: String, notes: String },
    /// 200 with this exact message content (e.g. prose instead of JSON).
    Content(String),
    /// 200 with `message.refusal` set and no content.
    Refusal(String),
    /// 200 with `finish_reason: "length"` and a cut-off JSON content.
    Truncated,
    /// 200 with `finish_reason: "content_filter"`.
    ContentFilter,
    /// 429 `insufficient_quota`: out of credit, not retryable.
    InsufficientQuota,
    /// 429 `rate_limit_exceeded` with `retry-after` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// A server error with the error envelope (500, 502, 503 …).
    ServerError(u16),
    /// 401 `invalid_api_key`.
    Unauthorized,
    /// 200 with a body that is not JSON.
    MalformedBody,
    /// `then`, after `delay`.
    Slow { delay: Duration, then: Box<OpenAiReply> },
}

impl OpenAiReply {
    /// A structured answer with this prompt and no notes.
    pub fn prompt(video_prompt: impl Into<String>) -> Self {
        OpenAiReply::Prompt { video_prompt: video_prompt.into(), notes: String::new() }
    }
}

impl Default for OpenAiReply {
    fn default() -> Self {
        OpenAiReply::prompt(DEFAULT_VIDEO_PROMPT)
    }
}

/// One chat completion request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedChat {
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
}

impl RecordedChat {
    pub fn model(&self) -> Option<&str> {
        self.body["model"].as_str()
    }

    /// The system message's text.
    pub fn system_text(&self) -> String {
        self.messages("system").collect::<Vec<_>>().join("\n")
    }

    /// All text parts of the user message(s).
    pub fn user_text(&self) -> String {
        self.messages("user").collect::<Vec<_>>().join("\n")
    }

    /// The `image_url.url` of every image part (expected: `data:image/...;base64,...`).
    pub fn image_urls(&self) -> Vec<String> {
        self.user_parts()
            .filter(|p| p["type"] == "image_url")
            .filter_map(|p| p["image_url"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    /// `response_format.type` (`json_schema` for our structured answers).
    pub fn response_format_type(&self) -> Option<&str> {
        self.body["response_format"]["type"].as_str()
    }

    fn user_parts(&self) -> impl Iterator<Item = &Value> {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "user")
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
    }

    fn messages<'s>(&'s self, role: &'s str) -> impl Iterator<Item = String> + 's {
        self.body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |m| m["role"] == role)
            .map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => {
                    parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n")
                }
                _ => String::new(),
            })
    }
}

#[derive(Debug, Default)]
struct Script {
    queue: VecDeque<OpenAiReply>,
    default: OpenAiReply,
}

/// A fake OpenAI API on its own random port. Replies pushed with [`FakeOpenAi::push`] are
/// used once each, in order; afterwards every request gets the default reply.
#[derive(Debug)]
pub struct FakeOpenAi {
    server: MockServer,
    script: Arc<Mutex<Script>>,
}

struct Responder {
    script: Arc<Mutex<Script>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let expected = format!("Bearer {FAKE_OPENAI_KEY}");
        let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(expected.as_str()) {
            return render(&OpenAiReply::Unauthorized, None);
        }
        let reply = {
            let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
            script.queue.pop_front().unwrap_or_else(|| script.default.clone())
        };
        let model =
            request.body_json::<Value>().ok().and_then(|b| b["model"].as_str().map(str::to_owned));
        render(&reply, model.as_deref())
    }
}

impl FakeOpenAi {
    /// Starts the fake; by default every request gets [`DEFAULT_VIDEO_PROMPT`].
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let script = Arc::new(Mutex::new(Script::default()));
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Responder { script: script.clone() })
            .mount(&server)
            .await;
        Self { server, script }
    }

    /// The API base to put in `OPENAI_BASE_URL` (`http://127.0.0.1:<port>/v1`).
    pub fn base_url(&self) -> Url {
        #[allow(clippy::expect_used)]
        Url::parse(&format!("{}/v1", self.server.uri())).expect("wiremock gives a valid URI")
    }

    /// A client configuration pointing at the fake with its key and short timeouts.
    pub fn config(&self) -> OpenAiConfig {
        let mut config = OpenAiConfig::new(Secret::new(FAKE_OPENAI_KEY));
        config.base_url = self.base_url();
        config.timeouts =
            HttpTimeouts { connect: Duration::from_secs(2), request: Duration::from_secs(5) };
        config
    }

    /// A client for [`FakeOpenAi::config`].
    pub fn client(&self) -> OpenAiClient {
        #[allow(clippy::expect_used)]
        OpenAiClient::new(self.config()).expect("the HTTP client builds")
    }

    /// Queues `reply` for the next request not yet scripted.
    pub fn push(&self, reply: OpenAiReply) {
        self.script.lock().unwrap_or_else(|p| p.into_inner()).queue.push_back(reply);
    }

    /// The reply for every request once the queue is empty.
    pub fn set_default(&self, reply: OpenAiReply) {
        self.script.lock().unwrap_or_else(|p| p.into_inner()).default = reply;
    }

    /// Every chat completion request received so far, in order.
    pub async fn requests(&self) -> Vec<RecordedChat> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/chat/completions"))
            .map(|r| RecordedChat {
                authorization: r
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: r.body_json().unwrap_or(Value::Null),
            })
            .collect()
    }
}

fn render(reply: &OpenAiReply, model: Option<&str>) -> ResponseTemplate {
    let model = model.unwrap_or(FAKE_MODEL_VERSION);
    match reply {
        OpenAiReply::Prompt { video_prompt, notes } => {
            let content = json!({ "video_prompt": video_prompt, "notes": notes }).to_string();
            completion(model, Some(&content), None, "stop")
        }
        OpenAiReply::Content(content) => completion(model, Some(content), None, "stop"),
        OpenAiReply::Refusal(text) => completion(model, None, Some(text), "stop"),
        OpenAiReply::Truncated => {
            completion(model, Some(r#"{"video_prompt":"A vertical video in a sunl"#), None, "length")
        }
        OpenAiReply::ContentFilter => completion(model, None, None, "content_filter"),
        OpenAiReply::InsufficientQuota => error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        OpenAiReply::RateLimited { retry_after_secs } => error(
            429,
            "Rate limit reached for gpt-4.1-mini on requests per min (RPM): Limit 3, Used 3.",
            "requests",
            "rate_limit_exceeded",
        )
        .insert_header("retry-after", retry_after_secs.to_string().as_str())
        .insert_header("x-ratelimit-remaining-requests", "0"),
        OpenAiReply::ServerError(status) => error(
            *status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            "server_error",
        ),
        OpenAiReply::Unauthorized => error(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        OpenAiReply::MalformedBody => {
            ResponseTemplate::new(200).set_body_raw("<html>502 Bad Gateway</html>", "text/html")
        }
        OpenAiReply::Slow { delay, then } => render(then, Some(model)).set_delay(*delay),
    }
}

fn completion(
    model: &str,
    content: Option<&str>,
    refusal: Option<&str>,
    finish: &str,
) -> ResponseTemplate {
    let body = json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": refusal },
            "finish_reason": finish
        }],
        "usage": { "prompt_tokens": 812, "completion_tokens": 120, "total_tokens": 932 },
        "system_fingerprint": "fp_fake"
    });
    ResponseTemplate::new(200)
        .set_body_json(body)
        .insert_header("x-request-id", format!("req_{}", uuid::Uuid::new_v4().simple()).as_str())
}

fn error(status: u16, message: &str, kind: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(json!({
            "error": { "message": message, "type": kind, "param": null, "code": code }
        }))
        .insert_header("x-request-id", format!("req_{}", uuid::Uuid::new_v4().simple()).as_str())
}
