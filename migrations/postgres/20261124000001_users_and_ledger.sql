-- Users and their append-only credit ledger.
--
-- users.balance is a cache of sum(ledger.delta) kept by the ledger trigger below, in the same
-- transaction as the ledger insert. The CHECK makes "balance never negative" a database fact:
-- a charge that would overdraw fails and rolls its whole transaction back.

CREATE TABLE users (
    id              bigint      PRIMARY KEY,            -- Telegram user id
    username        text,
    first_name      text,
    language        text        NOT NULL DEFAULT 'ru' CHECK (language IN ('ru', 'en')),
    consent_at      timestamptz,
    banned          boolean     NOT NULL DEFAULT false,
    blocked_bot_at  timestamptz,
    balance         bigint      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id),
    delta       bigint      NOT NULL,
    reason      text        NOT NULL
                CHECK (reason IN ('welcome', 'grant', 'purchase', 'charge', 'refund')),
    order_id    bigint,
    job_id      bigint,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Charges take credits away, everything else gives them.
    CHECK ((reason = 'charge') = (delta < 0) OR delta = 0),
    CHECK (reason <> 'refund' OR job_id IS NOT NULL)
);

CREATE INDEX ledger_user ON ledger (user_id, id);
-- A job's charge is refunded at most once, ever.
CREATE UNIQUE INDEX ledger_one_refund_per_job ON ledger (job_id) WHERE reason = 'refund';
-- The start credits are given once per user.
CREATE UNIQUE INDEX ledger_one_welcome_per_user ON ledger (user_id) WHERE reason = 'welcome';

CREATE FUNCTION ledger_apply_to_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET balance = balance + NEW.delta WHERE id = NEW.user_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_apply_to_balance
    AFTER INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_to_balance();

-- Append-only: history is corrected with a new entry, never by editing an old one.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only';
END
$$;

CREATE TRIGGER ledger_append_only
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
