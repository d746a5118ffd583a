#!/usr/bin/env bash
# The performance figures of BENCHMARKS.md, each measured side by side with
# its reference in the same run. Needs python3, sqlite3, wrk and GNU time
# (Debian: apt-get install sqlite3 wrk time).
#
#   benches/run.sh [import|claim|send|rate|pool|estimate|tracking|e2e|history|all]   (default: all)
#
# BENCH_DIR (default /tmp/bpsms-bench) holds the generated files and
# databases; BENCH_ROWS (default 1000000) sizes the import and end-to-end runs.
# BENCH_BIN runs that binary instead of building target/release/bpsms, so that
# two builds can be measured alternately (keep a copy of one).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BENCH_BIN:-$ROOT/target/release/bpsms}
DIR=${BENCH_DIR:-/tmp/bpsms-bench}
ROWS=${BENCH_ROWS:-1000000}
PORT=${BENCH_PORT:-18181}
SIM=http://127.0.0.1:$PORT
WHAT=${1:-all}
mkdir -p "$DIR"
cd "$DIR"

export BPSMS_CLIENT_ID=demo BPSMS_CLIENT_SECRET=demo-secret BPSMS_BASE_URL=$SIM
FROM=+16505550100

[ -n "${BENCH_BIN:-}" ] || (cd "$ROOT" && cargo build --release --quiet)

# `/usr/bin/time` as "seconds peak_kb".
timed() { /usr/bin/time -f "%e %M" -o "$DIR/time.out" "$@"; cat "$DIR/time.out"; }
recipients() { # rows [duplicate_every] → file name; generated once
  local file=$DIR/r$1${2:+d$2}.csv
  [ -s "$file" ] || python3 "$ROOT/benches/gen_recipients.py" "$1" ${2:-} > "$file"
  echo "$file"
}
SIM_PID=
start_sim() {
  stop_sim
  "$BIN" mock-server --listen 127.0.0.1:$PORT "$@" > "$DIR/sim.log" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 100); do curl -sf "$SIM/_mock/stats" > /dev/null && return; sleep 0.1; done
  echo "the simulator did not start; see $DIR/sim.log" >&2; exit 1
}
stop_sim() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2> /dev/null || true; wait "$SIM_PID" 2> /dev/null || true; fi
  SIM_PID=
}
trap stop_sim EXIT
ledger() { curl -sf "$SIM/_mock/ledger" | python3 "$ROOT/benches/ledger.py" "$@"; }
stats() { curl -sf "$SIM/_mock/stats"; }
fresh_db() { rm -f "$DIR/$1" "$DIR/$1-wal" "$DIR/$1-shm"; }

bench_import() {
  import_once "$(recipients "$ROWS")" "distinct numbers"
  # Every 50th row repeats an earlier number: duplicates are settled too.
  import_once "$(recipients "$ROWS" 50)" "2% duplicates"
}

import_once() { # csv label
  local csv=$1
  echo "## Import of $ROWS rows, $2 ($(du -h "$csv" | cut -f1))"
  fresh_db ref.db
  read -r ref_s ref_kb < <(timed sqlite3 "$DIR/ref.db" ".import --csv $csv recipients")
  fresh_db import.db
  read -r s kb < <(timed "$BIN" --db "$DIR/import.db" import --campaign bench --csv "$csv" \
    --from $FROM --body 'Hello {{first_name}}' 2> /dev/null)
  echo "sqlite3 .import: ${ref_s} s, ${ref_kb} KB peak RSS"
  echo "bpsms import:    ${s} s, ${kb} KB peak RSS"
  python3 -c "print(f'ratio bpsms/sqlite3: {$s/$ref_s:.2f}; rows/s: {$ROWS/$s:,.0f}')"
}

