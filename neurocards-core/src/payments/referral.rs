//! Referral links: `https://t.me/<bot>?start=ref_<code>`, where the code is the referrer's user
//! id in base 36 (short, and the same every time, so nothing needs storing).

use crate::domain::UserId;

/// The `/start` argument that names `referrer`.
pub fn start_argument(referrer: UserId) -> String {
    format!("ref_{}", to_base36(referrer.get()))
}

/// The referrer a `/start` argument names; `None` for anything else (never panics, whatever the
/// input).
pub fn parse_start_argument(arg: &str) -> Option<UserId> {
    let code = arg.trim().strip_prefix("ref_")?;
    if code.is_empty() || code.len() > 13 {
        return None;
    }
    let id = i64::from_str_radix(code, 36).ok()?;
    (id > 0).then_some(UserId(id))
}

/// The link a user shares.
pub fn link(bot_username: &str, referrer: UserId) -> String {
    format!("https://t.me/{bot_username}?start={}", start_argument(referrer))
}

fn to_base36(mut v: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if v <= 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while v > 0 {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_round_trip() {
        assert_eq!(start_argument(UserId(36)), "ref_10");
        assert_eq!(parse_start_argument("ref_10"), Some(UserId(36)));
        assert_eq!(parse_start_argument("ref_"), None);
        assert_eq!(parse_start_argument("ref_-5"), None);
        assert_eq!(parse_start_argument("promo"), None);
        assert_eq!(parse_start_argument("ref_zzzzzzzzzzzzzzzzzz"), None);
        assert_eq!(link("neuro_bot", UserId(36)), "https://t.me/neuro_bot?start=ref_10");
    }

    proptest! {
        #[test]
        fn any_user_id_round_trips(id in 1i64..=i64::MAX) {
            prop_assert_eq!(parse_start_argument(&start_argument(UserId(id))), Some(UserId(id)));
        }

        #[test]
        fn any_text_parses_without_panicking(s in ".{0,40}") {
            let _ = parse_start_argument(&s);
        }
    }
}
