//! The [`OrderProgressStore`] conformance suite. Each function states one guarantee and panics
//! when it does not hold. A backend's tests build a fresh [`ProgressFixture`] per test and call
//! them.

use neurocards_core::domain::{JobStatus, Language, OrderId};
use neurocards_core::ports::{MessageRef, OrderProgressStore, PipelineStoreError, ProgressSlot};
use std::collections::HashSet;
use std::time::Duration;

/// What the suite needs besides the progress store: orders, and ways to move their jobs and
/// their age (a backend decides how; the queue port may do it).
#[async_trait::async_trait]
pub trait ProgressFixture: Send + Sync {
    type Store: OrderProgressStore;

    fn store(&self) -> &Self::Store;

    /// A second store on the same database, as another worker process would hold it.
    fn other_store(&self) -> Self::Store;

    /// Places an order of `count` queued "ugc" videos at 1 credit each, in English, for a new
    /// funded user (charged in the same transaction).
    async fn order(&self, count: u32) -> OrderId;

    /// Moves job `index` (1-based) of the order to `status`: `Running` under a lease, or
    /// finished (`Failed` and `Cancelled` refunded in the same transaction).
    async fn set_job_status(&self, order: OrderId, index: u32, status: JobStatus);

    /// Makes the order look placed `age` ago.
    async fn age_order(&self, order: OrderId, age: Duration);
}

const MSG: MessageRef = MessageRef { chat_id: 1, message_id: 77 };

/// Of many concurrent callers asking for the first stage, exactly one gets the right to create
/// the message; the others show nothing.
pub async fn one_of_many_concurrent_callers_creates_the_message<F: ProgressFixture>(f: &F) {
    let order = f.order(3).await;
    let others: Vec<F::Store> = (0..4).map(|_| f.other_store()).collect();
    let claims = futures::future::join_all((0..16).map(|i| {
        let store = if i % 5 == 0 { f.store() } else { &others[i % 4] };
        store.claim_stage(order, 10)
    }))
    .await;
    let mut creates = 0;
    for claim in claims {
        match claim.expect("claim") {
            ProgressSlot::Create => creates += 1,
            ProgressSlot::Skip => {}
            ProgressSlot::Edit(_) => panic!("no message exists yet"),
        }
    }
    assert_eq!(creates, 1, "one creation right, ever");
    assert_eq!(f.store().claim_stage(order, 11).await.expect("claim"), ProgressSlot::Skip);
}

/// Once the creator stored its message, a later stage is an edit of that message.
pub async fn a_stored_message_is_edited<F: ProgressFixture>(f: &F) {
    let order = f.order(1).await;
    assert_eq!(f.store().claim_stage(order, 1).await.expect("claim"), ProgressSlot::Create);
    f.store().set_message(order, MSG).await.expect("set message");
    f.store().set_message(order, MSG).await.expect("set message is idempotent");
    assert_eq!(f.store().claim_stage(order, 2).await.expect("claim"), ProgressSlot::Edit(MSG));
    let moved = MessageRef { chat_id: 1, message_id: 78 };
    f.store().set_message(order, moved).await.expect("a replacement message");
    assert_eq!(f.store().claim_stage(order, 3).await.expect("claim"), ProgressSlot::Edit(moved));
}

