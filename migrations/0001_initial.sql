-- The campaign queue. Times are Unix milliseconds (UTC).

CREATE TABLE campaigns (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    csv_path        TEXT    NOT NULL,
    csv_sha256      TEXT    NOT NULL,
    from_number     TEXT    NOT NULL,
    -- NULL when each row's text comes from the CSV's `body` column.
    body_template   TEXT,
    default_region  TEXT    NOT NULL,
    phone_column    TEXT    NOT NULL,
    -- Settings a later run reuses unless a flag overrides them.
    rate            REAL    NOT NULL,
    concurrency     INTEGER NOT NULL,
    poll_delay_ms   INTEGER NOT NULL,
    track_for_ms    INTEGER NOT NULL,
    on_ambiguous    TEXT    NOT NULL CHECK (on_ambiguous IN ('hold', 'retry')),
    n_rows          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns (id),
    -- 1-based number of the CSV data record (the header is not counted).
    row_number      INTEGER NOT NULL,
    phone_raw       TEXT    NOT NULL,
    phone_e164      TEXT,
    kind            TEXT    NOT NULL CHECK (kind IN ('sms', 'mms')),
    body            TEXT    NOT NULL,
    -- JSON array of URLs; NULL for an SMS.
    media_urls      TEXT,
    segments        INTEGER NOT NULL,
    encoding        TEXT    NOT NULL CHECK (encoding IN ('gsm7', 'ucs2')),
    state           TEXT    NOT NULL CHECK (state IN (
                        'pending', 'invalid', 'duplicate', 'suppressed', 'sending',
                        'queued', 'sent', 'delivered', 'failed', 'rejected',
                        'unknown', 'expired')),
    reason          TEXT,
    sid             TEXT,
    remote_status   TEXT,
    error_code      TEXT,
    error_message   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    polls           INTEGER NOT NULL DEFAULT 0,
    -- When the API accepted the message.
    sent_at         INTEGER,
    final_at        INTEGER,
    -- When the tracker should next call Get Message; NULL when not tracked.
    next_poll_at    INTEGER,
    -- 1 while a Get Message for it is in flight; reset when a run starts.
    poll_claimed    INTEGER NOT NULL DEFAULT 0,
    -- End of the tracking window (sent_at + track_for).
    track_until     INTEGER,
    UNIQUE (campaign_id, row_number)
);

-- The send queue: only pending rows are in this index.
CREATE INDEX messages_pending ON messages (campaign_id, id) WHERE state = 'pending';
-- The poll schedule: only tracked rows are in this index, so finding the due
-- ones does not grow with the number of finished messages.
CREATE INDEX messages_due ON messages (campaign_id, next_poll_at) WHERE next_poll_at IS NOT NULL;
-- Duplicate detection at import.
CREATE INDEX messages_phone ON messages (campaign_id, phone_e164) WHERE phone_e164 IS NOT NULL;

-- Which process runs a campaign: one at a time. A process refreshes its
-- heartbeat while it runs; another may take over when the process is gone
-- or the heartbeat is stale.
CREATE TABLE runners (
    campaign_id     INTEGER PRIMARY KEY,
    owner           TEXT    NOT NULL,
    host            TEXT    NOT NULL,
    pid             INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    heartbeat_at    INTEGER NOT NULL
);

-- Append-only history: every state change with its time.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages (id),
    at          INTEGER NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    detail      TEXT
);
CREATE INDEX events_message ON events (message_id);
