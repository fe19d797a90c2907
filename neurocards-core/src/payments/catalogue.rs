//! Credit packs on sale: data, not code. The catalogue is a TOML file shipped with the project
//! (`neurocards-core/packs.toml`, built in) that operators replace with `PACKS_PATH`.

use crate::domain::{Credits, PackId, Rail};
use crate::templates::Localized;
use serde::Deserialize;
use std::path::Path;

/// Largest pack and price accepted, against typos (and so that sums never overflow).
const MAX_CREDITS: i64 = 100_000;
const MAX_STARS: i64 = 1_000_000;
const MAX_KOPECKS: i64 = 10_000_000_000;

/// One pack: credits for a price on each rail it is sold on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    pub id: PackId,
    pub credits: Credits,
    /// Price in whole Telegram Stars.
    pub stars: i64,
    /// Price in kopecks for YooKassa; `None` when the pack is sold for Stars only.
    pub rub_kopecks: Option<i64>,
    /// Button label and invoice title.
    pub name: Localized,
}

impl Pack {
    /// The price on `rail` in its minor unit, when the pack is sold there.
    pub fn price(&self, rail: Rail) -> Option<i64> {
        match rail {
            Rail::Stars => Some(self.stars),
            Rail::YooKassa => self.rub_kopecks,
        }
    }
}

/// Formats kopecks as roubles for people: `390`, `390.50`.
pub fn format_rub(kopecks: i64) -> String {
    if kopecks % 100 == 0 {
        format!("{}", kopecks / 100)
    } else {
        format!("{}.{:02}", kopecks / 100, (kopecks % 100).abs())
    }
}

/// Why a pack catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PackCatalogueError {
    #[error("cannot read the pack catalogue {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the pack catalogue is not valid: {0}")]
    Invalid(String),
}

/// The packs on sale, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackCatalogue {
    packs: Vec<Pack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    #[serde(default)]
    pack: Vec<PackEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackEntry {
    id: PackId,
    credits: i64,
    stars: i64,
    rub: Option<Rub>,
    name: Localized,
}

/// A rouble price: a whole number (`390`) or a string with kopecks (`"390.50"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Rub {
    Whole(i64),
    Text(String),
}

impl Rub {
    fn kopecks(&self) -> Result<i64, String> {
        match self {
            Rub::Whole(r) => r.checked_mul(100).ok_or_else(|| format!("rub {r} is too large")),
            Rub::Text(s) => {
                parse_rub(s).ok_or_else(|| format!("rub {s:?} is not a price like 390.50"))
            }
        }
    }
}

fn parse_rub(s: &str) -> Option<i64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<2}").parse().ok()? };
    whole.checked_mul(100)?.checked_add(frac)
}

impl PackCatalogue {
    /// The catalogue shipped with the project.
    pub fn builtin() -> Self {
        #[allow(clippy::expect_used)]
        Self::from_toml(include_str!("../../packs.toml"))
            .expect("the built-in pack catalogue is valid (checked by a test)")
    }

