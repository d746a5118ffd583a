-- The history of every message, at less than half the bytes: the `events`
-- table (a rowid, an index on message_id, state names and detail text in
-- every row) becomes `event_log`, one B-tree keyed by (message_id, seq)
-- with integer state codes, and text that the message row or the event's
-- own state already holds is not stored twice. Nothing is dropped: the view
-- `events` reads every old column back as it was written (its `id` becomes
-- `seq`, the place of the event in its message's history, which orders it
-- as `id` did). Writes go through `src/store/events.rs`.

-- The message lifecycle's states (`MessageState`), by code.
CREATE TABLE states (
    code    INTEGER PRIMARY KEY,
    name    TEXT    NOT NULL UNIQUE
);
INSERT INTO states (code, name) VALUES
    (1, 'pending'), (2, 'invalid'), (3, 'duplicate'), (4, 'suppressed'), (5, 'sending'),
    (6, 'queued'), (7, 'sent'), (8, 'delivered'), (9, 'failed'), (10, 'rejected'),
    (11, 'unknown'), (12, 'expired');

-- How an event's detail reads, from `detail_form` and `detail`.
CREATE TABLE detail_forms (
    form        INTEGER PRIMARY KEY,
    reads_as    TEXT    NOT NULL
);
INSERT INTO detail_forms (form, reads_as) VALUES
    (0, 'detail as stored (NULL when the event has none)'),
    (1, '''sid '' || detail'),
    (2, '''sid '' || the sid of the message row: kept while the message holds that sid; an operator retry, which clears it, first stores it in the event (form 1)'),
    (3, '''status '' || detail'),
    (4, '''status '' || the name of to_state');

-- Append-only history: every state change with its time.
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

-- A state name that is not in `states` makes its code NULL, and the NOT
-- NULL constraint fails the migration rather than dropping the event.
INSERT INTO event_log (message_id, seq, at, from_state, to_state, detail_form, detail)
SELECT e.message_id,
       ROW_NUMBER() OVER (PARTITION BY e.message_id ORDER BY e.id) - 1,
       e.at,
       (SELECT code FROM states WHERE name = e.from_state),
       (SELECT code FROM states WHERE name = e.to_state),
       CASE
           WHEN substr(e.detail, 1, 4) = 'sid ' AND substr(e.detail, 5) = m.sid THEN 2
           WHEN substr(e.detail, 1, 4) = 'sid ' THEN 1
           WHEN substr(e.detail, 1, 7) = 'status ' AND substr(e.detail, 8) = e.to_state THEN 4
           WHEN substr(e.detail, 1, 7) = 'status ' THEN 3
           ELSE 0
       END,
       CASE
           WHEN substr(e.detail, 1, 4) = 'sid ' AND substr(e.detail, 5) = m.sid THEN NULL
           WHEN substr(e.detail, 1, 4) = 'sid ' THEN substr(e.detail, 5)
           WHEN substr(e.detail, 1, 7) = 'status ' AND substr(e.detail, 8) = e.to_state THEN NULL
           WHEN substr(e.detail, 1, 7) = 'status ' THEN substr(e.detail, 8)
           ELSE e.detail
       END
FROM events AS e
LEFT JOIN messages AS m ON m.id = e.message_id
ORDER BY e.message_id, e.id;

DROP TABLE events;

-- The history as the old `events` table held it.
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
