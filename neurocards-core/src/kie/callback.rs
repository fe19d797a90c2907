//! KIE callbacks: verifying the optional HMAC signature and reading the task id. A callback is
//! a wake-up, never the truth: its body's state, URLs and fail codes are not read at all.
//!
//! Signature: `X-Webhook-Signature = base64(HMAC-SHA256(key, taskId + "." + timestamp))` with
//! `X-Webhook-Timestamp` in Unix seconds.

use crate::ports::{CallbackError, CallbackHeaders};
use crate::secret::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Header carrying the Unix time the callback was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Webhook-Timestamp";
/// Header carrying the base64 HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "X-Webhook-Signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &Secret, task_id: &str, timestamp: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = match HmacSha256::new_from_slice(key.expose().as_bytes()) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(task_id.as_bytes());
    m.update(b".");
    m.update(timestamp.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The signature KIE sends for this task and timestamp (base64). Used by test fakes.
pub fn sign(key: &Secret, task_id: &str, timestamp: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(key, task_id, timestamp))
}

/// Checks the signature headers: both present, the timestamp within `max_age` of `now_unix`
/// (either side, for clock skew), and the signature equal in constant time. Accepts standard or
/// URL-safe base64, and hex, since KIE's samples are not consistent.
pub fn verify_signature(
    key: &Secret,
    task_id: &str,
    headers: &CallbackHeaders,
    now_unix: i64,
    max_age: Duration,
) -> Result<(), CallbackError> {
    let ts = headers.timestamp.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let sig = headers.signature.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let (Some(ts), Some(sig)) = (ts, sig) else {
        return Err(CallbackError::BadSignature("missing signature headers"));
    };
    let mut secs: i64 = ts.parse().map_err(|_| CallbackError::BadSignature("bad timestamp"))?;
    if secs > 100_000_000_000 {
        // Milliseconds, not seconds.
        secs /= 1000;
    }
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    if now_unix.abs_diff(secs) > max_age.unsigned_abs() {
        return Err(CallbackError::BadSignature("stale timestamp"));
    }
    let expected = mac(key, task_id, ts);
    let candidates = [
        base64::engine::general_purpose::STANDARD.decode(sig).ok(),
        base64::engine::general_purpose::URL_SAFE.decode(sig).ok(),
        decode_hex(sig),
    ];
    let ok = candidates
        .iter()
        .flatten()
        .fold(subtle::Choice::from(0u8), |acc, c| acc | c.as_slice().ct_eq(expected.as_slice()));
    if bool::from(ok) {
        Ok(())
    } else {
        Err(CallbackError::BadSignature("signature mismatch"))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Longest task id accepted from a callback (KIE's ids are 32 hex characters).
pub const MAX_TASK_ID_LEN: usize = 128;

/// The task id of a callback body: `data.taskId`, `data.task_id`, `taskId` or `task_id`; only
/// printable ASCII without spaces, at most [`MAX_TASK_ID_LEN`] characters.
pub fn callback_task_id(body: &Value) -> Option<String> {
    let data = body.get("data");
    [
        data.and_then(|d| d.get("taskId")),
        data.and_then(|d| d.get("task_id")),
        body.get("taskId"),
        body.get("task_id"),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| v.as_str().map(str::trim).filter(|s| is_task_id(s)).map(str::to_owned))
}

fn is_task_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TASK_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Verifies a callback (the signature, when a key is configured) and returns the task id it
/// names. The rest of the body is deliberately ignored: a callback only wakes the job that
/// owns the task, and the task's state is read back from KIE (`recordInfo`) with the key that
/// created it. So a forged or replayed callback can at most cause one extra status check.
pub fn verify_callback(
    hmac_key: Option<&Secret>,
    max_age: Duration,
    now_unix: i64,
    headers: &CallbackHeaders,
    body: &[u8],
) -> Result<String, CallbackError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| CallbackError::Malformed("the body is not JSON".to_owned()))?;
    let task_id = callback_task_id(&value)
        .ok_or_else(|| CallbackError::Malformed("no task id".to_owned()))?;
    if let Some(key) = hmac_key {
        verify_signature(key, &task_id, headers, now_unix, max_age)?;
    }
    Ok(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn headers(ts: &str, sig: &str) -> CallbackHeaders {
        CallbackHeaders { timestamp: Some(ts.to_owned()), signature: Some(sig.to_owned()) }
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // printf 'task_1.1700000000' | openssl dgst -sha256 -hmac k -binary | base64
        let key = Secret::new("k");
        assert_eq!(sign(&key, "task_1", "1700000000"), KNOWN_SIGNATURE);
    }

    const KNOWN_SIGNATURE: &str = "Nw5I95q8kb5C7+X6vNbQDOZ0Ag3wu9DVExZIxzoW4sM=";

    #[test]
    fn signatures_are_checked_for_value_and_age() {
        let key = Secret::new("k");
        let age = Duration::from_secs(300);
        let ts = NOW.to_string();
        let good = sign(&key, "task_1", &ts);
        assert!(verify_signature(&key, "task_1", &headers(&ts, &good), NOW, age).is_ok());
        assert!(verify_signature(&key, "task_2", &headers(&ts, &good), NOW, age).is_err());
        let other = sign(&Secret::new("other"), "task_1", &ts);
        assert!(verify_signature(&key, "task_1", &headers(&ts, &other), NOW, age).is_err());
        let old = (NOW - 301).to_string();
        let old_sig = sign(&key, "task_1", &old);
        assert_eq!(
            verify_signature(&key, "task_1", &headers(&old, &old_sig), NOW, age),
            Err(CallbackError::BadSignature("stale timestamp"))
        );
        assert!(verify_signature(&key, "task_1", &CallbackHeaders::default(), NOW, age).is_err());
        let hex: String = mac(&key, "task_1", &ts).iter().map(|b| format!("{b:02x}")).collect();
        assert!(verify_signature(&key, "task_1", &headers(&ts, &hex), NOW, age).is_ok());
    }

    #[test]
    fn a_callback_yields_only_its_task_id() {
        let none = CallbackHeaders::default();
        let ok =
            br#"{"code":200,"msg":"Playground task completed successfully.","data":{"taskId":"t1",
            "state":"success","resultJson":"{\"resultUrls\":[\"https://r/v.mp4\"]}"}}"#;
        assert_eq!(verify_callback(None, Duration::ZERO, NOW, &none, ok), Ok("t1".to_owned()));
        let failed = br#"{"code":501,"data":{"task_id":"t2","state":"fail"}}"#;
        assert_eq!(verify_callback(None, Duration::ZERO, NOW, &none, failed), Ok("t2".to_owned()));
        for bad in [
            &b"nope"[..],
            br#"{"data":{}}"#,
            br#"{"taskId":""}"#,
            br#"{"taskId":"has space"}"#,
            br#"{"taskId":7}"#,
        ] {
            assert!(matches!(
                verify_callback(None, Duration::ZERO, NOW, &none, bad),
                Err(CallbackError::Malformed(_))
            ));
        }
        let long = format!(r#"{{"taskId":"{}"}}"#, "a".repeat(MAX_TASK_ID_LEN + 1));
        assert!(verify_callback(None, Duration::ZERO, NOW, &none, long.as_bytes()).is_err());
    }

    #[test]
    fn a_configured_key_makes_the_signature_mandatory() {
        let key = Secret::new("k");
        let body = br#"{"taskId":"t3","data":{"state":"generating","progress":40}}"#;
        let none = CallbackHeaders::default();
        let age = Duration::from_secs(300);
        assert!(verify_callback(Some(&key), age, NOW, &none, body).is_err());
        let ts = NOW.to_string();
        let signed = headers(&ts, &sign(&key, "t3", &ts));
        assert_eq!(verify_callback(Some(&key), age, NOW, &signed, body), Ok("t3".to_owned()));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json_body() -> impl Strategy<Value = Vec<u8>> {
            let task = prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,200}".prop_map(serde_json::Value::from),
            ];
            (task, ".{0,40}", any::<bool>()).prop_map(|(task, state, nested)| {
                let body = if nested {
                    serde_json::json!({"code": 200, "data": {"taskId": task, "state": state}})
                } else {
                    serde_json::json!({"task_id": task, "data": state})
                };
                body.to_string().into_bytes()
            })
        }

        fn any_body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![proptest::collection::vec(any::<u8>(), 0..512), json_body()]
        }

        fn any_headers() -> impl Strategy<Value = CallbackHeaders> {
            (proptest::option::of(".{0,30}"), proptest::option::of(".{0,90}"))
                .prop_map(|(timestamp, signature)| CallbackHeaders { timestamp, signature })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_callback_yields_a_clean_task_id_or_a_refusal(
                body in any_body(),
                headers in any_headers(),
                now in any::<i64>(),
                age in any::<u64>(),
            ) {
                let age = Duration::from_secs(age);
                if let Ok(task) = verify_callback(None, age, now, &headers, &body) {
                    prop_assert!(is_task_id(&task));
                }
                // With a key, nothing unsigned or wrongly signed gets through.
                let key = Secret::new("k");
                if let Ok(task) = verify_callback(Some(&key), age, now, &headers, &body) {
                    let ts = headers.timestamp.as_deref().unwrap_or_default().trim();
                    let expected = sign(&key, &task, ts);
                    let given = headers.signature.as_deref().unwrap_or_default().trim();
                    let hex: String =
                        mac(&key, &task, ts).iter().map(|b| format!("{b:02x}")).collect();
                    let url_safe = base64::engine::general_purpose::URL_SAFE
                        .encode(mac(&key, &task, ts));
                    prop_assert!(given == expected || given == hex || given == url_safe);
                }
            }

            #[test]
            fn a_signed_callback_verifies_only_for_its_own_task_and_time(
                task in "[A-Za-z0-9_-]{1,64}",
                other in "[A-Za-z0-9_-]{1,64}",
                now in 0i64..4_000_000_000,
                skew in -600i64..600,
            ) {
                let key = Secret::new("hmac");
                let ts = (now + skew).to_string();
                let headers = CallbackHeaders {
                    timestamp: Some(ts.clone()),
                    signature: Some(sign(&key, &task, &ts)),
                };
                let age = Duration::from_secs(300);
                let body = serde_json::json!({"data": {"taskId": task}}).to_string();
                let got = verify_callback(Some(&key), age, now, &headers, body.as_bytes());
                prop_assert_eq!(got.is_ok(), skew.abs() <= 300);
                if task != other {
                    let forged = serde_json::json!({"data": {"taskId": other}}).to_string();
                    let got = verify_callback(Some(&key), age, now, &headers, forged.as_bytes());
                    prop_assert!(got.is_err());
                }
            }
        }
    }
}
