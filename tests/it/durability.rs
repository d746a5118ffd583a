//! Design guarantee 2 across a power loss: a message's claim (`sending`) is
//! on disk before its request leaves. A process crash loses no commit in
//! WAL mode, so only the order of the system calls can show this: the real
//! binary sends under `strace`, and for every Send request written to a
//! socket the trace must hold an fsync of the database or its log that
//! began after that message's claim was written in full and ended before
//! the request's first byte was written.
//!
//! The claim is found in the bytes written to the log: every page image is
//! decoded, and a message's claim is the first commit that carries its row
//! (its rowid, its number) in state `sending`. Each request's message is
//! found by the `To` of its JSON body; the requests found are reconciled
//! with the simulator's ledger, so the test cannot pass by finding none.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use bpsms::mock::Behaviour;

use crate::harness::{cannot_run_here, path_str, recipients, send_args, World};

const CAMPAIGN: &str = "durable";
const RECIPIENTS: usize = 200;
const SEND_PATH: &[u8] = b"POST /clientweb/smsapi/v1/Messages ";
/// The system calls that write, open, close or sync a file or a socket.
const TRACED: &str = "trace=openat,close,socket,write,writev,sendto,sendmsg,\
                      pwrite64,pwritev,fsync,fdatasync";

#[tokio::test(flavor = "multi_thread")]
async fn every_send_leaves_after_an_fsync_of_its_claim() {
    if !strace_runs() {
        cannot_run_here(
            "trace system calls: `strace` is missing or may not trace here \
             (Debian: apt-get install strace)",
        );
        return;
    }
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(RECIPIENTS));
    let trace_path = world.dir.path().join("send.trace");
    let args = send_args(
        CAMPAIGN,
        path_str(&csv),
        &["--rate", "2000", "--concurrency", "8"],
    );
    let run = world
        .run_command(traced(world.command(&args), &trace_path))
        .await;
    run.assert_code(0);

    let trace = std::fs::read_to_string(&trace_path).expect("read the trace");
    let calls = parse_trace(&trace);
    let database = Database::read(&world).await;
    let files = DatabaseFiles::named(&world.db);
    let log = read_log_writes(&calls, &files, &database);
    let requests = read_send_requests(&calls);
    let syncs = syncs_of(&calls, &files);

    // Reconcile with the ledger first: a trace the test cannot read must
    // not pass as one with nothing to check.
    let ledger = world.ledger();
    assert_eq!(
        ledger.len(),
        RECIPIENTS,
        "the simulator accepted every send"
    );
    assert_eq!(
        requests.len(),
        ledger.len(),
        "Send requests found in the trace against the simulator's ledger"
    );
    let requested: HashSet<&str> = requests.iter().map(|r| r.to.as_str()).collect();
    let accepted: HashSet<&str> = ledger.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(
        requested, accepted,
        "the trace's recipients are the ledger's"
    );

    let mut claim_commits = HashSet::new();
    for request in &requests {
        let message_id = *database
            .message_of_phone
            .get(&request.to)
            .unwrap_or_else(|| panic!("no message in the database for {}", request.to));
        let claim = log
            .claim_of(message_id, &request.to, request.at)
            .unwrap_or_else(|| {
                panic!(
                    "message {message_id} ({}) was sent (trace line {}), but no write of the \
                     log before it claims it",
                    request.to,
                    request.at + 1
                )
            });
        assert!(
            claim.committed_at < request.at,
            "message {message_id}: its request (trace line {}) left before its claim was \
             committed (line {})",
            request.at + 1,
            claim.committed_at + 1
        );
        let synced = syncs
            .iter()
            .any(|sync| sync.began > claim.committed_at && sync.ended < request.at);
        assert!(
            synced,
            "message {message_id} ({}): no fsync of the database between its claim (trace \
             line {}) and its Send request (line {}): a power loss could forget the claim \
             after the request left, and the next run would send it again",
            request.to,
            claim.committed_at + 1,
            request.at + 1
        );
        claim_commits.insert(claim.committed_at);
    }
    eprintln!(
        "durability: {} Send requests, each after an fsync of its claim; {} claim commits, \
         {} fsyncs of the database in the whole run",
        requests.len(),
        claim_commits.len(),
        syncs.len()
    );
}

