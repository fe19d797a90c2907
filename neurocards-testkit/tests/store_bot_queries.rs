//! The `/stats` and "Retry" queries' conformance suite on both stores: the embedded store
//! always, and PostgreSQL when `DATABASE_URL` is set.

use neurocards_testkit::conformance::bot_queries as suite;

neurocards_testkit::bot_store_conformance!(
    suite: stats_of_an_empty_store_are_zero,
    stats_count_what_was_created_since,
    order_request_returns_what_the_order_asked_for,
    order_request_is_only_for_the_owner,
    an_order_that_cannot_be_repeated_reads_as_nothing,
    delivered_videos_are_paged_newest_first_and_only_the_owners,
);
