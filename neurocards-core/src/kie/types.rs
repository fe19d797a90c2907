//! KIE.AI wire types (api-facts §1). Every field is optional or defaulted and unknown fields are
//! ignored: KIE's docs and live answers disagree in places (`msg` vs `message`, numbers vs
//! strings), so each field accepts the forms seen in the wild.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The envelope every KIE answer shares: `{code, msg, data}`. `code` is the real status (KIE
/// answers some errors inside HTTP 200).
/// `data` stays raw until `code` says success, because error answers put other shapes there.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub code: Option<i64>,
    #[serde(default, alias = "message")]
    pub msg: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// `POST /api/v1/jobs/createTask` body.
#[derive(Debug, Clone, Serialize)]
pub struct CreateTaskRequest<'a> {
    pub model: &'a str,
    #[serde(rename = "callBackUrl", skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<&'a str>,
    pub input: Value,
}

/// `data` of a createTask answer.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateTaskData {
    #[serde(default, rename = "taskId", alias = "task_id", alias = "recordId")]
    pub task_id: Option<String>,
}

/// `data` of a recordInfo answer, and of a callback body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RecordInfo {
    #[serde(default, alias = "status")]
    pub state: Option<String>,
    /// A JSON string on the wire (`"{\"resultUrls\":[...]}"`); an object is accepted too.
    #[serde(default, rename = "resultJson", alias = "result_json")]
    pub result_json: Option<Value>,
    #[serde(
        default,
        rename = "failCode",
        alias = "fail_code",
        deserialize_with = "lenient_string"
    )]
    pub fail_code: Option<String>,
    #[serde(default, rename = "failMsg", alias = "fail_msg")]
    pub fail_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: Option<f64>,
}

/// The decoded `resultJson` of a video task.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResultJson {
    #[serde(default, rename = "resultUrls", alias = "result_urls")]
    pub result_urls: Vec<String>,
}

/// `data` of a file upload answer (`POST /api/file-stream-upload`).
#[derive(Debug, Clone, Deserialize)]
pub struct UploadData {
    #[serde(default, rename = "downloadUrl", alias = "fileUrl", alias = "url")]
    pub download_url: Option<String>,
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

impl RecordInfo {
    /// The result URLs, decoding `resultJson` whether it came as a string or an object.
    pub fn result_urls(&self) -> Vec<String> {
        let parsed = match &self.result_json {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                serde_json::from_str::<ResultJson>(s).ok()
            }
            Some(v @ Value::Object(_)) => serde_json::from_value::<ResultJson>(v.clone()).ok(),
            _ => None,
        };
        parsed
            .map(|r| r.result_urls.into_iter().filter(|u| u.starts_with("http")).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_info_reads_the_documented_example_and_ignores_unknown_fields() {
        let body = r#"{"code":200,"msg":"success","data":{"taskId":"task_1","model":"sora-2-image-to-video",
            "state":"success","param":"{}","resultJson":"{\"resultUrls\":[\"https://x/v.mp4\"]}",
            "failCode":"","failMsg":"","costTime":15000,"progress":100,"creditsConsumed":0.0}}"#;
        let env: Envelope = serde_json::from_str(body).expect("parses");
        assert_eq!(env.code, Some(200));
        let data: RecordInfo = serde_json::from_value(env.data.expect("data")).expect("record");
        assert_eq!(data.fail_code, None);
        assert_eq!(data.result_urls(), vec!["https://x/v.mp4".to_owned()]);
    }

    #[test]
    fn lenient_fields_accept_both_forms() {
        let body = r#"{"code":"501","message":"Playground task failed.","data":{"task_id":"t",
            "status":"fail","resultJson":null,"failCode":500,"failMsg":"Internal server error","progress":"40"}}"#;
        let env: Envelope = serde_json::from_str(body).expect("parses");
        assert_eq!(env.code, Some(501));
        assert_eq!(env.msg.as_deref(), Some("Playground task failed."));
        let data: RecordInfo = serde_json::from_value(env.data.expect("data")).expect("record");
        assert_eq!(data.state.as_deref(), Some("fail"));
        assert_eq!(data.fail_code.as_deref(), Some("500"));
        assert_eq!(data.progress, Some(40.0));
        assert!(data.result_urls().is_empty());
        let obj: RecordInfo =
            serde_json::from_str(r#"{"resultJson":{"resultUrls":["https://y/v.mp4"]}}"#)
                .expect("parses");
        assert_eq!(obj.result_urls(), vec!["https://y/v.mp4".to_owned()]);
    }
}
