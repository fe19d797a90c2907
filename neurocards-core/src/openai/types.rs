//! Wire types of OpenAI Chat Completions (`POST /v1/chat/completions`), only the fields we
//! send or read. Responses deserialize with `Option`s and ignore unknown fields, so
//! OpenAI-compatible gateways (`OPENAI_BASE_URL`) that omit fields still parse.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message<'a>>,
    pub response_format: ResponseFormat,
    /// `max_completion_tokens` rather than the deprecated `max_tokens`; no `temperature`,
    /// because reasoning models refuse any value but the default.
    pub max_completion_tokens: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub role: &'static str,
    pub content: Content<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Content<'a> {
    Text(&'a str),
    Parts(Vec<Part<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Serialize)]
pub(crate) struct ImageUrl {
    /// A `data:` URL: the photo itself, never a Telegram file URL (those embed the bot token).
    pub url: String,
    pub detail: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub json_schema: JsonSchema,
}

#[derive(Debug, Serialize)]
pub(crate) struct JsonSchema {
    pub name: &'static str,
    pub strict: bool,
    pub schema: serde_json::Value,
}

impl ResponseFormat {
    /// The structured answer: the video prompt apart from any notes, both required (strict
    /// mode wants every property listed as required).
    pub fn prompt_answer() -> Self {
        Self {
            kind: "json_schema",
            json_schema: JsonSchema {
                name: "video_prompt_answer",
                strict: true,
                schema: serde_json::json!({
                    "type": "object",
                    "properties": {
                        "video_prompt": {
                            "type": "string",
                            "description": "Only the text the video model receives."
                        },
                        "notes": {
                            "type": "string",
                            "description": "Remarks for the operator; empty if none."
                        }
                    },
                    "required": ["video_prompt", "notes"],
                    "additionalProperties": false
                }),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletion {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub message: Option<AssistantMessage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AssistantMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// `{"error": {...}}`, the envelope of every OpenAI error answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ApiError,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A string on OpenAI, sometimes a number on compatible gateways.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
}

impl ApiError {
    pub fn code_str(&self) -> Option<String> {
        match &self.code {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The structured answer the model is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PromptAnswer {
    /// The text meant for the video model (or, when refining, for the user to approve).
    pub video_prompt: String,
    /// Anything else the model wanted to say; logged, never sent to the video model.
    #[serde(default)]
    pub notes: Option<String>,
}
