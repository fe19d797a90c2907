//! Shared setup for the KIE contract tests.
#![allow(dead_code)]

use neurocards_core::domain::{AspectRatio, GenerationOptions, ImageData, ImageMime, Prompt};
use neurocards_core::kie::{KieConfig, KieProvider};
use neurocards_core::ports::GenerationRequest;
use neurocards_core::secret::Secret;
use neurocards_testkit::fake_kie::FakeKie;

pub const KEY_A: &str = "kie-key-aaaaaaaaaaaa";
pub const KEY_B: &str = "kie-key-bbbbbbbbbbbb";
pub const SORA: &str = "sora-2-image-to-video";
pub const KLING: &str = "kling-3.0/video";
pub const SEEDANCE: &str = "bytedance/seedance-2";

/// A config pointing at the fake with the given keys and models.
pub fn config(fake: &FakeKie, keys: &[&str], models: &[&str]) -> KieConfig {
    let mut c = KieConfig::new(keys.iter().map(|k| Secret::new(*k)).collect());
    c.base_url = fake.base_url();
    c.upload_url = fake.upload_url();
    c.models = models.iter().map(|m| (*m).to_owned()).collect();
    c
}

pub fn provider(fake: &FakeKie, keys: &[&str], models: &[&str]) -> KieProvider {
    KieProvider::new(config(fake, keys, models)).expect("provider builds")
}

pub fn request(fake: &FakeKie) -> GenerationRequest {
    GenerationRequest {
        image_url: format!("{}files/neurocards/photo.jpg", fake.upload_url()),
        prompt: Prompt::parse("A bottle of perfume turning slowly on a marble table")
            .expect("prompt"),
        options: GenerationOptions { aspect: AspectRatio::Portrait, duration_secs: 15 },
        model: None,
        callback_url: None,
    }
}

pub fn jpeg() -> ImageData {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend_from_slice(b"fake jpeg body");
    ImageData { bytes: bytes.into(), mime: ImageMime::Jpeg }
}