/// Whether `strace` is installed and may trace a child here.
fn strace_runs() -> bool {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `command` run under `strace`, which writes the trace to `trace_path`.
fn traced(command: Command, trace_path: &Path) -> Command {
    let mut strace = Command::new("strace");
    // -f: tokio writes from several threads; -tt: times for people reading
    // the trace; -xx: every string in hex, so no byte is lost to escaping;
    // -s: page images whole.
    strace
        .args(["-f", "-tt", "-xx", "-s", "65536", "-e", TRACED, "-o"])
        .arg(trace_path)
        .arg("--")
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            strace.env(name, value);
        }
    }
    if let Some(dir) = command.get_current_dir() {
        strace.current_dir(dir);
    }
    strace
}

/// One system call of the trace. `began` and `ended` are the indices of the
/// lines that show its start and its end: strace writes lines in the order
/// it saw the events, so these order calls across threads.
#[derive(Debug)]
struct Call {
    name: String,
    /// The arguments as printed, from a call split across lines joined.
    args: String,
    /// `None` until the call ended, or when it never returned.
    returned: Option<i64>,
    began: usize,
    ended: usize,
}

impl Call {
    /// The first argument, for the calls whose first argument is a file
    /// descriptor.
    fn fd(&self) -> Option<i64> {
        self.args.split(',').next()?.trim().parse().ok()
    }

    /// Every quoted string among the arguments, decoded.
    fn strings(&self) -> Vec<Vec<u8>> {
        quoted_strings(&self.args)
    }

    /// What a write wrote: its buffers, concatenated, cut to what it
    /// returned.
    fn written(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.strings().concat();
        let returned = usize::try_from(self.returned.unwrap_or(0)).unwrap_or(0);
        bytes.truncate(returned);
        bytes
    }
}

/// Parses `strace -f` output into calls, in the order they began.
fn parse_trace(trace: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut unfinished: HashMap<&str, usize> = HashMap::new();
    for (line_index, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        // The time (-tt) is for people reading the trace; the order of the
        // lines is what the test reads.
        let rest = match rest.trim_start().split_once(' ') {
            Some((time, rest)) if time.contains(':') => rest,
            _ => continue,
        };
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some(index) = unfinished.remove(pid) else {
                panic!(
                    "trace line {}: a call resumed that never began",
                    line_index + 1
                );
            };
            let (_, tail) = resumed
                .split_once(" resumed>")
                .unwrap_or_else(|| panic!("trace line {}: {line}", line_index + 1));
            let call = &mut calls[index];
            let (args, returned) = split_return(tail);
            call.args.push_str(args);
            call.returned = returned;
            call.ended = line_index;
            continue;
        }
        let Some((name, tail)) = rest.split_once('(') else {
            // `+++ exited with 0 +++`, `--- SIGCHLD ... ---`
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(args) = tail.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, calls.len());
            calls.push(Call {
                name: name.to_string(),
                args: args.to_string(),
                returned: None,
                began: line_index,
                ended: usize::MAX,
            });
            continue;
        }
        let (args, returned) = split_return(tail);
        calls.push(Call {
            name: name.to_string(),
            args: args.to_string(),
            returned,
            began: line_index,
            ended: line_index,
        });
    }
    calls
}

/// `args) = 42` (or `= -1 EAGAIN (…)`, `= ?`) into the arguments and the
/// value returned. Under `-xx` no string holds a space, so the last ` = `
/// is the return.
fn split_return(tail: &str) -> (&str, Option<i64>) {
    match tail.rsplit_once(" = ") {
        Some((args, returned)) => {
            let args = args.trim_end().strip_suffix(')').unwrap_or(args);
            let value = returned.split_whitespace().next().unwrap_or("");
            (args, value.parse().ok())
        }
        None => (tail, None),
    }
}

