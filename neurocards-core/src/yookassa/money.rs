//! Exact conversion between kopecks and YooKassa's decimal strings (`"390.00"`).
//!
//! Amounts never pass through floating point: a string is read digit by digit with checked
//! arithmetic, and anything that is not a plain non-negative decimal with at most two fraction
//! digits is refused.

/// Why an amount could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a plain decimal number (`"390.00"`, `"390.5"` or `"390"`): empty, a sign, an
    /// exponent, spaces, a lone dot, or other characters.
    #[error("not a decimal amount: {0:?}")]
    NotDecimal(String),
    /// More than two digits after the dot: the amount is finer than a kopeck.
    #[error("more than two decimals: {0:?}")]
    TooPrecise(String),
    /// Does not fit in an `i64` count of kopecks.
    #[error("amount too large: {0:?}")]
    Overflow(String),
    /// A negative count of kopecks cannot be sent as a price.
    #[error("negative amount: {0} kopecks")]
    Negative(i64),
}

/// Longest amount string read (an `i64` of kopecks has at most 19 digits, plus the dot).
const MAX_LEN: usize = 32;

/// Formats kopecks as YooKassa writes amounts: `39000` → `"390.00"`, `5` → `"0.05"`.
/// Fails only for negative amounts.
pub fn kopecks_to_value(kopecks: i64) -> Result<String, MoneyError> {
    if kopecks < 0 {
        return Err(MoneyError::Negative(kopecks));
    }
    Ok(format!("{}.{:02}", kopecks / 100, kopecks % 100))
}

/// Reads a YooKassa amount string as kopecks: `"390.00"`, `"390.5"` and `"390"` are 39000,
/// 39050 and 39000. Refuses signs, exponents, spaces, more than two decimals and values
/// beyond `i64::MAX` kopecks.
pub fn value_to_kopecks(value: &str) -> Result<i64, MoneyError> {
    let shown = || value.chars().take(MAX_LEN).collect::<String>();
    if value.len() > MAX_LEN {
        return Err(MoneyError::Overflow(shown()));
    }
    let (whole, fraction) = match value.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (value, None),
    };
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(whole) || fraction.is_some_and(|f| !digits_only(f)) {
        return Err(MoneyError::NotDecimal(shown()));
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > 2 {
        return Err(MoneyError::TooPrecise(shown()));
    }
    let overflow = || MoneyError::Overflow(shown());
    let mut rubles: i64 = 0;
    for b in whole.bytes() {
        rubles = rubles
            .checked_mul(10)
            .and_then(|r| r.checked_add(i64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    let mut kopecks: i64 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        let digit = i64::from(b - b'0');
        kopecks += if i == 0 { digit * 10 } else { digit };
    }
    rubles.checked_mul(100).and_then(|r| r.checked_add(kopecks)).ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_with_two_decimals() {
        assert_eq!(kopecks_to_value(39_000).as_deref(), Ok("390.00"));
        assert_eq!(kopecks_to_value(5).as_deref(), Ok("0.05"));
        assert_eq!(kopecks_to_value(0).as_deref(), Ok("0.00"));
        assert_eq!(kopecks_to_value(12_345).as_deref(), Ok("123.45"));
        assert_eq!(kopecks_to_value(i64::MAX).as_deref(), Ok("92233720368547758.07"));
        assert_eq!(kopecks_to_value(-1), Err(MoneyError::Negative(-1)));
    }

    #[test]
    fn reads_plain_decimals_exactly() {
        assert_eq!(value_to_kopecks("390.00"), Ok(39_000));
        assert_eq!(value_to_kopecks("390.5"), Ok(39_050));
        assert_eq!(value_to_kopecks("390"), Ok(39_000));
        assert_eq!(value_to_kopecks("0.01"), Ok(1));
        assert_eq!(value_to_kopecks("0390.10"), Ok(39_010));
        assert_eq!(value_to_kopecks("92233720368547758.07"), Ok(i64::MAX));
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        for junk in
            ["", ".", "1.", ".5", "-1.00", "+1.00", " 1.00", "1.00 ", "1e3", "1,00", "1.0.0"]
        {
            assert!(matches!(value_to_kopecks(junk), Err(MoneyError::NotDecimal(_))), "{junk:?}");
        }
        assert!(matches!(value_to_kopecks("1.001"), Err(MoneyError::TooPrecise(_))));
        assert!(matches!(value_to_kopecks("390.000"), Err(MoneyError::TooPrecise(_))));
        assert!(matches!(value_to_kopecks("92233720368547758.08"), Err(MoneyError::Overflow(_))));
        assert!(matches!(value_to_kopecks("99999999999999999999"), Err(MoneyError::Overflow(_))));
        let long = "1".repeat(10_000);
        assert!(matches!(value_to_kopecks(&long), Err(MoneyError::Overflow(_))));
    }

    proptest! {
        #[test]
        fn every_non_negative_amount_round_trips(kopecks in 0..=i64::MAX) {
            let text = kopecks_to_value(kopecks).expect("non-negative formats");
            prop_assert_eq!(value_to_kopecks(&text), Ok(kopecks));
        }

        #[test]
        fn readable_strings_format_back_canonically(rubles in 0u32..10_000_000, k in 0u32..100) {
            let text = format!("{rubles}.{k:02}");
            let kopecks = value_to_kopecks(&text).expect("reads");
            prop_assert_eq!(kopecks_to_value(kopecks).expect("formats"), text);
        }
    }
}