bench_send() {
  local n=${SEND_ROWS:-50000} conns=${SEND_CONNECTIONS:-64} csv
  csv=$(recipients "$n")
  echo "## Send throughput, $conns connections"
  start_sim --sent-after 1h --delivered-after 1h
  local token
  token=$(curl -sf -d grant_type=client_credentials -d client_id=demo \
    -d client_secret=demo-secret -d scope=127.0.0.1 "$SIM/configapi/v2/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  BPSMS_TOKEN=$token wrk -t2 -c"$conns" -d10s -s "$ROOT/benches/send.lua" \
    "$SIM/clientweb/smsapi/v1/Messages" > "$DIR/wrk.out"
  local raw; raw=$(awk '/Requests\/sec/ {print $2}' "$DIR/wrk.out")
  echo "wrk, same POST: $raw requests/s"
  start_sim --sent-after 1h --delivered-after 1h
  fresh_db send.db
  "$BIN" --db "$DIR/send.db" import --campaign send --csv "$csv" --from $FROM \
    --body 'Hello {{first_name}}' 2> /dev/null
  # The figure is the sending phase's own: the run is stopped once its log
  # says sending finished. The previous round's log goes first: read before
  # this run truncates it, it would stop the run as it starts, while a
  # background job still ignores SIGINT.
  : > "$DIR/send.err"
  RUST_LOG=bpsms::campaign=info "$BIN" --db "$DIR/send.db" send --campaign send \
    --rate 1000000 --concurrency "$conns" --poll-delay 1h --track-for 1h \
    > /dev/null 2> "$DIR/send.err" &
  local pid=$!
  until grep -q "sending finished" "$DIR/send.err" 2> /dev/null; do
    kill -0 $pid 2> /dev/null || { cat "$DIR/send.err" >&2; exit 1; }
    sleep 0.2
  done
  kill -INT $pid; wait $pid || true
  local line; line=$(grep -o "sending finished.*" "$DIR/send.err")
  echo "bpsms: $line"
  echo "ledger: $(ledger)"
  local ours; ours=$(sed -E 's/.*\(([0-9]+)\/s\).*/\1/' <<< "$line")
  python3 -c "print(f'ratio bpsms/wrk: {$ours/$raw:.2f}')"
}

bench_rate() {
  echo "## Rate accuracy"
  for spec in "50 30" "500 10"; do
    set -- $spec
    local rate=$1 seconds=$2 n=$(( $1 * $2 )) csv
    csv=$(recipients "$n")
    start_sim --sent-after 1s --delivered-after 2s
    fresh_db rate.db
    "$BIN" --db "$DIR/rate.db" send --campaign rate --csv "$csv" --from $FROM \
      --body 'Hello {{first_name}}' --rate "$rate" --concurrency 16 --poll-delay 3s \
      > /dev/null 2>&1
    echo "--rate $rate, $n messages: $(ledger)"
  done
}

# A pool of three numbers under --rate-per-from, as the simulator sees it:
# each number's busiest second and mean rate, first with the campaign's
# --rate binding (3 x 150 > 300), then with the numbers' (3 x 50 < 300).
bench_pool() {
  echo "## Rate accuracy per sending number"
  for per_from in 150 50; do
    local csv; csv=$(recipients 12000)
    start_sim --sent-after 1s --delivered-after 2s
    fresh_db pool.db
    "$BIN" --db "$DIR/pool.db" send --campaign pool --csv "$csv" --from $FROM \
      --from +16505550111 --from +16505550122 --body 'Hello {{first_name}}' \
      --rate 300 --rate-per-from $per_from --concurrency 16 --poll-delay 3s > /dev/null 2>&1
    echo "--rate 300 --rate-per-from $per_from, 12000 messages: $(ledger --by-from)"
  done
}

# The finish estimate of `check` against the measured end of a windowed run:
# 1,200 recipients in UTC (a `timezone` column), a window that opens at the
# next minute, 20/s. The estimate is the last send's time; the measure, the
# last accepted send.
bench_estimate() {
  echo "## Finish estimate against a windowed run"
  local csv=$DIR/utc1200.csv
  [ -s "$csv" ] || sed '1s/$/,timezone/; 2,$s/$/,UTC/' "$(recipients 1200)" > "$csv"
  start_sim --sent-after 1s --delivered-after 2s
  local opens; opens=$(date -u -d '+1 minute' +%H:%M)
  local flags=(--csv "$csv" --from $FROM --body 'Hello {{first_name}}' --window "$opens-23:59"
    --timezone UTC --rate 20)
  local estimate; estimate=$("$BIN" check "${flags[@]}" | sed -n 's/.*last message is sent about \(.*\) (in.*/\1/p')
  fresh_db estimate.db
  "$BIN" --db "$DIR/estimate.db" send --campaign estimate "${flags[@]}" --poll-delay 3s > /dev/null 2>&1
  local measured; measured=$(sqlite3 "$DIR/estimate.db" "SELECT max(sent_at) FROM messages")
  echo "window opens $opens UTC; estimated last send: $estimate; measured: $(date -u -d "@$((measured / 1000)).$((measured % 1000))" '+%a %Y-%m-%d %H:%M:%S.%3N')"
}

bench_tracking() {
  local n=${TRACK_ROWS:-2000} csv
  csv=$(recipients "$n")
  echo "## Tracking cost at the simulator's default timing, default --poll-delay"
  start_sim
  fresh_db track.db
  timed "$BIN" --db "$DIR/track.db" send --campaign track --csv "$csv" --from $FROM \
    --body 'Hello {{first_name}}' --rate 200 --concurrency 16 > /dev/null 2>&1
  stats | python3 -c "import json,sys; s=json.load(sys.stdin); \
print(f\"{s['get_requests']} Gets for {s['sends_accepted']} accepted sends: \
{s['get_requests']/s['sends_accepted']:.2f} per message\")"
  echo "## Finding due polls: 10,000 outstanding among $ROWS and among 10,000"
  local small; small=$(recipients 10000)
  for db in due-big.db due-small.db; do fresh_db $db; done
  "$BIN" --db "$DIR/due-big.db" import --campaign due --csv "$(recipients "$ROWS")" \
    --from $FROM --body 'Hello {{first_name}}' 2> /dev/null
  "$BIN" --db "$DIR/due-small.db" import --campaign due --csv "$small" \
    --from $FROM --body 'Hello {{first_name}}' 2> /dev/null
  python3 "$ROOT/benches/due_polls.py" "$DIR/due-big.db" "$DIR/due-small.db"
}

bench_e2e() {
  local csv; csv=$(recipients "$ROWS")
  echo "## End to end: $ROWS recipients, import + send + track"
  start_sim --sent-after 100ms --delivered-after 300ms --failure-ratio 0.05
  fresh_db e2e.db
  /usr/bin/time -f "%e %M" -o "$DIR/time.out" "$BIN" --db "$DIR/e2e.db" send --campaign e2e \
    --csv "$csv" --from $FROM --body 'Hello {{first_name}}' --rate 1000000 --concurrency 64 \
    --poll-delay 1s > "$DIR/e2e.out" 2> /dev/null
  read -r s kb < "$DIR/time.out"
  local bytes; bytes=$(stat -c %s "$DIR/e2e.db")
  echo "wall ${s} s, peak RSS ${kb} KB, database $bytes bytes = $((bytes / ROWS)) bytes/message"
  grep -E "^  (delivered|failed)|Delivery rate|Send to final" "$DIR/e2e.out"
  echo "simulator: $(stats)"
}

# Bytes of the history per message, in the compact `event_log` and in the
# `events` table it replaced (migration 0003), on the same events: the
# end-to-end database (made by `e2e` when missing) is copied and put back in
# the old schema with sqlite3, then opened by bpsms, which migrates it.
bench_history() {
  [ -s "$DIR/e2e.db" ] || bench_e2e
  echo "## History: event_log (0003) against the events table it replaced, $ROWS messages"
  local n; n=$(sqlite3 "$DIR/e2e.db" "SELECT COUNT(*) FROM messages")
  sizes() { # db → "bytes of the history, bytes of the file" per message
    sqlite3 "$1" "SELECT printf('history %.1f B/message (%s), whole file %.1f B/message',
        SUM(pgsize) * 1.0 / $n, group_concat(DISTINCT name),
        (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) * 1.0 / $n)
      FROM dbstat WHERE name IN ('event_log', 'events', 'events_message')"
  }
  echo "compact, as the run left it:  $(sizes "$DIR/e2e.db")"
  fresh_db history-new.db
  sqlite3 "$DIR/e2e.db" "VACUUM INTO '$DIR/history-new.db'"
  echo "compact, vacuumed:            $(sizes "$DIR/history-new.db")"
  fresh_db history-old.db
  sqlite3 "$DIR/e2e.db" "VACUUM INTO '$DIR/history-old.db'"
  sqlite3 "$DIR/history-old.db" "
    CREATE TABLE events_old (id INTEGER PRIMARY KEY,
      message_id INTEGER NOT NULL REFERENCES messages (id), at INTEGER NOT NULL,
      from_state TEXT NOT NULL, to_state TEXT NOT NULL, detail TEXT);
    INSERT INTO events_old (message_id, at, from_state, to_state, detail)
      SELECT message_id, at, from_state, to_state, detail FROM events ORDER BY at, message_id, seq;
    DROP VIEW events; DROP TABLE event_log; DROP TABLE detail_forms; DROP TABLE states;
    ALTER TABLE events_old RENAME TO events;
    CREATE INDEX events_message ON events (message_id);
    DELETE FROM _sqlx_migrations WHERE version = 3;
    VACUUM;"
  echo "old events table, vacuumed:   $(sizes "$DIR/history-old.db")"
  history_digest() { # db order → md5 of every event in history order
    sqlite3 "$1" "SELECT message_id, at, from_state, to_state, detail FROM events
      ORDER BY message_id, $2" | md5sum | cut -c1-12
  }
  local before; before=$(history_digest "$DIR/history-old.db" id)
  /usr/bin/time -f "%e %M" -o "$DIR/time.out" "$BIN" --db "$DIR/history-old.db" status > /dev/null
  read -r s kb < "$DIR/time.out"
  local after; after=$(history_digest "$DIR/history-old.db" seq)
  echo "migrating it at open (bpsms status): ${s} s, ${kb} KB peak RSS; history md5 $before -> $after"
  echo "migrated:                     $(sizes "$DIR/history-old.db")"
}

