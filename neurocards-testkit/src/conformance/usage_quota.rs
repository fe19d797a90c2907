//! The [`UsageQuota`] conformance suite. Each function states one guarantee and panics when it
//! does not hold. A backend's tests build a fresh [`UsageQuotaFixture`] per test and call them.

use neurocards_core::conversation::UsageQuota;
use neurocards_core::domain::UserId;
use std::time::Duration;

/// New quota stores on one database (each like another replica), and ways to make uses look
/// old and to count the rows kept.
#[async_trait::async_trait]
pub trait UsageQuotaFixture: Send + Sync {
    type Quota: UsageQuota + 'static;

    /// A new quota store on the fixture's database.
    fn quota(&self) -> Self::Quota;

    /// Moves every recorded use of `action` by `user` back by `by`.
    async fn age_uses(&self, user: UserId, action: &str, by: Duration);

    /// The rows stored for `action` by `user`.
    async fn use_rows(&self, user: UserId, action: &str) -> i64;
}

const ACTION: &str = "idea_refine";
const WINDOW: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

async fn consume<Q: UsageQuota>(q: &Q, user: UserId, action: &str, limit: u32) -> Option<Duration> {
    q.try_consume(user, action, limit, WINDOW).await.expect("the quota answers")
}

/// Up to `limit` uses within the window are allowed; beyond it every call is refused, with a
/// wait of about the whole window when the uses were just made, and refusals record nothing.
pub async fn allows_up_to_the_limit_then_refuses<F: UsageQuotaFixture>(f: &F) {
    let q = f.quota();
    let user = UserId(1);
    for n in 1..=3 {
        assert_eq!(consume(&q, user, ACTION, 3).await, None, "use {n} of 3 is allowed");
    }
    for _ in 0..2 {
        let wait = consume(&q, user, ACTION, 3).await.expect("the fourth use is refused");
        assert!(wait <= WINDOW, "never longer than the window: {wait:?}");
        assert!(wait > WINDOW - MINUTE, "the uses were just made: {wait:?}");
    }
    assert_eq!(f.use_rows(user, ACTION).await, 3, "refusals record nothing");
    assert!(consume(&f.quota(), user, ACTION, 3).await.is_some(), "another replica refuses too");
}

/// The wait of a refusal is how long until the oldest counted use leaves the window.
pub async fn the_wait_is_until_the_oldest_use_leaves<F: UsageQuotaFixture>(f: &F) {
    let q = f.quota();
    let user = UserId(2);
    assert_eq!(consume(&q, user, ACTION, 2).await, None);
    f.age_uses(user, ACTION, 40 * MINUTE).await;
    assert_eq!(consume(&q, user, ACTION, 2).await, None);
    let wait = consume(&q, user, ACTION, 2).await.expect("refused at the limit");
    assert!(wait <= 20 * MINUTE, "the oldest use leaves in 20 minutes: {wait:?}");
    assert!(wait > 19 * MINUTE, "the oldest use leaves in 20 minutes: {wait:?}");
}

/// Uses older than the window no longer count: after the window the full limit is available
/// again.
pub async fn old_uses_leave_the_window<F: UsageQuotaFixture>(f: &F) {
    let q = f.quota();
    let user = UserId(3);
    assert_eq!(consume(&q, user, ACTION, 2).await, None);
    assert_eq!(consume(&q, user, ACTION, 2).await, None);
    assert!(consume(&q, user, ACTION, 2).await.is_some());
    f.age_uses(user, ACTION, WINDOW + Duration::from_secs(1)).await;
    assert_eq!(consume(&q, user, ACTION, 2).await, None, "the window has passed");
    assert_eq!(consume(&q, user, ACTION, 2).await, None);
    assert!(consume(&q, user, ACTION, 2).await.is_some());
}

/// Each user and each action has a counter of its own.
pub async fn users_and_actions_are_counted_apart<F: UsageQuotaFixture>(f: &F) {
    let q = f.quota();
    let (ann, bob) = (UserId(4), UserId(5));
    assert_eq!(consume(&q, ann, ACTION, 1).await, None);
    assert_eq!(consume(&q, ann, "other_action", 1).await, None, "another action of ann");
    assert_eq!(consume(&q, bob, ACTION, 1).await, None, "bob's counter is his own");
    assert!(consume(&q, ann, ACTION, 1).await.is_some());
    assert!(consume(&q, bob, ACTION, 1).await.is_some());
}

/// A user never keeps more than `limit` rows per action, however long they keep using it.
pub async fn rows_per_user_stay_bounded<F: UsageQuotaFixture>(f: &F) {
    let q = f.quota();
    let user = UserId(6);
    for _round in 0..5 {
        while consume(&q, user, ACTION, 3).await.is_none() {
            assert!(f.use_rows(user, ACTION).await <= 3);
        }
        assert_eq!(f.use_rows(user, ACTION).await, 3);
        f.age_uses(user, ACTION, WINDOW + Duration::from_secs(1)).await;
    }
    assert_eq!(consume(&q, user, ACTION, 3).await, None);
    assert_eq!(f.use_rows(user, ACTION).await, 1, "uses out of the window were deleted");
}

/// 20 replicas using the same action of one user at once get exactly `limit` uses between them.
pub async fn concurrent_uses_do_not_exceed_the_limit<F: UsageQuotaFixture>(f: &F) {
    let user = UserId(7);
    let calls = (0..20).map(|_| {
        let q = f.quota();
        tokio::spawn(async move { consume(&q, user, ACTION, 5).await })
    });
    let results = futures::future::join_all(calls.collect::<Vec<_>>()).await;
    let allowed = results.into_iter().map(|r| r.expect("caller ran")).filter(Option::is_none);
    assert_eq!(allowed.count(), 5, "exactly the limit is allowed");
    assert_eq!(f.use_rows(user, ACTION).await, 5);
}