/// The strings of an argument list printed under `-xx` (`"\x50\x4f"`). A
/// string cut short by `-s` (followed by `...`) fails the test: its bytes
/// cannot be trusted.
fn quoted_strings(args: &str) -> Vec<Vec<u8>> {
    let mut strings = Vec::new();
    let mut rest = args;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let end = after
            .find('"')
            .unwrap_or_else(|| panic!("an unclosed string in the trace: {args:.200}"));
        let hex = &after[..end];
        assert!(
            !after[end + 1..].starts_with("..."),
            "a string in the trace was cut short; raise strace's -s"
        );
        let bytes = hex
            .split("\\x")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                u8::from_str_radix(pair, 16)
                    .unwrap_or_else(|_| panic!("not -xx output in the trace: {hex:.200}"))
            })
            .collect();
        strings.push(bytes);
        rest = &after[end + 1..];
    }
    strings
}

/// The database's file and its log, by the names the process opened.
struct DatabaseFiles {
    database: Vec<u8>,
    log: Vec<u8>,
}

impl DatabaseFiles {
    fn named(database: &Path) -> DatabaseFiles {
        let database = path_str(database).as_bytes().to_vec();
        let mut log = database.clone();
        log.extend_from_slice(b"-wal");
        DatabaseFiles { database, log }
    }
}

/// Which file each descriptor is, at each point of the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opened {
    Database,
    Log,
    Socket,
    Other,
}

/// Walks the calls in order, following which descriptor is which file:
/// descriptors are reused after `close`.
fn each_with_file<'a>(
    calls: &'a [Call],
    files: &DatabaseFiles,
) -> impl Iterator<Item = (&'a Call, Opened)> {
    let mut open: HashMap<i64, Opened> = HashMap::new();
    let database = files.database.clone();
    let log = files.log.clone();
    calls.iter().map(move |call| {
        let file = call
            .fd()
            .and_then(|fd| open.get(&fd).copied())
            .unwrap_or(Opened::Other);
        match call.name.as_str() {
            "openat" => {
                if let Some(fd) = call.returned.filter(|&fd| fd >= 0) {
                    let path = call.strings().into_iter().next().unwrap_or_default();
                    let opened = if path == database {
                        Opened::Database
                    } else if path == log {
                        Opened::Log
                    } else {
                        Opened::Other
                    };
                    open.insert(fd, opened);
                }
            }
            "socket" => {
                if let Some(fd) = call.returned.filter(|&fd| fd >= 0) {
                    open.insert(fd, Opened::Socket);
                }
            }
            "close" => {
                if let Some(fd) = call.fd() {
                    open.remove(&fd);
                }
            }
            _ => {}
        }
        (call, file)
    })
}

/// A completed fsync or fdatasync of the database or its log.
struct Fsync {
    began: usize,
    ended: usize,
}

fn syncs_of(calls: &[Call], files: &DatabaseFiles) -> Vec<Fsync> {
    each_with_file(calls, files)
        .filter(|(call, file)| {
            matches!(call.name.as_str(), "fsync" | "fdatasync")
                && matches!(file, Opened::Database | Opened::Log)
                && call.returned == Some(0)
        })
        .map(|(call, _)| Fsync {
            began: call.began,
            ended: call.ended,
        })
        .collect()
}

/// A Send request as it left: where its first byte was written, and to whom.
struct SendRequest {
    at: usize,
    to: String,
}

/// Every Send request written to a socket, rebuilt from each connection's
/// byte stream (a request may span writes, a write may end one request and
/// start the next).
fn read_send_requests(calls: &[Call]) -> Vec<SendRequest> {
    let no_files = DatabaseFiles {
        database: Vec::new(),
        log: Vec::new(),
    };
    let mut streams: HashMap<i64, (Vec<u8>, usize)> = HashMap::new();
    let mut requests = Vec::new();
    for (call, file) in each_with_file(calls, &no_files) {
        let Some(fd) = call.fd() else { continue };
        if call.name == "close" {
            streams.remove(&fd);
            continue;
        }
        if file != Opened::Socket
            || !matches!(
                call.name.as_str(),
                "write" | "writev" | "sendto" | "sendmsg"
            )
        {
            continue;
        }
        let written = call.written();
        if written.is_empty() {
            continue;
        }
        let (buffer, started) = streams.entry(fd).or_insert((Vec::new(), call.began));
        if buffer.is_empty() {
            *started = call.began;
        }
        buffer.extend_from_slice(&written);
        while let Some((length, request)) = whole_request(buffer) {
            if request.starts_with(SEND_PATH) {
                requests.push(SendRequest {
                    at: *started,
                    to: recipient_of(request),
                });
            }
            buffer.drain(..length);
            // What is left began in this write.
            *started = call.began;
        }
    }
    requests
}

