-- Payments on the embedded store: the same facts as migrations/postgres/
-- 20261201000101_payments.sql, in SQLite's terms (times in integer milliseconds, purchase ids
-- as TEXT of 32 lowercase hex digits).
--
-- Money is credited once per provider charge: a charge row is unique per (rail, charge_id) and
-- its `purchase` ledger entry (naming the charge in ledger.payment_id, unique per charge) is
-- written in the same transaction. A charge that does not match its purchase is kept flagged
-- (`mismatch`) and credits nothing.

-- One purchase attempt: a pack at the price of the moment, on one rail.
CREATE TABLE purchases (
    id                   TEXT    PRIMARY KEY
                         CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    user_id              INTEGER NOT NULL REFERENCES users (id),
    rail                 TEXT    NOT NULL CHECK (rail IN ('stars', 'yookassa')),
    pack                 TEXT    NOT NULL CHECK (length(pack) BETWEEN 1 AND 24),
    credits              INTEGER NOT NULL CHECK (credits > 0),
    amount               INTEGER NOT NULL CHECK (amount > 0),
    currency             TEXT    NOT NULL CHECK (currency IN ('XTR', 'RUB')),
    status               TEXT    NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'paid', 'canceled')),
    provider_payment_id  TEXT    CHECK (length(CAST(provider_payment_id AS BLOB)) BETWEEN 1 AND 128),
    confirmation_url     TEXT,
    created_at           INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_at           INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

-- A provider payment belongs to one purchase.
CREATE UNIQUE INDEX purchases_provider_payment ON purchases (rail, provider_payment_id)
    WHERE provider_payment_id IS NOT NULL;
-- The pending-payment poller's work: open purchases by rail, oldest first.
CREATE INDEX purchases_open ON purchases (rail, created_at) WHERE status = 'open';
CREATE INDEX purchases_user ON purchases (user_id, created_at);

-- Every payment the providers reported, credited or flagged. purchase_id and user_id carry no
-- foreign key: a flagged charge may name a purchase or user we do not know.
CREATE TABLE payment_charges (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    rail         TEXT    NOT NULL CHECK (rail IN ('stars', 'yookassa')),
    charge_id    TEXT    NOT NULL CHECK (length(CAST(charge_id AS BLOB)) BETWEEN 1 AND 128),
    purchase_id  TEXT    NOT NULL,
    user_id      INTEGER NOT NULL,
    amount       INTEGER NOT NULL,
    currency     TEXT    NOT NULL,
    source       TEXT    NOT NULL
                 CHECK (source IN ('update', 'notification', 'reconciliation', 'poll')),
    credits      INTEGER NOT NULL CHECK (credits >= 0),
    mismatch     TEXT
                 CHECK (mismatch IN ('unknown_purchase', 'other_rail', 'other_user', 'amount')),
    refunded_at  INTEGER,
    created_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    UNIQUE (rail, charge_id),
    -- A flagged charge gave nothing, so there is nothing to take back.
    CHECK (mismatch IS NULL OR (credits = 0 AND refunded_at IS NULL))
) STRICT;

CREATE INDEX payment_charges_user ON payment_charges (user_id, id);
CREATE INDEX payment_charges_purchase ON payment_charges (purchase_id);
CREATE INDEX payment_charges_created ON payment_charges (created_at) WHERE mismatch IS NULL;

-- Who invited whom; bonus_charge_id is set once, by the charge that paid the referrer's bonus.
CREATE TABLE referrals (
    user_id          INTEGER PRIMARY KEY REFERENCES users (id),
    referrer_id      INTEGER NOT NULL REFERENCES users (id),
    created_at       INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    bonus_charge_id  INTEGER REFERENCES payment_charges (id),
    CHECK (user_id <> referrer_id)
) STRICT;

CREATE INDEX referrals_referrer ON referrals (referrer_id);

-- How far reconciliation read each rail's transaction list; only moves forward.
CREATE TABLE payment_cursors (
    rail      TEXT    PRIMARY KEY CHECK (rail IN ('stars', 'yookassa')),
    position  INTEGER NOT NULL CHECK (position >= 0)
) STRICT;

-- The ledger learns the payment entries. SQLite cannot change a CHECK, so the table is rebuilt
-- (no table references the ledger by foreign key). Its triggers go first: the append-only one
-- would refuse the DROP's implicit delete.
DROP TRIGGER ledger_apply_to_balance;
DROP TRIGGER ledger_no_update;
DROP TRIGGER ledger_no_delete;

CREATE TABLE ledger_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    delta       INTEGER NOT NULL,
    reason      TEXT    NOT NULL
                CHECK (reason IN ('welcome', 'grant', 'purchase', 'charge', 'refund',
                                  'purchase_refund', 'referral')),
    order_id    INTEGER,
    job_id      INTEGER,
    note        TEXT,
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    payment_id  INTEGER REFERENCES payment_charges (id),
    -- Charges and refunded packs take credits away, everything else gives them.
    CHECK ((reason IN ('charge', 'purchase_refund')) = (delta < 0) OR delta = 0),
    CHECK (reason <> 'refund' OR job_id IS NOT NULL),
    -- Payment entries name their charge, and only they do.
    CHECK ((reason IN ('purchase', 'purchase_refund', 'referral')) = (payment_id IS NOT NULL))
) STRICT;

-- Copying rows leaves the balances as they are: the balance trigger is gone for now.
INSERT INTO ledger_new (id, user_id, delta, reason, order_id, job_id, note, created_at)
    SELECT id, user_id, delta, reason, order_id, job_id, note, created_at FROM ledger ORDER BY id;

-- Ids are never reused: the new table continues from the old one's highest id ever handed out.
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'ledger'), 0))
WHERE name = 'ledger_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'ledger_new', seq FROM sqlite_sequence
    WHERE name = 'ledger' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'ledger_new');

DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;

CREATE INDEX ledger_user ON ledger (user_id, id);
-- A job's charge is refunded at most once, ever.
CREATE UNIQUE INDEX ledger_one_refund_per_job ON ledger (job_id) WHERE reason = 'refund';
-- The start credits are given once per user.
CREATE UNIQUE INDEX ledger_one_welcome_per_user ON ledger (user_id) WHERE reason = 'welcome';
-- A charge credits its pack once, is taken back at most once, and pays at most one bonus.
CREATE UNIQUE INDEX ledger_one_purchase_per_payment ON ledger (payment_id)
    WHERE reason = 'purchase';
CREATE UNIQUE INDEX ledger_one_purchase_refund_per_payment ON ledger (payment_id)
    WHERE reason = 'purchase_refund';
CREATE UNIQUE INDEX ledger_one_referral_per_payment ON ledger (payment_id)
    WHERE reason = 'referral';

CREATE TRIGGER ledger_apply_to_balance AFTER INSERT ON ledger
BEGIN
    UPDATE users SET balance = balance + NEW.delta WHERE id = NEW.user_id;
END;

-- Append-only: history is corrected with a new entry, never by editing an old one.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
