-- The `--require COLUMN=VALUE` consent rules a campaign was imported with,
-- one `column=value` per line, so that a resume can tell the same command
-- from one that would change who is texted.
ALTER TABLE campaigns ADD COLUMN requirements TEXT NOT NULL DEFAULT '';