/// The first whole HTTP request in `bytes`, with its length.
fn whole_request(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let body_length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|value| value.trim().parse().expect("a Content-Length"))
        .unwrap_or(0);
    let length = head_end + body_length;
    if bytes.len() < length {
        return None;
    }
    Some((length, &bytes[..length]))
}

/// The `To` of a Send request's JSON body.
fn recipient_of(request: &[u8]) -> String {
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole request")
        + 4;
    let body: serde_json::Value =
        serde_json::from_slice(&request[head_end..]).expect("a Send body is JSON");
    body["To"].as_str().expect("a Send body has To").to_string()
}

/// What the test needs from the database after the run.
struct Database {
    page_size: usize,
    /// Columns of `messages`, and where `phone_e164` and `state` are.
    columns: usize,
    phone_column: usize,
    state_column: usize,
    message_of_phone: HashMap<String, i64>,
}

impl Database {
    async fn read(world: &World) -> Database {
        let pool = world.read_db().await;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&pool)
            .await
            .expect("page size");
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('messages')")
                .fetch_all(&pool)
                .await
                .expect("columns of messages");
        let position = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .unwrap_or_else(|| panic!("messages has no column {name}"))
        };
        let messages: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, phone_e164 FROM messages WHERE phone_e164 IS NOT NULL")
                .fetch_all(&pool)
                .await
                .expect("messages");
        pool.close().await;
        Database {
            page_size: usize::try_from(page_size).expect("a page size"),
            columns: names.len(),
            phone_column: position("phone_e164"),
            state_column: position("state"),
            message_of_phone: messages
                .into_iter()
                .map(|(id, phone)| (phone, id))
                .collect(),
        }
    }
}

/// A message's claim in the log: where the commit that holds it was
/// written in full.
struct Claim {
    committed_at: usize,
}

/// The page images written to the log, in order, with the rows of
/// `messages` they hold.
struct LogWrites {
    /// Per message, every write of its row, in order.
    rows: BTreeMap<i64, Vec<RowWrite>>,
    /// Trace lines (ends) of the page writes that closed a commit.
    commits: Vec<usize>,
}

/// A row of `messages` as one page write carried it.
struct RowWrite {
    /// The trace line where the write ended.
    at: usize,
    state: Vec<u8>,
    phone: Vec<u8>,
}

impl LogWrites {
    /// The claim behind a request that left at trace line `before`: the
    /// commit of the last write before it that turned the message to
    /// `sending` (a message put back in the queue is claimed again).
    fn claim_of(&self, message_id: i64, phone: &str, before: usize) -> Option<Claim> {
        let mut claimed_at = None;
        let mut was_sending = false;
        for row in self.rows.get(&message_id)? {
            if row.at >= before {
                break;
            }
            let sending = row.state == b"sending" && row.phone == phone.as_bytes();
            if sending && !was_sending {
                claimed_at = Some(row.at);
            }
            was_sending = sending;
        }
        let claimed_at = claimed_at?;
        let committed_at = *self.commits.iter().find(|&&commit| commit >= claimed_at)?;
        Some(Claim { committed_at })
    }
}

