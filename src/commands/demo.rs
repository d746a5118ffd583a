//! `bpsms demo`: the whole pipeline on an embedded default. Starts the
//! simulator on a loopback port, imports the bundled sample CSV as a
//! campaign, sends and tracks it, prints the summary and writes a report.

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio_util::sync::CancellationToken;

use super::exit::{Failure, Outcome};
use super::export::write_export;
use crate::api::{ApiClient, ApiConfig};
use crate::campaign::{self, RunEnd};
use crate::cli::{DemoArgs, ExportFormat};
use crate::clock::now_ms;
use crate::config::RunSettings;
use crate::domain::ids::CampaignName;
use crate::domain::phone::{Region, E164};
use crate::domain::state::AmbiguousPolicy;
use crate::import::{self, ImportSpec};
use crate::mock::{Behaviour, RunningSimulator};
use crate::report::Summary;
use crate::store::{CampaignSettings, SendRules, Store};

/// The bundled recipients, so the demo runs from any directory.
const SAMPLE_CSV: &str = include_str!("../../samples/recipients.csv");
const SAMPLE_BODY: &str =
    "Hi {{first_name}}, your appointment on {{appointment}} is confirmed. Reply STOP to opt out.";
const SAMPLE_FROM: &str = "+16505550100";

pub(super) async fn run(args: DemoArgs) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let behaviour = Behaviour {
        sent_after: Duration::from_millis(500),
        delivered_after: Duration::from_millis(1500),
        ..Behaviour::default()
    };
    let simulator = RunningSimulator::start(behaviour.clone())
        .await
        .context("failed to start the simulator")?;
    crate::errln!("Simulator listening on {}", simulator.base_url());

    let workdir = std::env::temp_dir().join(format!("bpsms-demo-{}", std::process::id()));
    std::fs::create_dir_all(&workdir)
        .with_context(|| format!("failed to create {}", workdir.display()))?;
    let csv_path = workdir.join("recipients.csv");
    std::fs::write(&csv_path, SAMPLE_CSV)
        .with_context(|| format!("failed to write {}", csv_path.display()))?;
    let store = Store::open(&workdir.join("demo.db")).await?;

    let settings = RunSettings {
        rules: SendRules {
            senders: vec![E164::parse_sender(SAMPLE_FROM).map_err(|e| anyhow!("{e}"))?],
            // The demo sends now, wherever the machine is.
            timezone: "UTC".into(),
            ..SendRules::default()
        },
        campaign: CampaignSettings {
            rate: args.rate,
            concurrency: 8,
            poll_delay: Duration::from_millis(1500),
            track_for: Duration::from_secs(120),
            on_ambiguous: AmbiguousPolicy::Hold,
        },
        poll_rate: args.rate.max(50.0),
        max_attempts: crate::config::DEFAULT_MAX_ATTEMPTS,
        breaker_window: crate::config::DEFAULT_BREAKER_WINDOW,
        breaker_threshold: crate::config::DEFAULT_BREAKER_THRESHOLD,
    };
    let spec = ImportSpec {
        campaign: CampaignName::parse("demo")?,
        csv_path: csv_path.clone(),
        needs_sender: true,
        body_template: Some(SAMPLE_BODY.into()),
        phone_column: None,
        region: Region::default(),
        source: Default::default(),
        suppression: Default::default(),
        reject_over_length: false,
        requirements: Vec::new(),
        timezone_column: None,
        settings: settings.campaign.clone(),
        rules: settings.rules.clone(),
    };
    let report = import::import(&store, &spec, now_ms()).await?;
    crate::errln!(
        "Imported {} rows: {} to send, {} invalid, {} duplicate",
        report.n_rows,
        report.n_pending,
        report.n_invalid,
        report.n_duplicate
    );
    let campaign = store
        .find_campaign(&spec.campaign)
        .await?
        .ok_or_else(|| anyhow!("the demo campaign was not stored"))?;
    let api = ApiClient::new(ApiConfig {
        base_url: simulator.base_url(),
        client_id: behaviour.client_id.clone(),
        client_secret: behaviour.client_secret.clone(),
        scope: "127.0.0.1".into(),
        send_tenant_field: false,
        media_key: Default::default(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
    })?;
    let end = campaign::run(
        &store,
        Arc::new(api),
        &campaign,
        &settings,
        CancellationToken::new(),
        CancellationToken::new(),
    )
    .await
    .map_err(Failure::runtime)?;
    let summary = Summary::load(&store, &campaign).await?;
    crate::out!("{}", summary.render());
    let file = File::create(&args.out)
        .with_context(|| format!("failed to create {}", args.out.display()))?;
    write_export(&store, &campaign, ExportFormat::Csv, BufWriter::new(file)).await?;
    store.close().await;
    simulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&workdir);
    crate::outln!(
        "Report written to {} ({} rows) in {:.1}s",
        args.out.display(),
        summary.n_rows,
        started.elapsed().as_secs_f64()
    );
    match end {
        RunEnd::Finished if summary.all_final() => Ok(Outcome::Done),
        _ => Err(Failure::runtime(anyhow!(
            "the demo ended before every message was final"
        ))),
    }
}