# Claiming by window: a campaign under way over 30 zones, one zone's window
# open, 90 % of that zone's messages already sent. A claim reads only the
# open zone's range of `messages_sendable`, so its time must not grow with
# the table: the time per claim of 256 at 100,000 and at 1,000,000 rows,
# with the plan, beside the same claim made by scanning the pending
# messages in row order (what a claim costs without the index by zone).
bench_claim() {
  local pick="FROM json_each('[7]') AS open CROSS JOIN messages AS m INDEXED BY messages_sendable
      WHERE m.campaign_id = 1 AND m.zone_set = open.value AND m.state = 'pending' LIMIT 256"
  local scan="FROM messages AS m NOT INDEXED
      WHERE m.campaign_id = 1 AND m.state = 'pending' AND m.zone_set = 7 ORDER BY m.id LIMIT 256"
  for rows in 100000 1000000; do
    local csv=$DIR/zones$rows.csv db=$DIR/claim$rows.db
    [ -s "$csv" ] || python3 "$ROOT/benches/gen_recipients.py" "$rows" 0 30 > "$csv"
    rm -f "$db" "$db-wal" "$db-shm"
    "$BIN" --db "$db" import --campaign c --csv "$csv" --from $FROM --body "Hi {{first_name}}" 2> /dev/null
    sqlite3 "$db" "UPDATE messages SET state = 'delivered' WHERE id IN (
      SELECT id FROM messages WHERE zone_set = 7 ORDER BY id
      LIMIT (SELECT count(*) * 9 / 10 FROM messages WHERE zone_set = 7))"
    echo "$rows rows in $(sqlite3 "$db" "SELECT count(*) FROM zone_sets WHERE campaign_id = 1") zone sets, $(sqlite3 "$db" "SELECT count(*) FROM messages WHERE state = 'pending' AND zone_set = 7") pending in the open one"
    sqlite3 "$db" "EXPLAIN QUERY PLAN SELECT m.id $pick" | sed 's/^/  plan: /'
    for way in pick scan; do
      local n=1000; [ $way = scan ] && n=20
      { echo "BEGIN;"; for _ in $(seq $n); do echo "SELECT count(*) FROM (SELECT m.id ${!way});"; done
        echo "COMMIT;"; } > "$DIR/claims.sql"
      /usr/bin/time -f "%e" -o "$DIR/time.out" sqlite3 "$db" < "$DIR/claims.sql" > /dev/null
      echo "  $way: $(python3 -c "print(f'{$(cat "$DIR/time.out") * 1000 / $n:.3f}')") ms per claim of 256 ($n claims)"
    done
  done
}

case $WHAT in
  import) bench_import ;;
  claim) bench_claim ;;
  pool) bench_pool ;;
  estimate) bench_estimate ;;
  send) bench_send ;;
  rate) bench_rate ;;
  tracking) bench_tracking ;;
  e2e) bench_e2e ;;
  history) bench_history ;;
  all) bench_import; bench_send; bench_rate; bench_tracking; bench_e2e; bench_history ;;
  *) echo "usage: $0 [import|claim|send|rate|pool|estimate|tracking|e2e|history|all]" >&2; exit 2 ;;
esac