/// Decodes every page image written to the log. SQLite writes a frame as
/// its 24-byte header, then the page; a header whose bytes 4..8 are not
/// zero marks its frame as the one that commits.
fn read_log_writes(calls: &[Call], files: &DatabaseFiles, database: &Database) -> LogWrites {
    let mut log = LogWrites {
        rows: BTreeMap::new(),
        commits: Vec::new(),
    };
    let mut next_page_commits = false;
    let mut pages = 0;
    for (call, file) in each_with_file(calls, files) {
        if file != Opened::Log || !matches!(call.name.as_str(), "pwrite64" | "pwritev") {
            continue;
        }
        let written = call.written();
        if written.len() == 24 {
            next_page_commits = written[4..8] != [0, 0, 0, 0];
        } else if written.len() == database.page_size {
            pages += 1;
            for (rowid, columns) in table_rows(&written) {
                if columns.len() != database.columns {
                    continue;
                }
                let (Some(Value::Text(phone)), Some(Value::Text(state))) = (
                    columns.get(database.phone_column),
                    columns.get(database.state_column),
                ) else {
                    continue;
                };
                log.rows.entry(rowid).or_default().push(RowWrite {
                    at: call.ended,
                    state: state.clone(),
                    phone: phone.clone(),
                });
            }
            if next_page_commits {
                log.commits.push(call.ended);
            }
            next_page_commits = false;
        }
    }
    assert!(
        pages > 0,
        "no page written to the log was found in the trace"
    );
    log
}

/// A value of a record, as far as the test reads it.
#[derive(Debug)]
enum Value {
    Text(Vec<u8>),
    Other,
}

/// The rows of a table b-tree leaf page (type 13), each as its rowid and
/// its columns; nothing for any other page. A row that spills to an
/// overflow page is skipped: a message's row is far smaller than a page.
fn table_rows(page: &[u8]) -> Vec<(i64, Vec<Value>)> {
    // Page 1 starts with the 100-byte database header; it holds the schema.
    if page.starts_with(b"SQLite format 3\0") || page.first() != Some(&13) {
        return Vec::new();
    }
    let max_local = page.len() - 35;
    let cells = usize::from(u16::from_be_bytes([page[3], page[4]]));
    let mut rows = Vec::with_capacity(cells);
    for cell in 0..cells {
        let pointer = 8 + 2 * cell;
        let Some(offset) = page.get(pointer..pointer + 2) else {
            break;
        };
        let mut at = usize::from(u16::from_be_bytes([offset[0], offset[1]]));
        let Some(payload_length) = varint(page, &mut at) else {
            continue;
        };
        let Some(rowid) = varint(page, &mut at) else {
            continue;
        };
        let payload_length = usize::try_from(payload_length).unwrap_or(usize::MAX);
        if payload_length > max_local {
            continue;
        }
        let Some(payload) = page.get(at..at + payload_length) else {
            continue;
        };
        if let Some(columns) = record(payload) {
            rows.push((rowid, columns));
        }
    }
    rows
}

/// The columns of an SQLite record: a header of serial types, then the
/// values.
fn record(payload: &[u8]) -> Option<Vec<Value>> {
    let mut at = 0;
    let header_length = usize::try_from(varint(payload, &mut at)?).ok()?;
    let mut types = Vec::new();
    while at < header_length {
        types.push(varint(payload, &mut at)?);
    }
    let mut body = header_length;
    let mut columns = Vec::with_capacity(types.len());
    for serial_type in types {
        let length = match serial_type {
            0 | 8 | 9 => 0,
            1..=4 => usize::try_from(serial_type).ok()?,
            5 => 6,
            6 | 7 => 8,
            n if n >= 12 => usize::try_from((n - 12) / 2).ok()?,
            _ => return None,
        };
        let bytes = payload.get(body..body + length)?;
        columns.push(if serial_type >= 13 && serial_type % 2 == 1 {
            Value::Text(bytes.to_vec())
        } else {
            Value::Other
        });
        body += length;
    }
    Some(columns)
}

/// SQLite's big-endian varint: 7 bits a byte, the ninth byte whole.
fn varint(bytes: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for i in 0..9 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        if i == 8 {
            value = (value << 8) | u64::from(byte);
            break;
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            break;
        }
    }
    Some(value as i64)
}
