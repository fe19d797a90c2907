//! The models, aspects and lengths a seller can choose for an order, and what each costs.
//!
//! The models on offer are the configured ones (the primary first); each lists the lengths it
//! makes. A (model, length) costs its configured price, or the base price per video when none
//! is configured. Without a choice an order keeps the template's format on the primary model:
//! the one-tap path.

use crate::domain::{AspectRatio, Credits, GenerationOptions, VideoFormat};

/// A model a seller can choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    /// The slug the provider knows it by.
    pub slug: String,
    /// The name the seller sees.
    pub name: String,
    /// The clip lengths it makes, in seconds, shortest first (never empty).
    pub durations: Vec<u32>,
}

/// A configured price: one video of `model` lasting `duration_secs` costs `credits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPrice {
    pub model: String,
    pub duration_secs: u32,
    pub credits: Credits,
}

/// The choices on offer; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoChoices {
    /// The models, primary first; empty when the host offers no model choice (then only the
    /// aspect can be chosen).
    pub models: Vec<ModelChoice>,
    pub prices: Vec<VideoPrice>,
}

/// The aspects offered: vertical (Reels, Shorts, Stories) and horizontal.
pub const ASPECTS: [AspectRatio; 2] = [AspectRatio::Portrait, AspectRatio::Landscape];

/// A change the seller makes to the format on the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChange {
    Aspect(AspectRatio),
    Duration(u32),
    /// The model at this index of [`VideoChoices::models`].
    Model(usize),
}

impl VideoChoices {
    /// The format an order gets without a choice: the template's options on the primary
    /// model, the length put to the nearest one the model makes.
    pub fn default_format(&self, template: GenerationOptions) -> VideoFormat {
        let model = self.models.first();
        VideoFormat {
            model: model.map(|m| m.slug.clone()),
            options: GenerationOptions {
                aspect: template.aspect,
                duration_secs: model.map_or(template.duration_secs, |m| {
                    nearest(&m.durations, template.duration_secs)
                }),
            },
        }
    }

    /// The model choice named by `slug`, if it is on offer.
    pub fn model(&self, slug: Option<&str>) -> Option<&ModelChoice> {
        slug.and_then(|s| self.models.iter().find(|m| m.slug == s))
    }

    /// What one video in `format` costs: its configured price, else `base`.
    pub fn price(&self, format: &VideoFormat, base: Credits) -> Credits {
        let Some(model) = format.model.as_deref() else { return base };
        self.prices
            .iter()
            .find(|p| p.model == model && p.duration_secs == format.options.duration_secs)
            .map_or(base, |p| p.credits)
    }

    /// `format` with `change` applied; `None` when the change is not on offer (a stale or
    /// forged button). A new model keeps the aspect and takes its nearest length.
    pub fn apply(&self, format: &VideoFormat, change: FormatChange) -> Option<VideoFormat> {
        let mut next = format.clone();
        match change {
            FormatChange::Aspect(aspect) => {
                if !ASPECTS.contains(&aspect) {
                    return None;
                }
                next.options.aspect = aspect;
            }
            FormatChange::Duration(secs) => {
                let model = self.model(format.model.as_deref())?;
                if !model.durations.contains(&secs) {
                    return None;
                }
                next.options.duration_secs = secs;
            }
            FormatChange::Model(index) => {
                let model = self.models.get(index)?;
                next.model = Some(model.slug.clone());
                next.options.duration_secs =
                    nearest(&model.durations, format.options.duration_secs);
            }
        }
        Some(next)
    }
}

/// The value of `options` nearest to `wanted` (the longer one on a tie); `wanted` when empty.
fn nearest(options: &[u32], wanted: u32) -> u32 {
    options.iter().copied().min_by_key(|d| (d.abs_diff(wanted), u32::MAX - d)).unwrap_or(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices() -> VideoChoices {
        VideoChoices {
            models: vec![
                ModelChoice { slug: "sora".into(), name: "Sora 2".into(), durations: vec![10, 15] },
                ModelChoice {
                    slug: "kling".into(),
                    name: "Kling 3.0".into(),
                    durations: vec![5, 10, 15],
                },
            ],
            prices: vec![
                VideoPrice { model: "sora".into(), duration_secs: 15, credits: cr(2) },
                VideoPrice { model: "kling".into(), duration_secs: 5, credits: cr(1) },
            ],
        }
    }

    fn cr(n: i64) -> Credits {
        Credits::new(n).expect("non-negative")
    }

    fn portrait(secs: u32) -> GenerationOptions {
        GenerationOptions { aspect: AspectRatio::Portrait, duration_secs: secs }
    }

    #[test]
    fn the_default_is_the_templates_format_on_the_primary_model() {
        let c = choices();
        let f = c.default_format(portrait(12));
        assert_eq!(f, VideoFormat { model: Some("sora".into()), options: portrait(10) });
        let none = VideoChoices::default().default_format(portrait(12));
        assert_eq!(none, VideoFormat { model: None, options: portrait(12) });
    }

    #[test]
    fn prices_come_from_configuration_or_the_base() {
        let c = choices();
        let base = cr(1);
        let sora15 = VideoFormat { model: Some("sora".into()), options: portrait(15) };
        assert_eq!(c.price(&sora15, base), cr(2));
        let sora10 = VideoFormat { model: Some("sora".into()), options: portrait(10) };
        assert_eq!(c.price(&sora10, cr(3)), cr(3));
        assert_eq!(c.price(&VideoFormat { model: None, options: portrait(15) }, base), base);
    }

    #[test]
    fn changes_stay_within_what_is_offered() {
        let c = choices();
        let f = c.default_format(portrait(15));
        let kling = c.apply(&f, FormatChange::Model(1)).expect("offered");
        assert_eq!(kling.model.as_deref(), Some("kling"));
        assert_eq!(kling.options.duration_secs, 15);
        let short = c.apply(&kling, FormatChange::Duration(5)).expect("kling makes 5 s");
        assert_eq!(short.options.duration_secs, 5);
        let back = c.apply(&short, FormatChange::Model(0)).expect("offered");
        assert_eq!(back.options.duration_secs, 10, "sora's nearest length");
        assert_eq!(c.apply(&back, FormatChange::Duration(5)), None, "sora makes no 5 s");
        assert_eq!(c.apply(&back, FormatChange::Model(7)), None);
        assert_eq!(c.apply(&back, FormatChange::Aspect(AspectRatio::Square)), None);
        let wide = c.apply(&back, FormatChange::Aspect(AspectRatio::Landscape)).expect("ok");
        assert_eq!(wide.options.aspect, AspectRatio::Landscape);
    }
}
