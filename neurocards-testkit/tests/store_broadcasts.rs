//! The broadcast store conformance suite on both stores: the embedded store always, and
//! PostgreSQL when `DATABASE_URL` is set.

use neurocards_testkit::conformance::broadcasts as suite;

neurocards_testkit::bot_store_conformance!(
    suite: a_running_broadcast_is_not_taken,
    an_abandoned_broadcast_is_taken_once_where_it_stopped,
    a_finished_broadcast_stays_finished,
    abandoned_broadcasts_are_taken_oldest_first,
);
