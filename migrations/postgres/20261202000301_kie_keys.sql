-- The fleet-wide state of each KIE key: the times of the permits granted in the current window
-- (one array per budget, never longer than the budget's maximum), cool-downs and blocks, paused
-- status checks, counters, and the last balance read. Keys are named by a hash prefix, never by
-- the key itself.
CREATE TABLE kie_keys (
    key_id              text PRIMARY KEY CHECK (char_length(key_id) BETWEEN 1 AND 64),
    create_sent         timestamptz[] NOT NULL DEFAULT '{}',
    status_sent         timestamptz[] NOT NULL DEFAULT '{}',
    creates             bigint NOT NULL DEFAULT 0,
    checks              bigint NOT NULL DEFAULT 0,
    off_kind            text CHECK (off_kind IN ('cooling', 'blocked')),
    off_until           timestamptz,
    off_class           text,
    checks_paused_until timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    credits             double precision,
    credits_at          timestamptz,
    credits_error       text CHECK (char_length(credits_error) <= 300),
    balance_claimed_at  timestamptz,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((off_kind IS NULL) = (off_until IS NULL))
);

-- One permit from a key's budget, decided under the key's row lock with the server's clock, so
-- that every worker of the fleet draws from the same sliding window: granted (and counted) when
-- fewer than p_max permits of that kind were granted in the last p_per_ms milliseconds,
-- otherwise how many milliseconds until the oldest of them leaves the window. A create on a key
-- out of rotation answers with the key's off state instead; status checks wait while paused.
CREATE FUNCTION kie_take_permit(p_key text, p_kind text, p_max integer, p_per_ms bigint)
RETURNS TABLE (granted boolean, wait_ms bigint, off_kind text, off_until timestamptz,
               off_class text)
LANGUAGE plpgsql AS $$
DECLARE
    k kie_keys%ROWTYPE;
    t_now timestamptz;
    window_start timestamptz;
    kept timestamptz[];
BEGIN
    SELECT * INTO k FROM kie_keys WHERE key_id = p_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO kie_keys (key_id) VALUES (p_key) ON CONFLICT (key_id) DO NOTHING;
        SELECT * INTO k FROM kie_keys WHERE key_id = p_key FOR UPDATE;
    END IF;
    t_now := clock_timestamp();
    window_start := t_now - p_per_ms * interval '1 millisecond';
    IF p_kind = 'create' THEN
        IF k.off_until IS NOT NULL AND k.off_until > t_now THEN
            RETURN QUERY SELECT false, 0::bigint, k.off_kind, k.off_until, k.off_class;
            RETURN;
        END IF;
        kept := ARRAY(SELECT t FROM unnest(k.create_sent) AS t WHERE t > window_start ORDER BY t);
    ELSE
        IF k.checks_paused_until IS NOT NULL AND k.checks_paused_until > t_now THEN
            RETURN QUERY SELECT false,
                greatest(1, ceil(extract(epoch FROM k.checks_paused_until - t_now) * 1000))::bigint,
                NULL::text, NULL::timestamptz, NULL::text;
            RETURN;
        END IF;
        kept := ARRAY(SELECT t FROM unnest(k.status_sent) AS t WHERE t > window_start ORDER BY t);
    END IF;
    IF cardinality(kept) < greatest(p_max, 1) THEN
        IF p_kind = 'create' THEN
            UPDATE kie_keys SET create_sent = kept || t_now, creates = creates + 1,
                   off_kind = NULL, off_until = NULL
             WHERE key_id = p_key;
        ELSE
            UPDATE kie_keys SET status_sent = kept || t_now, checks = checks + 1
             WHERE key_id = p_key;
        END IF;
        RETURN QUERY SELECT true, 0::bigint, NULL::text, NULL::timestamptz, NULL::text;
    ELSE
        RETURN QUERY SELECT false,
            greatest(1, ceil(extract(epoch FROM
                kept[cardinality(kept) - greatest(p_max, 1) + 1]
                + p_per_ms * interval '1 millisecond' - t_now) * 1000))::bigint,
            NULL::text, NULL::timestamptz, NULL::text;
    END IF;
END
$$;
