//! End-to-end tests of the simulator over real HTTP on 127.0.0.1:0.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use super::*;
use crate::api::wire::{MessageResource, TokenResponse, MESSAGES_PATH, TOKEN_PATH};

const TO: &str = "+14155550123";
const FROM: &str = "+16505550100";

/// Quick lifecycle, no failures, no faults.
fn quick() -> Behaviour {
    Behaviour {
        sent_after: Duration::from_millis(50),
        delivered_after: Duration::from_millis(100),
        failure_ratio: 0.0,
        ..Behaviour::default()
    }
}

/// [`quick`] with one knob turned.
fn quick_with(turn: impl FnOnce(&mut Behaviour)) -> Behaviour {
    let mut behaviour = quick();
    turn(&mut behaviour);
    behaviour
}

async fn start(behaviour: Behaviour) -> RunningSimulator {
    RunningSimulator::start(behaviour)
        .await
        .expect("simulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

async fn token_request(sim: &RunningSimulator, form: &str) -> reqwest::Response {
    post_form(http().post(format!("{}{TOKEN_PATH}", sim.base_url())), form).await
}

async fn post_form(request: reqwest::RequestBuilder, form: &str) -> reqwest::Response {
    request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("form request")
}

/// A simulator and a token it issued.
async fn signed_in(behaviour: Behaviour) -> (RunningSimulator, String) {
    let sim = start(behaviour).await;
    let token = bearer(&sim).await;
    (sim, token)
}

async fn bearer(sim: &RunningSimulator) -> String {
    let response = token_request(
        sim,
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret&scope=acme.brightpattern.com",
    )
    .await;
    assert_eq!(response.status(), 200);
    let token: TokenResponse = response.json().await.expect("token json");
    token.access_token
}

async fn send_json(sim: &RunningSimulator, token: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}{MESSAGES_PATH}", sim.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("send request")
}

async fn send_form(sim: &RunningSimulator, token: &str, form: &str) -> reqwest::Response {
    let request = http().post(format!("{}{MESSAGES_PATH}", sim.base_url()));
    post_form(request.bearer_auth(token), form).await
}

async fn get(sim: &RunningSimulator, token: &str, sid: &str) -> reqwest::Response {
    http()
        .get(format!("{}{MESSAGES_PATH}/{sid}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("get request")
}

/// The simplest valid SMS request.
fn hi() -> Value {
    json!({"To": TO, "From": FROM, "Body": "Hi"})
}

async fn sms(sim: &RunningSimulator, token: &str) -> MessageResource {
    let response = send_json(sim, token, &hi()).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("message json")
}

/// Polls Get until `status` shows up or two seconds pass.
async fn wait_for_status(sim: &RunningSimulator, token: &str, sid: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = get(sim, token, sid).await;
        assert_eq!(response.status(), 200);
        let value: Value = response.json().await.expect("get json");
        if value["status"] == status {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "status {status} not reached; last answer {value}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A header of `response` as text, if it has it.
fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn error_description(response: reqwest::Response) -> String {
    let value: Value = response.json().await.expect("error json");
    value["error_description"]
        .as_str()
        .expect("error_description")
        .to_owned()
}

#[tokio::test]
async fn token_success() {
    let sim = start(quick()).await;
    let response = token_request(
        &sim,
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret&scope=acme.brightpattern.com",
    )
    .await;
    assert_eq!(response.status(), 200);
    let value: Value = response.json().await.expect("token json");
    assert_eq!(value["expires_in"], "3600");
    assert_eq!(value["token_type"], "Bearer");
    assert_eq!(value["scope"], "acme.brightpattern.com");
    let token = value["access_token"].as_str().expect("token string");
    assert_eq!(token.len(), 64);
    assert!(token
        .chars()
        .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
    assert_eq!(sim.state.stats().token_requests, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_expires_in_as_number_quirk() {
    let sim = start(Behaviour {
        expires_in_number: true,
        token_lifetime: Duration::from_secs(3599),
        ..quick()
    })
    .await;
    let response = token_request(
        &sim,
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret&scope=x",
    )
    .await;
    let value: Value = response.json().await.expect("token json");
    assert_eq!(value["expires_in"], 3599);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_rejections() {
    let sim = start(quick()).await;
    for form in [
        "grant_type=client_credentials&client_id=demo&client_secret=wrong&scope=x",
        "grant_type=client_credentials&client_id=other&client_secret=demo-secret&scope=x",
        "grant_type=password&client_id=demo&client_secret=demo-secret&scope=x",
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret&scope=",
    ] {
        let response = token_request(&sim, form).await;
        assert_eq!(response.status(), 401, "{form}");
        let value: Value = response.json().await.expect("error json");
        assert_eq!(
            value,
            json!({"error": "invalid_client", "error_description": "Authentication failed"})
        );
    }
    let response = token_request(&sim, "client_id=demo").await;
    assert_eq!(response.status(), 400);
    let stats = sim.state.stats();
    assert_eq!(stats.token_requests, 6);
    assert_eq!(stats.unauthorized, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_or_unknown_bearer_is_401() {
    let sim = start(quick()).await;
    let response = http()
        .post(format!("{}{MESSAGES_PATH}", sim.base_url()))
        .json(&hi())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    let response = send_json(&sim, "DEADBEEF", &hi()).await;
    assert_eq!(response.status(), 401);
    let response = get(&sim, "DEADBEEF", "5f0c2d9e-8a41-4c3b-9e1f-2b7d6a1c0e93").await;
    assert_eq!(response.status(), 401);
    assert!(sim.state.ledger().is_empty());
    assert_eq!(sim.state.stats().unauthorized, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn send_then_get_progresses_to_delivered() {
    let (sim, token) = signed_in(quick()).await;
    let response = send_json(&sim, &token, &hi()).await;
    assert_eq!(response.status(), 200);
    let sent: Value = response.json().await.expect("send json");
    let sid = sent["sid"].as_str().expect("sid").to_owned();
    assert_eq!(sid.len(), 36);
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["date_sent"], Value::Null);
    assert_eq!(sent["price"], Value::Null);
    assert_eq!(sent["error_code"], Value::Null);
    assert_eq!(sent["num_segments"], "1");
    assert_eq!(sent["num_media"], "0");
    assert_eq!(sent["api_version"], "1");
    assert_eq!(sent["direction"], "outbound-api");
    assert_eq!(sent["account_sid"], ACCOUNT_SID);
    assert_eq!(sent["from"], "16505550100");
    assert_eq!(sent["to"], TO);
    assert_eq!(sent["body"], "Hi");
    assert_eq!(sent["uri"], format!("{MESSAGES_PATH}/{sid}"));
    let created = sent["date_created"].as_str().expect("date_created");
    assert!(created.ends_with(" +0000"), "{created}");
    assert!(jiff::fmt::rfc2822::parse(created).is_ok(), "{created}");

    let sent_state = wait_for_status(&sim, &token, &sid, "sent").await;
    assert!(sent_state["date_sent"].is_string());
    let delivered = wait_for_status(&sim, &token, &sid, "delivered").await;
    assert_eq!(delivered["sid"], sid.as_str());
    assert_eq!(delivered["error_code"], Value::Null);

    let ledger = sim.state.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].sid, sid);
    assert_eq!(ledger[0].to, TO);
    assert_eq!(ledger[0].from, FROM);
    assert_eq!(ledger[0].body.as_deref(), Some("Hi"));
    assert!(ledger[0].media_urls.is_empty());
    let stats = sim.state.stats();
    assert_eq!(stats.send_requests, 1);
    assert_eq!(stats.sends_accepted, 1);
    assert!(stats.get_requests >= 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn first_get_is_queued_with_default_timing() {
    let (sim, token) = signed_in(Behaviour::default()).await;
    let message = sms(&sim, &token).await;
    let sid = message.sid.expect("sid");
    let value: Value = get(&sim, &token, &sid).await.json().await.expect("json");
    assert_eq!(value["status"], "queued");
    sim.shutdown().await;
}

#[tokio::test]
async fn failures_carry_error_code_and_quirks_apply() {
    let (sim, token) = signed_in(Behaviour {
        failure_ratio: 1.0,
        quirk_numeric_error_code: true,
        quirk_null_sid: true,
        quirk_no_plus: true,
        quirk_extra_fields: true,
        ..quick()
    })
    .await;
    let response = send_json(&sim, &token, &hi()).await;
    let sent: Value = response.json().await.expect("json");
    // Send answers keep their sid even with the null-sid quirk.
    let sid = sent["sid"].as_str().expect("sid").to_owned();
    assert_eq!(sent["to"], "14155550123");
    assert!(sent.get("tenant_id").is_some());
    let failed = wait_for_status(&sim, &token, &sid, "failed").await;
    assert_eq!(failed["error_code"], 30003);
    assert_eq!(failed["error_message"], "Unreachable destination handset");
    assert_eq!(failed["sid"], Value::Null);
    assert_eq!(failed["uri"], format!("{MESSAGES_PATH}/{sid}"));
    assert_eq!(failed["to"], "14155550123");
    assert!(failed["links"].is_object());
    // The lenient wire type still reads it.
    let parsed: MessageResource = serde_json::from_value(failed).expect("lenient parse");
    assert_eq!(parsed.error_code.as_deref(), Some("30003"));
    sim.shutdown().await;
}

#[tokio::test]
async fn mms_stays_sent() {
    let (sim, token) = signed_in(quick_with(|b| b.failure_ratio = 1.0)).await;
    let media = ["https://m.example/a.png", "https://m.example/b.png"];
    let response = send_json(
        &sim,
        &token,
        &json!({"To": TO, "From": FROM, "MediaURLs": media}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let sent: Value = response.json().await.expect("json");
    assert_eq!(sent["num_media"], "2");
    assert_eq!(sent["body"], Value::Null);
    assert_eq!(sent["subresource_uris"]["media1"], media[1]);
    let sid = sent["sid"].as_str().expect("sid").to_owned();
    wait_for_status(&sim, &token, &sid, "sent").await;
    // Well past delivered_after: an MMS never becomes delivered nor failed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let value: Value = get(&sim, &token, &sid).await.json().await.expect("json");
    assert_eq!(value["status"], "sent");
    assert_eq!(value["error_code"], Value::Null);
    assert_eq!(sim.state.ledger()[0].media_urls, media);
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_rejects_bad_requests() {
    let (sim, token) = signed_in(quick()).await;
    let eleven: Vec<String> = (0..11).map(|i| format!("https://m.example/{i}")).collect();
    let cases = [
        json!({"To": "12345", "From": FROM, "Body": "Hi"}),
        json!({"To": "+04155550123", "From": FROM, "Body": "Hi"}),
        json!({"To": TO, "From": "ACME", "Body": "Hi"}),
        json!({"From": FROM, "Body": "Hi"}),
        json!({"To": TO, "From": FROM}),
        json!({"To": TO, "From": FROM, "Body": ""}),
        json!({"To": TO, "From": FROM, "MediaUrls": []}),
        json!({"To": TO, "From": FROM, "MediaUrls": eleven}),
        json!({"To": TO, "From": FROM, "MediaUrls": ["a"], "MediaURLs": ["b"]}),
        json!(["not", "an", "object"]),
    ];
    for body in &cases {
        let response = send_json(&sim, &token, body).await;
        assert_eq!(response.status(), 400, "{body}");
        let value: Value = response.json().await.expect("error json");
        assert_eq!(value["error"], "invalid_request", "{body}");
        assert!(value["error_description"].is_string(), "{body}");
    }
    let response = http()
        .post(format!("{}{MESSAGES_PATH}", sim.base_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"To\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    assert!(error_description(response).await.contains("JSON"));
    let response = send_json(
        &sim,
        &token,
        &json!({"To": TO, "From": FROM, "MediaUrls": &eleven[..10]}),
    )
    .await;
    assert_eq!(response.status(), 200, "ten media URLs are allowed");
    assert_eq!(sim.state.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn form_encoded_send_is_accepted() {
    let (sim, token) = signed_in(quick()).await;
    let response = send_form(
        &sim,
        &token,
        "To=%2B14155550123&From=%2B16505550100&Body=Hello+there%21\
         &MediaUrl1=https%3A%2F%2Fm.example%2Fb.png&MediaUrl0=https%3A%2F%2Fm.example%2Fa.png",
    )
    .await;
    assert_eq!(response.status(), 200);
    let sent: Value = response.json().await.expect("json");
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["num_media"], "2");
    assert_eq!(sent["body"], "Hello there!");
    let ledger = sim.state.ledger();
    assert_eq!(ledger[0].to, TO);
    assert_eq!(
        ledger[0].media_urls,
        ["https://m.example/a.png", "https://m.example/b.png"]
    );

    let eleven: String = (0..11)
        .map(|i| format!("&MediaUrl{i}=https%3A%2F%2Fm.example%2F{i}"))
        .collect();
    let response = send_form(
        &sim,
        &token,
        &format!("To=%2B14155550123&From=%2B16505550100{eleven}"),
    )
    .await;
    assert_eq!(response.status(), 400);
    let response = send_form(&sim, &token, "To=%2B14155550123&Body=x").await;
    assert_eq!(response.status(), 400);
    assert_eq!(sim.state.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_401() {
    let (sim, token) = signed_in(quick_with(|b| {
        b.token_lifetime = Duration::from_millis(100)
    }))
    .await;
    let message = sms(&sim, &token).await;
    let sid = message.sid.expect("sid");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = get(&sim, &token, &sid).await;
        if response.status() == 401 {
            assert_eq!(error_description(response).await, "Access token expired");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = send_json(&sim, &token, &hi()).await;
    assert_eq!(response.status(), 401);
    // A fresh token works again.
    let fresh = bearer(&sim).await;
    assert_eq!(get(&sim, &fresh, &sid).await.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_500_is_html_and_not_recorded() {
    let (sim, token) = signed_in(quick_with(|b| b.fault_500 = 1.0)).await;
    for _ in 0..3 {
        let response = send_json(&sim, &token, &hi()).await;
        assert_eq!(response.status(), 500);
        assert!(header(&response, "content-type").is_some_and(|v| v.starts_with("text/html")));
        let text = response.text().await.expect("body");
        assert!(
            text.contains("<title>500 Internal Server Error</title>"),
            "{text}"
        );
    }
    assert!(sim.state.ledger().is_empty());
    let stats = sim.state.stats();
    assert_eq!(stats.send_requests, 3);
    assert_eq!(stats.sends_accepted, 0);
    assert_eq!(stats.faults_injected, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_502_and_503_pages() {
    for (behaviour, title) in [
        (quick_with(|b| b.fault_502 = 1.0), "502 Bad Gateway"),
        (
            quick_with(|b| b.fault_503 = 1.0),
            "503 Service Temporarily Unavailable",
        ),
    ] {
        let (sim, token) = signed_in(behaviour).await;
        let response = send_json(&sim, &token, &hi()).await;
        let text = response.text().await.expect("body");
        assert!(text.contains(&format!("<title>{title}</title>")), "{text}");
        assert!(sim.state.ledger().is_empty());
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn fault_429_carries_retry_after() {
    let (sim, token) = signed_in(Behaviour {
        fault_429: 1.0,
        retry_after: RetryAfter::Seconds(7),
        ..quick()
    })
    .await;
    let response = send_json(&sim, &token, &hi()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), Some("7"));
    assert!(sim.state.ledger().is_empty());
    sim.shutdown().await;

    let (sim, token) = signed_in(Behaviour {
        fault_429: 1.0,
        retry_after: RetryAfter::HttpDate(Duration::from_secs(30)),
        ..quick()
    })
    .await;
    let response = send_json(&sim, &token, &hi()).await;
    let retry_after = header(&response, "retry-after").expect("retry-after");
    let when = httpdate::parse_http_date(retry_after).expect("an HTTP-date");
    assert!(when > std::time::SystemTime::now());
    sim.shutdown().await;

    let (sim, token) = signed_in(Behaviour {
        get_fault_429: 1.0,
        retry_after: RetryAfter::Omitted,
        ..quick()
    })
    .await;
    let message = sms(&sim, &token).await;
    let response = get(&sim, &token, &message.sid.expect("sid")).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_403_is_not_recorded() {
    let (sim, token) = signed_in(quick_with(|b| b.fault_403 = 1.0)).await;
    let response = send_json(&sim, &token, &hi()).await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_description(response).await, "privilege not granted");
    assert!(sim.state.ledger().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_fault_records_but_answers_late() {
    let (sim, token) = signed_in(Behaviour {
        fault_slow: 1.0,
        slow_delay: Duration::from_secs(30),
        ..quick()
    })
    .await;
    let result = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .post(format!("{}{MESSAGES_PATH}", sim.base_url()))
        .bearer_auth(&token)
        .json(&hi())
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    assert_eq!(sim.state.ledger().len(), 1);
    assert_eq!(sim.state.stats().faults_injected, 1);
    // Shutdown must not wait for the 30 s answer.
    let started = Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn get_fault_500_is_html() {
    let (sim, token) = signed_in(quick_with(|b| b.get_fault_500 = 1.0)).await;
    let message = sms(&sim, &token).await;
    let response = get(&sim, &token, &message.sid.expect("sid")).await;
    assert_eq!(response.status(), 500);
    assert!(response.text().await.expect("body").contains("nginx"));
    sim.shutdown().await;
}

#[tokio::test]
async fn not_found_window_then_visible() {
    let (sim, token) = signed_in(Behaviour {
        not_found_for: Duration::from_millis(150),
        sent_after: Duration::from_secs(60),
        delivered_after: Duration::from_secs(60),
        ..quick()
    })
    .await;
    let message = sms(&sim, &token).await;
    let sid = message.sid.expect("sid");
    let response = get(&sim, &token, &sid).await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_description(response).await, "message not visible yet");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = get(&sim, &token, &sid).await;
        if response.status() == 200 {
            let value: Value = response.json().await.expect("json");
            assert_eq!(value["status"], "queued");
            break;
        }
        assert_eq!(response.status(), 404);
        assert!(Instant::now() < deadline, "message never became visible");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.state.ledger().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_sid_is_404() {
    let (sim, token) = signed_in(quick()).await;
    for sid in [
        "5f0c2d9e-8a41-4c3b-9e1f-2b7d6a1c0e93",
        "MM0123456789abcdef0123456789abcdef",
        "%F0%9F%92%A9",
        "%FF",
    ] {
        let response = get(&sim, &token, sid).await;
        assert_eq!(response.status(), 404, "{sid}");
    }
    // A real sid with one digit changed is unknown too.
    let real = sms(&sim, &token).await.sid.expect("sid");
    let first = if real.starts_with('0') { "1" } else { "0" };
    let altered = format!("{first}{}", &real[1..]);
    assert_eq!(get(&sim, &token, &real).await.status(), 200);
    assert_eq!(get(&sim, &token, &altered).await.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn ledger_and_stats_over_http() {
    let (sim, token) = signed_in(quick()).await;
    let first = sms(&sim, &token).await;
    let second = sms(&sim, &token).await;
    let ledger: Vec<LedgerEntry> = http()
        .get(format!("{}{LEDGER_PATH}", sim.base_url()))
        .send()
        .await
        .expect("ledger")
        .json()
        .await
        .expect("ledger json");
    assert_eq!(ledger, sim.state.ledger());
    assert_eq!(ledger.len(), 2);
    assert_eq!(Some(ledger[0].sid.clone()), first.sid);
    assert_eq!(Some(ledger[1].sid.clone()), second.sid);
    assert!(ledger[0].received_at_ms > 1_700_000_000_000);
    let stats: Stats = http()
        .get(format!("{}{STATS_PATH}", sim.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json");
    assert_eq!(stats, sim.state.stats());
    assert_eq!(stats.sends_accepted, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_sends_are_all_recorded_once() {
    let (sim, token) = signed_in(quick()).await;
    let client = http();
    let url = format!("{}{MESSAGES_PATH}", sim.base_url());
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let client = client.clone();
        let url = url.clone();
        let token = token.clone();
        tasks.spawn(async move {
            let mut sids = Vec::new();
            for i in 0..50 {
                let to = format!("+1415555{worker:01}{i:03}");
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"To": to, "From": FROM, "Body": "Hi"}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 200);
                let message: MessageResource = response.json().await.expect("json");
                sids.push(message.sid.expect("sid"));
            }
            sids
        });
    }
    let mut sids = Vec::new();
    while let Some(result) = tasks.join_next().await {
        sids.extend(result.expect("task"));
    }
    let ledger = sim.state.ledger();
    assert_eq!(ledger.len(), 400);
    let mut unique: Vec<&String> = ledger.iter().map(|entry| &entry.sid).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 400);
    sids.sort();
    let mut ledger_sids: Vec<String> = ledger.into_iter().map(|entry| entry.sid).collect();
    ledger_sids.sort();
    assert_eq!(sids, ledger_sids);
    sim.shutdown().await;
}

#[tokio::test]
async fn run_stops_on_shutdown_signal() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, quick(), async {
        let _ = stopped.await;
    }));
    let response = http()
        .get(format!("http://{addr}{STATS_PATH}"))
        .send()
        .await
        .expect("stats");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "server"), Some("nginx/1.14.0"));
    stop.send(()).expect("server still running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops in time")
        .expect("task")
        .expect("serve ok");
}

#[derive(Debug, clap::Parser)]
struct TestCli {
    #[command(flatten)]
    mock: MockArgs,
}

#[test]
fn flag_defaults_match_behaviour_default() {
    let cli = TestCli::try_parse_from(["mock"]).expect("defaults parse");
    let from_flags = cli.mock.behaviour().expect("defaults are valid");
    let default = Behaviour::default();
    assert_eq!(format!("{from_flags:?}"), format!("{default:?}"));
    assert_eq!(from_flags.client_secret, default.client_secret);
    assert_eq!(cli.mock.listen.to_string(), "127.0.0.1:8080");
    assert!(!format!("{:?}", cli.mock).contains("demo-secret"));
    assert!(Behaviour::fast().validate().is_ok());
}

#[test]
fn flags_parse_and_validate() {
    let cli = TestCli::try_parse_from([
        "mock",
        "--sent-after",
        "150ms",
        "--delivered-after",
        "1s",
        "--fault-500",
        "0.25",
        "--fault-429",
        "0.5",
        "--retry-after",
        "3",
        "--retry-after-date",
        "--quirk-null-sid",
        "--expires-in-number",
    ])
    .expect("parses");
    let behaviour = cli.mock.behaviour().expect("valid");
    assert_eq!(behaviour.sent_after, Duration::from_millis(150));
    assert_eq!(behaviour.fault_500, 0.25);
    assert_eq!(
        behaviour.retry_after,
        RetryAfter::HttpDate(Duration::from_secs(3))
    );
    assert!(behaviour.quirk_null_sid && behaviour.expires_in_number);

    assert!(TestCli::try_parse_from(["mock", "--fault-500", "1.5"]).is_err());
    assert!(TestCli::try_parse_from(["mock", "--failure-ratio", "-0.1"]).is_err());
    assert!(TestCli::try_parse_from(["mock", "--sent-after", "2"]).is_err());
    assert!(TestCli::try_parse_from(["mock", "--retry-after-date", "--no-retry-after"]).is_err());
    let too_many = TestCli::try_parse_from(["mock", "--fault-500", "0.6", "--fault-502", "0.6"])
        .expect("each ratio is fine");
    assert!(too_many.mock.behaviour().is_err());
    let backwards =
        TestCli::try_parse_from(["mock", "--sent-after", "5s", "--delivered-after", "1s"])
            .expect("parses");
    assert!(backwards.mock.behaviour().is_err());
    let omitted = TestCli::try_parse_from(["mock", "--no-retry-after"]).expect("parses");
    assert_eq!(
        omitted.mock.behaviour().expect("valid").retry_after,
        RetryAfter::Omitted
    );
}
