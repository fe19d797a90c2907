//! The update claims conformance suite on both stores: the embedded store always, and
//! PostgreSQL when `DATABASE_URL` is set.

use neurocards_testkit::conformance::update_claims as suite;

neurocards_testkit::bot_store_conformance!(
    suite: first_claim_wins,
    one_of_many_concurrent_claimers_wins,
    bots_and_updates_are_independent,
    claims_within_the_retention_are_kept,
    claims_past_the_retention_are_pruned,
    a_new_claim_store_prunes_on_its_first_claim,
);
