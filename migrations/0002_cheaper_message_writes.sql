-- Rebuilds `messages` so that writing a row costs less (the content is kept
-- as it is):
-- * CHECK (x IN (...)) made SQLite build a temporary B-tree of the list for
--   every row written, more than half of an import's time; the same checks
--   as chains of `=` cost next to nothing.
-- * The index on numbers goes: duplicates are now found by a Bloom filter
--   during the import and settled by one query at its end, instead of a
--   random B-tree insert per row.
-- A table cannot be redefined in place: the new one is filled from the old,
-- which is then dropped. Foreign keys stay enforced (migrations run in a
-- transaction, where they cannot be switched off), so `events`, which
-- points at `messages`, is set aside and put back around the swap.

CREATE TABLE messages_new (
    id              INTEGER PRIMARY KEY,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns (id),
    -- 1-based number of the CSV data record (the header is not counted).
    row_number      INTEGER NOT NULL,
    phone_raw       TEXT    NOT NULL,
    phone_e164      TEXT,
    kind            TEXT    NOT NULL CHECK (kind = 'sms' OR kind = 'mms'),
    body            TEXT    NOT NULL,
    -- JSON array of URLs; NULL for an SMS.
    media_urls      TEXT,
    segments        INTEGER NOT NULL,
    encoding        TEXT    NOT NULL CHECK (encoding = 'gsm7' OR encoding = 'ucs2'),
    state           TEXT    NOT NULL CHECK (
                        state = 'pending' OR state = 'invalid' OR state = 'duplicate'
                        OR state = 'suppressed' OR state = 'sending' OR state = 'queued'
                        OR state = 'sent' OR state = 'delivered' OR state = 'failed'
                        OR state = 'rejected' OR state = 'unknown' OR state = 'expired'),
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
INSERT INTO messages_new SELECT * FROM messages;
CREATE TEMP TABLE events_copy AS SELECT * FROM events;
DROP TABLE events;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

-- Append-only history: every state change with its time.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages (id),
    at          INTEGER NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    detail      TEXT
);
INSERT INTO events SELECT * FROM temp.events_copy;
DROP TABLE temp.events_copy;
CREATE INDEX events_message ON events (message_id);

-- The send queue: only pending rows are in this index.
CREATE INDEX messages_pending ON messages (campaign_id, id) WHERE state = 'pending';
-- The poll schedule: only tracked rows are in this index, so finding the due
-- ones does not grow with the number of finished messages.
CREATE INDEX messages_due ON messages (campaign_id, next_poll_at) WHERE next_poll_at IS NOT NULL;
