//! Video models on KIE's market jobs API and how each maps our generation options to its own
//! `input` (api-facts §1.2, §1.3). The envelope around `input` is the same for all of them.

use crate::domain::{AspectRatio, GenerationOptions};
use serde_json::{json, Value};

/// A model family we know how to build `input` for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoModel {
    /// `sora-2-image-to-video` and its Pro / Stable variants: `aspect_ratio` portrait|landscape,
    /// `n_frames` "10"|"15" as a string.
    Sora2 { slug: String },
    /// `kling-3.0/video`: `duration` "3".."15" as a string, `aspect_ratio` 16:9|9:16|1:1.
    Kling3 { slug: String },
    /// `bytedance/seedance-2…`: `duration` 4..15 as a number, `reference_image_urls`.
    Seedance2 { slug: String },
}

/// A model name we have no input mapping for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown KIE model {0:?}: use a sora-2 image-to-video slug, kling-3.0/video or bytedance/seedance-2")]
pub struct UnknownModel(pub String);

impl VideoModel {
    /// Recognises a configured model slug.
    pub fn parse(slug: &str) -> Result<Self, UnknownModel> {
        let s = slug.trim();
        let lower = s.to_ascii_lowercase();
        let slug = s.to_owned();
        if lower.starts_with("sora-2") && lower.contains("image-to-video") {
            Ok(VideoModel::Sora2 { slug })
        } else if lower.starts_with("kling-3.0/") {
            Ok(VideoModel::Kling3 { slug })
        } else if lower.starts_with("bytedance/seedance-2") {
            Ok(VideoModel::Seedance2 { slug })
        } else {
            Err(UnknownModel(slug))
        }
    }

    /// The name a seller sees.
    pub fn display_name(&self) -> String {
        match self {
            VideoModel::Sora2 { slug } if slug.to_ascii_lowercase().contains("pro") => {
                "Sora 2 Pro".to_owned()
            }
            VideoModel::Sora2 { .. } => "Sora 2".to_owned(),
            VideoModel::Kling3 { .. } => "Kling 3.0".to_owned(),
            VideoModel::Seedance2 { .. } => "Seedance 2".to_owned(),
        }
    }

    /// The clip lengths, in seconds, the model makes (see [`VideoModel::input`]).
    pub fn durations(&self) -> &'static [u32] {
        match self {
            VideoModel::Sora2 { .. } => &[10, 15],
            VideoModel::Kling3 { .. } | VideoModel::Seedance2 { .. } => &[5, 10, 15],
        }
    }

    /// The slug sent as `model`.
    pub fn slug(&self) -> &str {
        match self {
            VideoModel::Sora2 { slug }
            | VideoModel::Kling3 { slug }
            | VideoModel::Seedance2 { slug } => slug,
        }
    }

    /// The `input` object for one image-to-video task.
    pub fn input(
        &self,
        prompt: &str,
        image_url: &str,
        options: &GenerationOptions,
        remove_watermark: bool,
    ) -> Value {
        match self {
            VideoModel::Sora2 { slug } => {
                // Sora knows only two orientations; a square request becomes portrait, the
                // format product videos are watched in.
                let aspect = match options.aspect {
                    AspectRatio::Landscape => "landscape",
                    AspectRatio::Portrait | AspectRatio::Square => "portrait",
                };
                let frames = if options.duration_secs <= 12 { "10" } else { "15" };
                let mut input = json!({
                    "prompt": prompt,
                    "image_urls": [image_url],
                    "aspect_ratio": aspect,
                    "n_frames": frames,
                });
                // The "stable" variants do not list remove_watermark (api-facts §1.2).
                if !slug.contains("stable") {
                    input["remove_watermark"] = Value::Bool(remove_watermark);
                }
                input
            }
            VideoModel::Kling3 { .. } => json!({
                "prompt": prompt,
                "image_urls": [image_url],
                "duration": options.duration_secs.clamp(3, 15).to_string(),
                "aspect_ratio": ratio(options.aspect),
                "mode": "std",
                // Sora's clips have sound; the fallbacks keep the product the same.
                "sound": true,
            }),
            VideoModel::Seedance2 { .. } => json!({
                "prompt": prompt,
                "reference_image_urls": [image_url],
                "duration": options.duration_secs.clamp(4, 15),
                "aspect_ratio": ratio(options.aspect),
                "resolution": "720p",
                "generate_audio": true,
            }),
        }
    }
}

fn ratio(aspect: AspectRatio) -> &'static str {
    match aspect {
        AspectRatio::Portrait => "9:16",
        AspectRatio::Landscape => "16:9",
        AspectRatio::Square => "1:1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(aspect: AspectRatio, duration_secs: u32) -> GenerationOptions {
        GenerationOptions { aspect, duration_secs }
    }

    #[test]
    fn sora_gets_portrait_or_landscape_and_frames_as_a_string() {
        let m = VideoModel::parse("sora-2-image-to-video").expect("known");
        let input = m.input("p", "https://u/x.jpg", &opts(AspectRatio::Portrait, 15), true);
        assert_eq!(
            input,
            json!({"prompt":"p","image_urls":["https://u/x.jpg"],"aspect_ratio":"portrait",
                   "n_frames":"15","remove_watermark":true})
        );
        let input = m.input("p", "u", &opts(AspectRatio::Landscape, 10), false);
        assert_eq!(input["aspect_ratio"], "landscape");
        assert_eq!(input["n_frames"], "10");
        let stable = VideoModel::parse("sora-2-image-to-video-stable").expect("known");
        assert!(stable
            .input("p", "u", &opts(AspectRatio::Square, 15), true)
            .get("remove_watermark")
            .is_none());
    }

    #[test]
    fn kling_and_seedance_map_aspect_and_duration_to_their_own_fields() {
        let k = VideoModel::parse("kling-3.0/video").expect("known");
        let input = k.input("p", "u", &opts(AspectRatio::Portrait, 20), true);
        assert_eq!(input["duration"], "15");
        assert_eq!(input["aspect_ratio"], "9:16");
        assert_eq!(input["image_urls"], json!(["u"]));
        let s = VideoModel::parse("bytedance/seedance-2").expect("known");
        let input = s.input("p", "u", &opts(AspectRatio::Square, 2), true);
        assert_eq!(input["duration"], 4);
        assert_eq!(input["aspect_ratio"], "1:1");
        assert_eq!(input["reference_image_urls"], json!(["u"]));
    }

    #[test]
    fn unknown_models_are_refused_at_configuration() {
        assert!(VideoModel::parse("veo3").is_err());
        assert!(VideoModel::parse("sora-2-text-to-video").is_err());
    }
}