/// Ranks only grow: the same or an earlier stage is never granted again, a later one is.
pub async fn ranks_only_grow<F: ProgressFixture>(f: &F) {
    let order = f.order(1).await;
    assert_eq!(f.store().claim_stage(order, 10).await.expect("claim"), ProgressSlot::Create);
    f.store().set_message(order, MSG).await.expect("set message");
    assert_eq!(f.store().claim_stage(order, 20).await.expect("claim"), ProgressSlot::Edit(MSG));
    assert_eq!(f.store().claim_stage(order, 20).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(f.store().claim_stage(order, 15).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(f.store().claim_stage(order, 0).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(f.store().claim_stage(order, 21).await.expect("claim"), ProgressSlot::Edit(MSG));
}

/// Of concurrent callers asking for the same later stage, at most one is granted it.
pub async fn a_stage_is_granted_once_across_concurrent_callers<F: ProgressFixture>(f: &F) {
    let order = f.order(1).await;
    assert_eq!(f.store().claim_stage(order, 1).await.expect("claim"), ProgressSlot::Create);
    f.store().set_message(order, MSG).await.expect("set message");
    let others: Vec<F::Store> = (0..4).map(|_| f.other_store()).collect();
    for rank in 2..6 {
        let claims = futures::future::join_all(
            others.iter().cycle().take(12).map(|s| s.claim_stage(order, rank)),
        )
        .await;
        let edits = claims
            .into_iter()
            .filter(|c| matches!(c.as_ref().expect("claim"), ProgressSlot::Edit(m) if *m == MSG))
            .count();
        assert_eq!(edits, 1, "stage {rank} is shown once");
    }
}

/// While the creator has not stored its message yet, later stages show nothing (nobody sends
/// a second message), but they still raise the rank.
pub async fn a_message_being_created_is_not_created_twice<F: ProgressFixture>(f: &F) {
    let order = f.order(2).await;
    assert_eq!(f.store().claim_stage(order, 1).await.expect("claim"), ProgressSlot::Create);
    assert_eq!(f.store().claim_stage(order, 2).await.expect("claim"), ProgressSlot::Skip);
    f.store().set_message(order, MSG).await.expect("set message");
    assert_eq!(f.store().claim_stage(order, 2).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(f.store().claim_stage(order, 3).await.expect("claim"), ProgressSlot::Edit(MSG));
}

/// Progress calls about an order that does not exist are `UnknownOrder`.
pub async fn unknown_orders_are_typed_errors<F: ProgressFixture>(f: &F) {
    let missing = OrderId(9_999_999);
    assert!(matches!(
        f.store().claim_stage(missing, 1).await,
        Err(PipelineStoreError::UnknownOrder(o)) if o == missing
    ));
    assert!(matches!(
        f.store().order_status(missing).await,
        Err(PipelineStoreError::UnknownOrder(o)) if o == missing
    ));
}

/// Orders nobody announced (a few seconds old, under an hour) are claimed once each across
/// concurrent callers, marked at the queued rank, and carry the order's facts.
pub async fn unannounced_orders_are_claimed_once<F: ProgressFixture>(f: &F) {
    let mut orders = HashSet::new();
    for _ in 0..5 {
        let order = f.order(2).await;
        f.age_order(order, Duration::from_secs(30)).await;
        orders.insert(order);
    }
    let others: Vec<F::Store> = (0..4).map(|_| f.other_store()).collect();
    let claims = futures::future::join_all(others.iter().map(|s| s.claim_unannounced(5, 2))).await;
    let mut seen = Vec::new();
    for claim in claims {
        let got = claim.expect("claim unannounced");
        assert!(got.len() <= 2, "at most the limit");
        for o in got {
            assert_eq!(o.total, 2);
            assert_eq!(o.language, Language::En);
            seen.push(o.order_id);
        }
    }
    seen.extend(
        f.store()
            .claim_unannounced(5, 100)
            .await
            .expect("the rest")
            .into_iter()
            .map(|o| o.order_id),
    );
    let unique: HashSet<OrderId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), unique.len(), "no order is announced twice");
    assert_eq!(unique, orders, "every order is announced");
    assert!(f.store().claim_unannounced(5, 100).await.expect("again").is_empty());

    let order = *orders.iter().next().expect("an order");
    // The announcer holds the creation right: nobody else creates, and the queued stage
    // (or an earlier one) is not granted again.
    assert_eq!(f.store().claim_stage(order, 5).await.expect("claim"), ProgressSlot::Skip);
    assert_eq!(f.store().claim_stage(order, 6).await.expect("claim"), ProgressSlot::Skip);
    f.store().set_message(order, MSG).await.expect("set message");
    assert_eq!(f.store().claim_stage(order, 7).await.expect("claim"), ProgressSlot::Edit(MSG));
}

/// An order whose first stage was already claimed, one placed a moment ago, and one placed
/// long ago are not announced.
pub async fn only_waiting_recent_orders_are_announced<F: ProgressFixture>(f: &F) {
    let started = f.order(1).await;
    f.age_order(started, Duration::from_secs(30)).await;
    assert_eq!(f.store().claim_stage(started, 10).await.expect("claim"), ProgressSlot::Create);
    let fresh = f.order(1).await;
    let old = f.order(1).await;
    f.age_order(old, Duration::from_secs(2 * 60 * 60)).await;
    assert!(f.store().claim_unannounced(1, 10).await.expect("announce").is_empty());
    // The fresh order's creation right is still there for its first worker.
    assert_eq!(f.store().claim_stage(fresh, 10).await.expect("claim"), ProgressSlot::Create);
}

/// The order's status counts its jobs by outcome: succeeded, and failed or cancelled.
pub async fn order_status_counts_jobs_by_outcome<F: ProgressFixture>(f: &F) {
    let order = f.order(4).await;
    let status = f.store().order_status(order).await.expect("status");
    assert_eq!((status.total, status.succeeded, status.failed), (4, 0, 0));
    assert_eq!(status.language, Language::En);
    assert_eq!(status.price_per_video.get(), 1);
    f.set_job_status(order, 1, JobStatus::Succeeded).await;
    f.set_job_status(order, 2, JobStatus::Failed).await;
    f.set_job_status(order, 3, JobStatus::Running).await;
    let status = f.store().order_status(order).await.expect("status");
    assert_eq!(status.order_id, order);
    assert_eq!((status.total, status.succeeded, status.failed), (4, 1, 1));
    assert!(!status.is_finished());
    f.set_job_status(order, 3, JobStatus::Cancelled).await;
    f.set_job_status(order, 4, JobStatus::Succeeded).await;
    let status = f.store().order_status(order).await.expect("status");
    assert_eq!((status.succeeded, status.failed), (2, 2));
    assert!(status.is_finished());
}

/// The queue position counts due queued jobs of other orders that the claim order puts before
/// the order's first waiting job, and every running job.
pub async fn queue_position_counts_work_ahead<F: ProgressFixture>(f: &F) {
    // Fair ranks: the first order's jobs 1, 2, 3; the second user's jobs 2, 3 (after the
    // queue's head). Ties go to the earlier job.
    let first = f.order(3).await;
    let second = f.order(2).await;
    f.set_job_status(first, 1, JobStatus::Running).await;
    f.set_job_status(first, 2, JobStatus::Succeeded).await;
    // The first order waits with its rank-3 job; the second's rank-2 job is claimed before it.
    let ahead_of_first = f.store().queue_position(first).await.expect("position");
    assert_eq!((ahead_of_first.ahead, ahead_of_first.running), (1, 1));
    let ahead_of_second = f.store().queue_position(second).await.expect("position");
    assert_eq!((ahead_of_second.ahead, ahead_of_second.running), (0, 1));
    // Now the second waits with its rank-3 job, placed after the first order's rank-3 job.
    f.set_job_status(second, 1, JobStatus::Running).await;
    let ahead_of_second = f.store().queue_position(second).await.expect("position");
    assert_eq!((ahead_of_second.ahead, ahead_of_second.running), (1, 2));
}

/// The position follows the claim order, which is fair between users, not the arrival order:
/// a one-video order placed after another user's five-video order is claimed third (after the
/// first two of the five), so two jobs are ahead of it, not five.
pub async fn queue_position_follows_the_fair_claim_order<F: ProgressFixture>(f: &F) {
    let burst = f.order(5).await;
    let single = f.order(1).await;
    let position = f.store().queue_position(single).await.expect("position");
    assert_eq!(position.ahead, 2, "claimed after two of the five, not after all five");
    let position = f.store().queue_position(burst).await.expect("position");
    assert_eq!(position.ahead, 0, "the burst's first job is claimed first");
}