    /// The operator's file when a path is given (`PACKS_PATH`), else the built-in catalogue. A
    /// given file that cannot be read or is invalid is an error, never a silent fallback.
    pub fn from_env_or_builtin(path: Option<&Path>) -> Result<Self, PackCatalogueError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    PackCatalogueError::Io { path: path.display().to_string(), source }
                })?;
                Self::from_toml(&text)
            }
            None => Ok(Self::builtin()),
        }
    }

    /// Parses a catalogue: ids unique, credits and prices positive and within bounds, names
    /// present in every language. An empty catalogue is valid: nothing is on sale.
    pub fn from_toml(text: &str) -> Result<Self, PackCatalogueError> {
        let file: PackFile =
            toml::from_str(text).map_err(|e| PackCatalogueError::Invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        let mut packs = Vec::with_capacity(file.pack.len());
        for entry in file.pack {
            let invalid = |why: String| PackCatalogueError::Invalid(format!("{}: {why}", entry.id));
            if !seen.insert(entry.id.clone()) {
                return Err(invalid("duplicate pack id".into()));
            }
            if !(1..=MAX_CREDITS).contains(&entry.credits) {
                return Err(invalid(format!("credits must be 1..={MAX_CREDITS}")));
            }
            if !(1..=MAX_STARS).contains(&entry.stars) {
                return Err(invalid(format!("stars must be 1..={MAX_STARS}")));
            }
            let rub_kopecks = entry.rub.as_ref().map(Rub::kopecks).transpose().map_err(invalid)?;
            if let Some(k) = rub_kopecks {
                if !(100..=MAX_KOPECKS).contains(&k) {
                    return Err(invalid("rub must be at least 1 rouble".into()));
                }
            }
            if entry.name.ru.trim().is_empty() || entry.name.en.trim().is_empty() {
                return Err(invalid("name needs ru and en".into()));
            }
            if entry.name.ru.chars().count() > 32 || entry.name.en.chars().count() > 32 {
                return Err(invalid("name is at most 32 characters (an invoice title)".into()));
            }
            let credits = Credits::new(entry.credits).map_err(|e| invalid(e.to_string()))?;
            packs.push(Pack {
                id: entry.id,
                credits,
                stars: entry.stars,
                rub_kopecks,
                name: entry.name,
            });
        }
        Ok(Self { packs })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pack> {
        self.packs.iter()
    }

    pub fn get(&self, id: &PackId) -> Option<&Pack> {
        self.packs.iter().find(|p| &p.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    /// Packs sold on `rail`.
    pub fn on(&self, rail: Rail) -> impl Iterator<Item = &Pack> {
        self.packs.iter().filter(move |p| p.price(rail).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_sells_four_packs_on_both_rails() {
        let c = PackCatalogue::builtin();
        let ids: Vec<_> = c.iter().map(|p| p.id.as_str().to_owned()).collect();
        assert_eq!(ids, ["pack5", "pack10", "pack30", "pack100"]);
        let p10 = c.get(&PackId::parse("pack10").expect("id")).expect("pack10");
        assert_eq!(p10.credits.get(), 10);
        assert_eq!(p10.price(Rail::YooKassa), Some(69_000));
        assert_eq!(c.on(Rail::Stars).count(), 4);
    }

    #[test]
    fn rouble_prices_are_exact() {
        assert_eq!(parse_rub("390"), Some(39_000));
        assert_eq!(parse_rub("390.5"), Some(39_050));
        assert_eq!(parse_rub("390.05"), Some(39_005));
        assert_eq!(parse_rub("390.055"), None);
        assert_eq!(parse_rub("-1"), None);
        assert_eq!(parse_rub("1e3"), None);
        assert_eq!(parse_rub("99999999999999999999"), None);
        assert_eq!(format_rub(39_050), "390.50");
        assert_eq!(format_rub(39_000), "390");
    }

    #[test]
    fn bad_catalogues_are_refused_with_the_reason() {
        let dup = r#"
            [[pack]]
            id = "a"
            credits = 1
            stars = 1
            name = { ru = "x", en = "x" }
            [[pack]]
            id = "a"
            credits = 1
            stars = 1
            name = { ru = "x", en = "x" }
        "#;
        let e = PackCatalogue::from_toml(dup).expect_err("duplicate");
        assert!(e.to_string().contains("duplicate"), "{e}");
        let zero = r#"
            [[pack]]
            id = "a"
            credits = 0
            stars = 1
            name = { ru = "x", en = "x" }
        "#;
        assert!(PackCatalogue::from_toml(zero).is_err());
        let stars_only = r#"
            [[pack]]
            id = "a"
            credits = 3
            stars = 100
            name = { ru = "x", en = "x" }
        "#;
        let c = PackCatalogue::from_toml(stars_only).expect("valid");
        assert_eq!(c.on(Rail::YooKassa).count(), 0);
        assert!(PackCatalogue::from_toml("").expect("empty is valid").is_empty());
    }
}
