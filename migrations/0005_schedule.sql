-- When and from which number a campaign may send, and the final state of a
-- message that never went out because the deadline passed (`cancelled`).
--
-- * `campaigns` keeps the schedule: flags on a later run change it, like
--   `--rate`. `from_number` now holds the sender pool, comma-separated.
-- * `zone_sets`: the time zone(s) a recipient is texted in, one row per
--   distinct set of a campaign; a message points at its set, and the send
--   claim looks up only the sets whose window is open
--   (`messages_sendable`), so finding the sendable messages never scans
--   the ones that wait.
-- * `daily_sends`: the claims of each calendar day, for `--max-per-day`.
-- * `messages` gains the state `cancelled`, its zone set and the sender its
--   row chose. A CHECK constraint cannot be changed in place: the table is
--   rebuilt as in migration 2, the history set aside and put back around
--   the swap (foreign keys stay enforced inside a migration).

ALTER TABLE campaigns ADD COLUMN windows TEXT NOT NULL DEFAULT '';
-- The IANA zone of `--timezone`; '' for a campaign made before it existed,
-- which then uses the machine's zone.
ALTER TABLE campaigns ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
ALTER TABLE campaigns ADD COLUMN stop_before_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN start_at INTEGER;
ALTER TABLE campaigns ADD COLUMN not_after INTEGER;
ALTER TABLE campaigns ADD COLUMN rate_per_from REAL;
ALTER TABLE campaigns ADD COLUMN rate_unit TEXT NOT NULL DEFAULT 'messages'
    CHECK (rate_unit = 'messages' OR rate_unit = 'segments');
ALTER TABLE campaigns ADD COLUMN max_per_day INTEGER;

-- Set 0 of every campaign is the campaign's own zone (`--timezone`): rows
-- whose number gives no zone of its own, and every row imported before.
CREATE TABLE zone_sets (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    id          INTEGER NOT NULL,
    -- IANA names, sorted, separated by spaces; '' for set 0.
    zones       TEXT    NOT NULL,
    PRIMARY KEY (campaign_id, id)
) WITHOUT ROWID;
INSERT INTO zone_sets (campaign_id, id, zones) SELECT id, 0, '' FROM campaigns;

CREATE TABLE daily_sends (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    -- The calendar day in the campaign's zone, YYYY-MM-DD.
    day         TEXT    NOT NULL,
    claimed     INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, day)
) WITHOUT ROWID;

INSERT INTO states (code, name) VALUES (13, 'cancelled');

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
                        OR state = 'rejected' OR state = 'unknown' OR state = 'expired'
                        OR state = 'cancelled'),
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
    -- The recipient's zone set (`zone_sets`).
    zone_set        INTEGER NOT NULL DEFAULT 0,
    -- The sender the row's `from` column chose; NULL: the campaign's pool.
    from_number     TEXT,
    UNIQUE (campaign_id, row_number)
);
INSERT INTO messages_new (id, campaign_id, row_number, phone_raw, phone_e164, kind, body,
    media_urls, segments, encoding, state, reason, sid, remote_status, error_code,
    error_message, attempts, polls, sent_at, final_at, next_poll_at, poll_claimed, track_until)
SELECT id, campaign_id, row_number, phone_raw, phone_e164, kind, body,
    media_urls, segments, encoding, state, reason, sid, remote_status, error_code,
    error_message, attempts, polls, sent_at, final_at, next_poll_at, poll_claimed, track_until
FROM messages;

CREATE TEMP TABLE event_log_copy AS SELECT * FROM event_log;
DROP VIEW events;
DROP TABLE event_log;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

-- Append-only history: every state change with its time (as migration 3).
CREATE TABLE event_log (
    message_id  INTEGER NOT NULL REFERENCES messages (id),
    -- 0 for the message's first event, then 1, 2 …
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    from_state  INTEGER NOT NULL REFERENCES states (code),
    to_state    INTEGER NOT NULL REFERENCES states (code),
    detail_form INTEGER NOT NULL DEFAULT 0 REFERENCES detail_forms (form),
    detail      TEXT,
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;
INSERT INTO event_log SELECT * FROM temp.event_log_copy ORDER BY message_id, seq;
DROP TABLE temp.event_log_copy;

-- The history as the old `events` table held it (as migration 3).
CREATE VIEW events (message_id, seq, at, from_state, to_state, detail) AS
SELECT e.message_id,
       e.seq,
       e.at,
       f.name,
       t.name,
       CASE e.detail_form
           WHEN 0 THEN e.detail
           WHEN 1 THEN 'sid ' || e.detail
           WHEN 2 THEN 'sid ' || m.sid
           WHEN 3 THEN 'status ' || e.detail
           WHEN 4 THEN 'status ' || t.name
       END
FROM event_log AS e
JOIN states AS f ON f.code = e.from_state
JOIN states AS t ON t.code = e.to_state
LEFT JOIN messages AS m ON m.id = e.message_id;

-- The send queue: only pending rows, by zone set, so that a claim reads
-- the open sets only.
CREATE INDEX messages_sendable ON messages (campaign_id, zone_set, id) WHERE state = 'pending';
-- The poll schedule: only tracked rows are in this index, so finding the due
-- ones does not grow with the number of finished messages.
CREATE INDEX messages_due ON messages (campaign_id, next_poll_at) WHERE next_poll_at IS NOT NULL;
