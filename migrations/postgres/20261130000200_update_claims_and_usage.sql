-- Telegram updates taken for handling, so that a redelivered update (same update_id) is handled
-- once across restarts and replicas. Claimed with INSERT ... ON CONFLICT DO NOTHING before any
-- handler runs; rows older than the retention window (48 h) are pruned by the bot.
CREATE TABLE telegram_update_claims (
    bot_id      bigint      NOT NULL,
    update_id   bigint      NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, update_id)
);

CREATE INDEX telegram_update_claims_claimed_at ON telegram_update_claims (claimed_at);

-- Uses of costly actions per user (own-idea refinement by the LLM), counted in a sliding
-- window. Each user keeps at most `limit` rows per action: older ones are deleted when counted.
CREATE TABLE usage_events (
    id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id  bigint      NOT NULL,
    action   text        NOT NULL,
    used_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX usage_events_user_action ON usage_events (user_id, action, used_at);
