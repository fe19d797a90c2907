//! The [`BroadcastStore`] conformance suite. Each function states one guarantee and panics when
//! it does not hold. A backend's tests build a fresh [`BroadcastsFixture`] per test and call
//! them.

use neurocards_core::conversation::broadcast::{Broadcast, BroadcastStore};
use neurocards_core::domain::{Language, UserId};
use std::sync::Arc;
use std::time::Duration;

/// Broadcast stores on one database, each like another bot process.
pub trait BroadcastsFixture: Send + Sync {
    type Broadcasts: BroadcastStore + 'static;

    /// A new store on the fixture's database.
    fn broadcasts(&self) -> Self::Broadcasts;
}

const LONG: Duration = Duration::from_secs(3600);
const SHORT: Duration = Duration::from_millis(50);

/// Waits until a lease of [`SHORT`] has run out.
async fn past_short_lease() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// A started broadcast is held by its starter: nobody takes it while the lease runs.
pub async fn a_running_broadcast_is_not_taken<F: BroadcastsFixture>(f: &F) {
    let store = f.broadcasts();
    let b = store.start(7, Language::Ru, "Привет <всем>", "bot-a", LONG).await.expect("start");
    assert_eq!((b.admin_chat, b.language, b.text.as_str()), (7, Language::Ru, "Привет <всем>"));
    assert_eq!((b.cursor, b.sent, b.blocked, b.failed), (None, 0, 0, 0));
    let other = f.broadcasts();
    assert_eq!(other.take_abandoned("bot-b", LONG).await.expect("read"), None);
}

/// A broadcast whose runner stopped is taken up by exactly one of many concurrent callers,
/// with the position and counts its runner recorded; the old runner can then write nothing.
pub async fn an_abandoned_broadcast_is_taken_once_where_it_stopped<F: BroadcastsFixture>(f: &F) {
    let store = f.broadcasts();
    let mut b = store.start(7, Language::En, "Hello", "bot-a", SHORT).await.expect("start");
    b.cursor = Some(UserId(42));
    b.sent = 3;
    b.blocked = 1;
    b.failed = 2;
    assert!(store.advance(&b, "bot-a", SHORT).await.expect("advance"), "the holder advances");
    past_short_lease().await;

    let callers: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::new(f.broadcasts());
            tokio::spawn(async move { s.take_abandoned(&format!("bot-{i}"), LONG).await })
        })
        .collect();
    let mut taken: Vec<Broadcast> = Vec::new();
    for c in callers {
        if let Some(t) = c.await.expect("task").expect("read") {
            taken.push(t);
        }
    }
    assert_eq!(taken.len(), 1, "taken by exactly one: {taken:?}");
    let t = &taken[0];
    assert_eq!((t.id, t.cursor, t.sent, t.blocked, t.failed), (b.id, Some(UserId(42)), 3, 1, 2));
    assert!(!store.advance(&b, "bot-a", LONG).await.expect("advance"), "the old runner is out");
    assert!(!store.finish(b.id, "bot-a").await.expect("finish"), "and cannot finish it");
}

/// A finished broadcast is never taken again, and only its holder can finish it.
pub async fn a_finished_broadcast_stays_finished<F: BroadcastsFixture>(f: &F) {
    let store = f.broadcasts();
    let b = store.start(7, Language::En, "Hello", "bot-a", SHORT).await.expect("start");
    assert!(!store.finish(b.id, "bot-b").await.expect("finish"), "not the holder");
    assert!(store.finish(b.id, "bot-a").await.expect("finish"));
    assert!(!store.finish(b.id, "bot-a").await.expect("finish"), "once");
    past_short_lease().await;
    assert_eq!(store.take_abandoned("bot-c", LONG).await.expect("read"), None);
    assert!(!store.advance(&b, "bot-a", LONG).await.expect("advance"));
}

/// Abandoned broadcasts are taken oldest first, one per call.
pub async fn abandoned_broadcasts_are_taken_oldest_first<F: BroadcastsFixture>(f: &F) {
    let store = f.broadcasts();
    let first = store.start(1, Language::En, "first", "bot-a", SHORT).await.expect("start");
    let second = store.start(1, Language::En, "second", "bot-a", SHORT).await.expect("start");
    past_short_lease().await;
    let a = store.take_abandoned("bot-b", LONG).await.expect("read").expect("one");
    let b = store.take_abandoned("bot-b", LONG).await.expect("read").expect("another");
    assert_eq!((a.id, b.id), (first.id, second.id));
    assert_eq!(store.take_abandoned("bot-b", LONG).await.expect("read"), None);
}
