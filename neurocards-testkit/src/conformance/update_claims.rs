//! The [`UpdateClaims`] conformance suite. Each function states one guarantee and panics when
//! it does not hold. A backend's tests build a fresh [`UpdateClaimsFixture`] per test and call
//! them.

use neurocards_core::conversation::{UpdateClaims, UPDATE_CLAIM_RETENTION};
use std::sync::Arc;
use std::time::Duration;

/// New claim stores on one database (each like another replica or a restarted bot), and ways
/// to make a claim look old.
#[async_trait::async_trait]
pub trait UpdateClaimsFixture: Send + Sync {
    type Claims: UpdateClaims + 'static;

    /// A new claim store on the fixture's database; its first claim prunes old claims.
    fn claims(&self) -> Self::Claims;

    /// Prunes claims older than `older_than` (the store's own pruning); returns how many.
    async fn prune(&self, older_than: Duration) -> u64;

    /// Moves the claim's time back by `by`.
    async fn age_claim(&self, bot_id: i64, update_id: i64, by: Duration);

    /// Whether the claim is stored.
    async fn claim_exists(&self, bot_id: i64, update_id: i64) -> bool;
}

const HOUR: Duration = Duration::from_secs(3600);

/// The first claim of an update wins; every later one — from the same store or another
/// replica — loses.
pub async fn first_claim_wins<F: UpdateClaimsFixture>(f: &F) {
    let (a, b) = (f.claims(), f.claims());
    assert!(a.claim(1, 100).await.expect("claims"), "the first delivery is handled");
    assert!(!a.claim(1, 100).await.expect("claims"), "a redelivery is skipped");
    assert!(!b.claim(1, 100).await.expect("claims"), "another replica skips it too");
    assert!(f.claim_exists(1, 100).await);
}

/// Of 20 replicas claiming one update at once exactly one wins; 20 distinct updates claimed at
/// once all win.
pub async fn one_of_many_concurrent_claimers_wins<F: UpdateClaimsFixture>(f: &F) {
    let replicas: Vec<Arc<F::Claims>> = (0..20).map(|_| Arc::new(f.claims())).collect();
    let same = replicas.iter().map(|c| {
        let c = Arc::clone(c);
        tokio::spawn(async move { c.claim(7, 5_000).await.expect("claims") })
    });
    let won = futures::future::join_all(same.collect::<Vec<_>>()).await;
    let winners = won.into_iter().map(|r| r.expect("claimer ran")).filter(|w| *w).count();
    assert_eq!(winners, 1, "exactly one claimer handles the update");

    let distinct = replicas.iter().zip(6_000..).map(|(c, update)| {
        let c = Arc::clone(c);
        tokio::spawn(async move { c.claim(7, update).await.expect("claims") })
    });
    let won = futures::future::join_all(distinct.collect::<Vec<_>>()).await;
    assert!(won.into_iter().all(|r| r.expect("claimer ran")), "distinct updates all win");
}

/// Claims of different bots, and of different updates of one bot, do not interfere.
pub async fn bots_and_updates_are_independent<F: UpdateClaimsFixture>(f: &F) {
    let c = f.claims();
    assert!(c.claim(1, 5).await.expect("claims"));
    assert!(c.claim(2, 5).await.expect("claims"), "another bot's update 5 is its own");
    assert!(c.claim(1, 6).await.expect("claims"));
    assert!(c.claim(-1, 5).await.expect("claims"), "any bot id is a key");
    assert!(!c.claim(2, 5).await.expect("claims"));
}

/// A claim younger than the retention is kept by pruning, and still refuses the redelivery.
pub async fn claims_within_the_retention_are_kept<F: UpdateClaimsFixture>(f: &F) {
    let c = f.claims();
    assert!(c.claim(3, 1).await.expect("claims"));
    f.age_claim(3, 1, UPDATE_CLAIM_RETENTION - HOUR).await;
    assert_eq!(f.prune(UPDATE_CLAIM_RETENTION).await, 0);
    assert!(!c.claim(3, 1).await.expect("claims"), "still claimed");
}

/// A claim older than the retention is pruned, and the update id can be claimed again.
pub async fn claims_past_the_retention_are_pruned<F: UpdateClaimsFixture>(f: &F) {
    let c = f.claims();
    assert!(c.claim(3, 1).await.expect("claims"));
    assert!(c.claim(3, 2).await.expect("claims"));
    f.age_claim(3, 1, UPDATE_CLAIM_RETENTION + HOUR).await;
    assert_eq!(f.prune(UPDATE_CLAIM_RETENTION).await, 1);
    assert!(!f.claim_exists(3, 1).await);
    assert!(f.claim_exists(3, 2).await);
    assert!(c.claim(3, 1).await.expect("claims"), "a pruned id is claimable again");
}

/// A new claim store prunes on its first claim: claims past the retention go, younger ones
/// stay.
pub async fn a_new_claim_store_prunes_on_its_first_claim<F: UpdateClaimsFixture>(f: &F) {
    let first = f.claims();
    assert!(first.claim(4, 1).await.expect("claims"));
    assert!(first.claim(4, 2).await.expect("claims"));
    f.age_claim(4, 1, UPDATE_CLAIM_RETENTION + HOUR).await;
    f.age_claim(4, 2, UPDATE_CLAIM_RETENTION - HOUR).await;
    let restarted = f.claims();
    assert!(restarted.claim(4, 3).await.expect("claims"));
    assert!(!f.claim_exists(4, 1).await, "pruned by the first claim");
    assert!(f.claim_exists(4, 2).await, "kept: within the retention");
}
