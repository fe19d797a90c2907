//! The dialogue storage conformance suite on both stores: the embedded store always, and
//! PostgreSQL when `DATABASE_URL` is set.

use neurocards_testkit::conformance::dialogues as suite;

neurocards_testkit::bot_store_conformance!(
    suite: state_round_trips,
    update_replaces_and_remove_forgets,
    chats_are_independent,
    unreadable_state_reads_as_absent,
    session_reader_returns_state_and_account,
);
