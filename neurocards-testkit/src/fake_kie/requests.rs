//! Reading what FakeKie receives: createTask validation per model and multipart uploads.

use super::Failure;
use serde_json::Value;
use std::collections::HashSet;

/// Checks a createTask body the way KIE does for the models the fake knows.
pub(super) fn validate(body: &Value, model: &str, extra: &HashSet<String>) -> Result<(), Failure> {
    let input = body
        .get("input")
        .filter(|i| i.is_object())
        .ok_or_else(|| Failure::validation("input is required"))?;
    if model.is_empty() {
        return Err(Failure::validation("model is required"));
    }
    let prompt = input.get("prompt").and_then(Value::as_str).unwrap_or("");
    if prompt.trim().is_empty() {
        return Err(Failure::validation("prompt is required"));
    }
    if prompt.chars().count() > 10_000 {
        return Err(Failure::validation("prompt exceeds range"));
    }
    let images = |field: &str, max: usize| -> Result<(), Failure> {
        let urls = input
            .get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| Failure::validation(format!("{field} is required")))?;
        if urls.is_empty() || urls.len() > max {
            return Err(Failure::validation(format!("{field} must hold 1 to {max} URLs")));
        }
        for u in urls {
            let u = u.as_str().unwrap_or("");
            if !u.starts_with("http") || u.contains("api.telegram.org") || u.contains("/file/bot") {
                return Err(Failure::validation(format!("{field} holds an unusable URL")));
            }
        }
        Ok(())
    };
    if model.starts_with("sora-2") && model.contains("image-to-video") {
        images("image_urls", 1)?;
        if !matches!(input.get("n_frames").and_then(Value::as_str), Some("10" | "15")) {
            return Err(Failure::validation("n_frames must be the string \"10\" or \"15\""));
        }
        if !matches!(
            input.get("aspect_ratio").and_then(Value::as_str),
            Some("portrait" | "landscape")
        ) {
            return Err(Failure::validation("aspect_ratio must be portrait or landscape"));
        }
    } else if model.starts_with("kling-3.0/") {
        images("image_urls", 2)?;
        if input.get("duration").and_then(Value::as_str).is_none() {
            return Err(Failure::validation("duration is required"));
        }
    } else if model.starts_with("bytedance/seedance-2") {
        images("reference_image_urls", 4)?;
        if input.get("duration").and_then(Value::as_u64).is_none() {
            return Err(Failure::validation("duration is required"));
        }
    } else if !extra.contains(model) {
        return Err(Failure::validation("The model name you specified is not supported"));
    }
    Ok(())
}

pub(super) fn mime_for(name: &str) -> String {
    match name.rsplit('.').next().map(str::to_ascii_lowercase).as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        _ => "application/octet-stream",
    }
    .to_owned()
}

pub(super) struct Part {
    pub(super) name: String,
    pub(super) filename: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

/// A small multipart/form-data reader, enough for what our client sends.
pub(super) fn parse_multipart(body: &[u8], content_type: &str) -> Vec<Part> {
    let Some(boundary) = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| format!("--{}", b.trim_matches('"')))
    else {
        return Vec::new();
    };
    let delim = boundary.as_bytes();
    let mut parts = Vec::new();
    let mut pos = match find(body, delim, 0) {
        Some(p) => p + delim.len(),
        None => return parts,
    };
    while let Some(next) = find(body, delim, pos) {
        let chunk = &body[pos..next];
        pos = next + delim.len();
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let Some(split) = find(chunk, b"\r\n\r\n", 0) else { continue };
        let head = String::from_utf8_lossy(&chunk[..split]).into_owned();
        let data = chunk[split + 4..].to_vec();
        let mut part = Part { name: String::new(), filename: None, content_type: None, data };
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        part.name = v.trim_matches('"').to_owned();
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        part.filename = Some(v.trim_matches('"').to_owned());
                    }
                }
            } else if lower.starts_with("content-type:") {
                part.content_type = line.split_once(':').map(|(_, v)| v.trim().to_owned());
            }
        }
        parts.push(part);
    }
    parts
}
