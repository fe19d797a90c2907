//! The usage quota conformance suite on both stores: the embedded store always, and
//! PostgreSQL when `DATABASE_URL` is set.

use neurocards_testkit::conformance::usage_quota as suite;

neurocards_testkit::bot_store_conformance!(
    suite: allows_up_to_the_limit_then_refuses,
    the_wait_is_until_the_oldest_use_leaves,
    old_uses_leave_the_window,
    users_and_actions_are_counted_apart,
    rows_per_user_stay_bounded,
    concurrent_uses_do_not_exceed_the_limit,
);
