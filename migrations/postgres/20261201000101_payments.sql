-- Payments: purchases of credit packs, the provider charges that pay them, refunds, referrals
-- and the reconciliation cursors.
--
-- Money is credited once per provider charge: a charge row is unique per (rail, charge_id) and
-- its `purchase` ledger entry (naming the charge in ledger.payment_id, unique per charge) is
-- written in the same transaction. A charge that does not match its purchase is kept flagged
-- (`mismatch`) and credits nothing.

-- One purchase attempt: a pack at the price of the moment, on one rail.
CREATE TABLE purchases (
    id                   uuid        PRIMARY KEY,
    user_id              bigint      NOT NULL REFERENCES users (id),
    rail                 text        NOT NULL CHECK (rail IN ('stars', 'yookassa')),
    pack                 text        NOT NULL CHECK (length(pack) BETWEEN 1 AND 24),
    credits              bigint      NOT NULL CHECK (credits > 0),
    amount               bigint      NOT NULL CHECK (amount > 0),
    currency             text        NOT NULL CHECK (currency IN ('XTR', 'RUB')),
    status               text        NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'paid', 'canceled')),
    provider_payment_id  text        CHECK (length(provider_payment_id) BETWEEN 1 AND 128),
    confirmation_url     text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- A provider payment belongs to one purchase.
CREATE UNIQUE INDEX purchases_provider_payment ON purchases (rail, provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;
-- The pending-payment poller's work: open purchases by rail, oldest first.
CREATE INDEX purchases_open ON purchases (rail, created_at) WHERE status = 'open';
CREATE INDEX purchases_user ON purchases (user_id, created_at);

-- Every payment the providers reported, credited or flagged. purchase_id and user_id carry no
-- foreign key: a flagged charge may name a purchase or user we do not know.
CREATE TABLE payment_charges (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rail         text        NOT NULL CHECK (rail IN ('stars', 'yookassa')),
    charge_id    text        NOT NULL CHECK (octet_length(charge_id) BETWEEN 1 AND 128),
    purchase_id  uuid        NOT NULL,
    user_id      bigint      NOT NULL,
    amount       bigint      NOT NULL,
    currency     text        NOT NULL,
    source       text        NOT NULL
                 CHECK (source IN ('update', 'notification', 'reconciliation', 'poll')),
    credits      bigint      NOT NULL CHECK (credits >= 0),
    mismatch     text
                 CHECK (mismatch IN ('unknown_purchase', 'other_rail', 'other_user', 'amount')),
    refunded_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_charges_once UNIQUE (rail, charge_id),
    -- A flagged charge gave nothing, so there is nothing to take back.
    CONSTRAINT payment_charges_flagged_gave_nothing
        CHECK (mismatch IS NULL OR (credits = 0 AND refunded_at IS NULL))
);

CREATE INDEX payment_charges_user ON payment_charges (user_id, id);
CREATE INDEX payment_charges_purchase ON payment_charges (purchase_id);
CREATE INDEX payment_charges_created ON payment_charges (created_at) WHERE mismatch IS NULL;

-- Who invited whom; bonus_charge_id is set once, by the charge that paid the referrer's bonus.
CREATE TABLE referrals (
    user_id          bigint      PRIMARY KEY REFERENCES users (id),
    referrer_id      bigint      NOT NULL REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    bonus_charge_id  bigint      REFERENCES payment_charges (id),
    CONSTRAINT referrals_not_oneself CHECK (user_id <> referrer_id)
);

CREATE INDEX referrals_referrer ON referrals (referrer_id);

-- How far reconciliation read each rail's transaction list; only moves forward.
CREATE TABLE payment_cursors (
    rail      text   PRIMARY KEY CHECK (rail IN ('stars', 'yookassa')),
    position  bigint NOT NULL CHECK (position >= 0)
);

-- The ledger learns the payment entries. Its append-only trigger forbids UPDATE and DELETE of
-- rows, not a new column.
ALTER TABLE ledger ADD COLUMN payment_id bigint REFERENCES payment_charges (id);

-- The old CHECKs have generated names: drop every CHECK of the ledger and add named ones.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'ledger'::regclass AND contype = 'c'
    LOOP
        EXECUTE format('ALTER TABLE ledger DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;

ALTER TABLE ledger
    ADD CONSTRAINT ledger_reason CHECK (reason IN (
        'welcome', 'grant', 'purchase', 'charge', 'refund', 'purchase_refund', 'referral')),
    -- Charges and refunded packs take credits away, everything else gives them.
    ADD CONSTRAINT ledger_sign
        CHECK ((reason IN ('charge', 'purchase_refund')) = (delta < 0) OR delta = 0),
    ADD CONSTRAINT ledger_refund_names_job CHECK (reason <> 'refund' OR job_id IS NOT NULL),
    -- Payment entries name their charge, and only they do.
    ADD CONSTRAINT ledger_payment_entries_name_charge
        CHECK ((reason IN ('purchase', 'purchase_refund', 'referral')) = (payment_id IS NOT NULL));

-- A charge credits its pack once, is taken back at most once, and pays at most one bonus.
CREATE UNIQUE INDEX ledger_one_purchase_per_payment ON ledger (payment_id)
    WHERE reason = 'purchase';
CREATE UNIQUE INDEX ledger_one_purchase_refund_per_payment ON ledger (payment_id)
    WHERE reason = 'purchase_refund';
CREATE UNIQUE INDEX ledger_one_referral_per_payment ON ledger (payment_id)
    WHERE reason = 'referral';
