//! The [`KeyBudgets`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. Every function gets two handles on one backend, as two processes of a fleet
//! hold them (on the in-memory backend, both are the same value).

use chrono::Utc;
use neurocards_core::domain::ErrorClass;
use neurocards_core::ports::{KeyBudgets, KeyOff, KeyOffKind, Permit, PermitKind, RateLimit};
use std::sync::Arc;
use std::time::Duration;

/// Two handles on one backend.
pub type Pair = (Arc<dyn KeyBudgets>, Arc<dyn KeyBudgets>);

const A: &str = "key-aaaaaaaa";
const B: &str = "key-bbbbbbbb";

fn limit(max: u32, per_ms: u64) -> RateLimit {
    RateLimit { max, per: Duration::from_millis(per_ms) }
}

fn off(kind: KeyOffKind, secs: i64, class: ErrorClass) -> KeyOff {
    KeyOff { kind, until: Utc::now() + chrono::Duration::seconds(secs), class }
}

async fn take(k: &Arc<dyn KeyBudgets>, key: &str, kind: PermitKind, l: RateLimit) -> Permit {
    k.take(key, kind, l).await.expect("the key store answers")
}

async fn record(k: &Arc<dyn KeyBudgets>, key: &str) -> neurocards_core::ports::KeyRecord {
    let all = k.keys().await.expect("the key store answers");
    all.into_iter().find(|r| r.key_id == key).expect("the key is known")
}

/// Up to `max` permits are granted; the next one waits for at most the window.
pub async fn permits_within_the_limit_are_granted_then_wait((k, _): Pair) {
    let l = limit(3, 2_000);
    for _ in 0..3 {
        assert_eq!(take(&k, A, PermitKind::Create, l).await, Permit::Granted);
    }
    match take(&k, A, PermitKind::Create, l).await {
        Permit::Wait(w) => {
            assert!(w > Duration::ZERO && w <= Duration::from_millis(2_000), "{w:?}")
        }
        other => panic!("the fourth permit must wait, got {other:?}"),
    }
    assert_eq!(record(&k, A).await.creates, 3, "only granted permits are counted");
}

/// Each key has its own budgets, and creates and status checks are counted apart.
pub async fn budgets_are_per_key_and_per_kind((k, other): Pair) {
    let l = limit(2, 60_000);
    for _ in 0..2 {
        assert_eq!(take(&k, A, PermitKind::Create, l).await, Permit::Granted);
    }
    assert!(matches!(take(&other, A, PermitKind::Create, l).await, Permit::Wait(_)));
    assert_eq!(take(&other, B, PermitKind::Create, l).await, Permit::Granted);
    assert_eq!(take(&other, A, PermitKind::Status, l).await, Permit::Granted);
    let a = record(&k, A).await;
    assert_eq!((a.creates, a.checks), (2, 1));
}

/// After the wait a permit answered, a place is free again.
pub async fn a_place_frees_up_after_the_wait((k, other): Pair) {
    let l = limit(2, 400);
    assert_eq!(take(&k, A, PermitKind::Status, l).await, Permit::Granted);
    assert_eq!(take(&k, A, PermitKind::Status, l).await, Permit::Granted);
    let Permit::Wait(w) = take(&other, A, PermitKind::Status, l).await else {
        panic!("the third permit must wait");
    };
    tokio::time::sleep(w + Duration::from_millis(20)).await;
    assert_eq!(take(&other, A, PermitKind::Status, l).await, Permit::Granted);
}

