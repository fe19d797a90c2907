//! The dashboards and alerts in `deploy/` name only metrics the binaries export: the real bot
//! and worker binaries run an order against the fakes, and every metric named in
//! `deploy/prometheus/alerts.yml` and `deploy/grafana/neurocards.json` must appear on their
//! `/metrics`.

use neurocards_testkit::binaries::service_command;
use neurocards_testkit::bot_harness::bot_binary;
use neurocards_testkit::stores::pg_database;
use neurocards_testkit::system::TestSystem;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The metric names (`neurocards_…`) a deploy file mentions.
fn names_in(file: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("neurocards_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric names a `/metrics` body declares (`# TYPE` lines), histograms with their
/// `_bucket`, `_sum` and `_count` series.
fn exported(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn scrape(http: &reqwest::Client, url: &str, until: &str) -> String {
    let mut body = String::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(url).send().await {
            body = r.text().await.unwrap_or_default();
            if body.contains(until) {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never showed {until}: {body}")
}

#[tokio::test]
async fn dashboards_and_alerts_name_only_exported_metrics() {
    let used: BTreeSet<String> = names_in("deploy/prometheus/alerts.yml")
        .into_iter()
        .chain(names_in("deploy/grafana/neurocards.json"))
        .collect();
    assert!(used.len() > 15, "the files name the metrics they chart: {used:?}");

    let Some(db) = pg_database().await else { return };
    let bot_bin = bot_binary();
    let system = TestSystem::start(db.pool.clone()).await;
    let worker_addr = format!("127.0.0.1:{}", free_port());
    let mut worker = system.spawn_worker_binary_with(&[("WORKER_HTTP_ADDR", &worker_addr)]);
    let bot_port = free_port();
    let mut env = system.env();
    env.insert("HTTP_ADDR".into(), format!("127.0.0.1:{bot_port}"));
    env.remove("METRICS_TOKEN");
    let mut bot = service_command(&bot_bin, env).spawn().expect("start neurocards-bot");

    let (_user, order) = system.user_with_order(3, 1).await;
    system.wait_order(&order, Duration::from_secs(90)).await;
    let http = reqwest::Client::new();
    let worker_body = scrape(
        &http,
        &format!("http://{worker_addr}/metrics"),
        "neurocards_jobs_total{outcome=\"succeeded\"",
    )
    .await;
    // The key gauges come from the fleet-wide key state, with a balance once the worker has
    // read one: the bot publishes them every 15 s.
    let bot_body =
        scrape(&http, &format!("http://127.0.0.1:{bot_port}/metrics"), "neurocards_kie_credits{")
            .await;
    assert!(bot_body.contains("neurocards_kie_credits{key=\"key-"), "{bot_body}");
    assert!(!bot_body.contains("kie-test-key-1"), "no key in metrics");
    let _ = bot.start_kill();
    let _ = worker.start_kill();
    let _ = bot.wait().await;
    let _ = worker.wait().await;

    let exported: BTreeSet<String> =
        exported(&worker_body).into_iter().chain(exported(&bot_body)).collect();
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "named in deploy/ but not exported: {missing:?}\nexported: {exported:?}"
    );
    system.assert_invariants().await;
}
