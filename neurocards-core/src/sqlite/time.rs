//! Times in the embedded store: integer milliseconds since the Unix epoch, UTC.

use chrono::{DateTime, TimeZone as _, Utc};
use std::time::Duration;

/// Now, in store milliseconds.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A duration in whole milliseconds, saturating instead of overflowing.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored time back as a `DateTime`; out-of-range values (never written by us) become the
/// epoch rather than a panic.
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::UNIX_EPOCH)
}

/// A `DateTime` in store milliseconds.
pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_saturates() {
        let t = from_ms(1_764_547_200_123);
        assert_eq!(to_ms(t), 1_764_547_200_123);
        assert_eq!(duration_ms(Duration::from_secs(2)), 2000);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
        assert_eq!(from_ms(i64::MAX), DateTime::UNIX_EPOCH);
    }
}