/// Many takers on two handles at once never get more than the limit in one window.
pub async fn concurrent_takers_never_exceed_the_limit((k, other): Pair) {
    let l = limit(10, 60_000);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let handle = if i % 2 == 0 { k.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            let mut granted = 0;
            for _ in 0..4 {
                if handle.take(A, PermitKind::Create, l).await.expect("answers") == Permit::Granted
                {
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("taker finished");
    }
    assert_eq!(total, 10, "64 tries, a budget of 10");
    assert_eq!(record(&k, A).await.creates, 10);
}

/// A key out of rotation refuses creates (saying why and until when) but still allows the
/// status checks of the tasks it created; both handles see it.
pub async fn an_off_key_refuses_creates_but_not_status_checks((k, other): Pair) {
    let l = limit(20, 10_000);
    k.set_off(A, off(KeyOffKind::Cooling, 60, ErrorClass::RateLimit)).await.expect("stored");
    match take(&other, A, PermitKind::Create, l).await {
        Permit::Off(o) => {
            assert_eq!((o.kind, o.class), (KeyOffKind::Cooling, ErrorClass::RateLimit));
            let left = o.until - Utc::now();
            assert!(left > chrono::Duration::seconds(55) && left <= chrono::Duration::seconds(61));
        }
        p => panic!("a cooling key must refuse creates, got {p:?}"),
    }
    assert_eq!(take(&other, A, PermitKind::Status, l).await, Permit::Granted);
    assert_eq!(take(&other, B, PermitKind::Create, l).await, Permit::Granted);
    let a = record(&other, A).await;
    assert_eq!(a.state_at(Utc::now()), "cooling");
    assert_eq!(a.last_error.map(|(c, _)| c), Some(ErrorClass::RateLimit));
    assert_eq!(a.creates, 0);
}

/// A cool-down reported after a block never shortens the block.
pub async fn a_shorter_off_never_shortens_a_longer_one((k, other): Pair) {
    k.set_off(A, off(KeyOffKind::Blocked, 24 * 3600, ErrorClass::Billing)).await.expect("stored");
    other.set_off(A, off(KeyOffKind::Cooling, 60, ErrorClass::RateLimit)).await.expect("stored");
    let a = record(&k, A).await;
    let o = a.off.expect("still off");
    assert_eq!((o.kind, o.class), (KeyOffKind::Blocked, ErrorClass::Billing));
    assert!(o.until - Utc::now() > chrono::Duration::hours(23));
    assert_eq!(a.last_error.map(|(c, _)| c), Some(ErrorClass::RateLimit), "the last error is kept");
}

/// An operator's lift puts one key, or every key, back into rotation at once.
pub async fn lifting_puts_keys_back_into_rotation((k, other): Pair) {
    let l = limit(20, 10_000);
    k.set_off(A, off(KeyOffKind::Blocked, 3600, ErrorClass::Billing)).await.expect("stored");
    k.set_off(B, off(KeyOffKind::Blocked, 3600, ErrorClass::Config)).await.expect("stored");
    assert_eq!(other.lift(Some(A)).await.expect("lifted"), 1);
    assert_eq!(take(&k, A, PermitKind::Create, l).await, Permit::Granted);
    assert!(matches!(take(&k, B, PermitKind::Create, l).await, Permit::Off(_)));
    assert_eq!(other.lift(None).await.expect("lifted"), 1, "only B was still out");
    assert_eq!(take(&k, B, PermitKind::Create, l).await, Permit::Granted);
    assert_eq!(other.lift(None).await.expect("nothing to lift"), 0);
}

/// Paused status checks wait; creates on the same key go on.
pub async fn paused_checks_wait_while_creates_go_on((k, other): Pair) {
    let l = limit(20, 10_000);
    let until = Utc::now() + chrono::Duration::milliseconds(800);
    k.pause_checks(A, until).await.expect("stored");
    match take(&other, A, PermitKind::Status, l).await {
        Permit::Wait(w) => assert!(w > Duration::ZERO && w <= Duration::from_millis(800), "{w:?}"),
        p => panic!("paused checks must wait, got {p:?}"),
    }
    assert_eq!(take(&other, A, PermitKind::Create, l).await, Permit::Granted);
    let a = record(&k, A).await;
    assert_eq!(a.state_at(Utc::now()), "healthy");
    assert!(a.checks_paused_until.is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(take(&other, A, PermitKind::Status, l).await, Permit::Granted);
    assert!(record(&k, A).await.checks_paused_until.is_none());
}

/// A cool-down that ran out is neither reported nor enforced.
pub async fn an_expired_off_is_over((k, other): Pair) {
    let until = Utc::now() + chrono::Duration::milliseconds(300);
    k.set_off(A, KeyOff { kind: KeyOffKind::Cooling, until, class: ErrorClass::RateLimit })
        .await
        .expect("stored");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(record(&other, A).await.off.is_none());
    assert_eq!(take(&other, A, PermitKind::Create, limit(20, 10_000)).await, Permit::Granted);
}

/// Registered keys are listed before their first request, once each.
pub async fn registered_keys_are_listed((k, other): Pair) {
    k.register(&[A.to_owned(), B.to_owned()]).await.expect("registered");
    other.register(&[B.to_owned()]).await.expect("registering again is harmless");
    let all = k.keys().await.expect("listed");
    let ids: Vec<&str> = all.iter().map(|r| r.key_id.as_str()).collect();
    assert_eq!(ids, [A, B]);
    assert!(all.iter().all(|r| r.off.is_none() && r.creates == 0 && r.credits.is_none()));
}

/// One handle per period gets to read a key's balance; a failed read keeps the last figure.
pub async fn balance_reads_are_claimed_once_per_period((k, other): Pair) {
    let every = Duration::from_secs(3600);
    assert!(k.claim_balance_read(A, every).await.expect("claimed"));
    assert!(!other.claim_balance_read(A, every).await.expect("answered"));
    assert!(other.claim_balance_read(B, every).await.expect("another key is its own"));
    k.record_balance(A, Ok(1234.5)).await.expect("recorded");
    let a = record(&other, A).await;
    assert_eq!(a.credits.map(|(c, _)| c), Some(1234.5));
    other.record_balance(A, Err("timed out".to_owned())).await.expect("recorded");
    let a = record(&k, A).await;
    assert_eq!(a.credits.map(|(c, _)| c), Some(1234.5), "never replaced by a false zero");
    assert_eq!(a.credits_error.as_deref(), Some("timed out"));
    k.record_balance(A, Ok(f64::NAN)).await.expect("recorded");
    assert_eq!(record(&k, A).await.credits.map(|(c, _)| c), Some(1234.5));
    k.record_balance(A, Ok(99.0)).await.expect("recorded");
    let a = record(&k, A).await;
    assert_eq!((a.credits.map(|(c, _)| c), a.credits_error), (Some(99.0), None));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(k.claim_balance_read(A, Duration::from_millis(10)).await.expect("claimed again"));
}

/// A failure that says nothing about the key is noted, and the key stays in rotation.
pub async fn noted_errors_leave_the_key_in_rotation((k, other): Pair) {
    k.note_error(A, ErrorClass::Temporary).await.expect("noted");
    let a = record(&other, A).await;
    assert_eq!(a.last_error.map(|(c, _)| c), Some(ErrorClass::Temporary));
    assert!(a.off.is_none());
    assert_eq!(take(&other, A, PermitKind::Create, limit(1, 10_000)).await, Permit::Granted);
}
