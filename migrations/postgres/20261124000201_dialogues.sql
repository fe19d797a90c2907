-- Telegram dialogue state, one row per chat, written by every bot replica.
CREATE TABLE bot_dialogues (
    chat_id    BIGINT PRIMARY KEY,
    state      JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
