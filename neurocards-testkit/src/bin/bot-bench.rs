//! Bot benchmark: M synthetic users go from `/start` to a placed order through the real
//! webhook route (HTTP, secret checked, handler tree, PostgreSQL dialogue state and queue)
//! against FakeTelegram. Prints one JSON line: updates per second and p50/p99 of the time from
//! posting an update to the webhook answering — the bot answers only after its reply was sent.
//!
//! ```text
//! DATABASE_URL='postgres://postgres@localhost/postgres?host=/var/run/postgresql' \
//!   cargo run --release -p neurocards-testkit --bin bot-bench -- --users 2000 --concurrency 8
//! ```
//!
//! Options: `--users M` (2000), `--concurrency C` (8 users in flight; each sends its next
//! update as soon as the previous one was answered). The benchmark creates its own database on
//! DATABASE_URL's server and drops it at the end. Everything runs on one machine: the client,
//! the bot, FakeTelegram and PostgreSQL share its cores.

use anyhow::{bail, Context};
use neurocards_core::domain::Credits;
use neurocards_testkit::bot_harness::{test_settings, BotHarness, JPEG};
use neurocards_testkit::fake_telegram::TgUser;
use neurocards_testkit::scratch_db::with_scratch_database;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";

struct Args {
    users: u32,
    concurrency: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { users: 2000, concurrency: 8 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number =
            || value.parse::<u32>().with_context(|| format!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--users" => args.users = number()?,
            "--concurrency" => args.concurrency = number()?,
            other => bail!("unknown option {other}"),
        }
    }
    if args.users == 0 || args.concurrency == 0 {
        bail!("--users and --concurrency must be positive");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let result = with_scratch_database("bot_bench", |db| run(&args, db)).await;
    println!("{}", result?);
    Ok(())
}

/// One user's path: each step is an update built from what the bot last sent.
async fn user_story(
    h: &BotHarness,
    client: &reqwest::Client,
    url: &str,
    user: &TgUser,
    samples: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let post = |update: Value| async move {
        let started = Instant::now();
        let response = client
            .post(url)
            .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
            .json(&update)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("webhook answered {}", response.status());
        }
        Ok::<Duration, anyhow::Error>(started.elapsed())
    };
    let press = |data: &str| -> anyhow::Result<Value> {
        h.telegram
            .press_update(user, data)
            .with_context(|| format!("user {} was not offered {data}", user.id))
    };
    samples.push(post(h.telegram.command_update(user, "/start")).await?);
    samples.push(post(press("terms")?).await?);
    samples.push(post(press("create")?).await?);
    samples.push(post(h.telegram.photo_update(user, JPEG.to_vec(), None).0).await?);
    samples.push(post(h.telegram.text_update(user, "A ceramic mug, 350 ml")).await?);
    samples.push(post(press("tpl:ugc")?).await?);
    samples.push(post(press("skip")?).await?);
    samples.push(post(press("cnt:1")?).await?);
    samples.push(post(press("go:")?).await?);
    Ok(())
}

async fn run(args: &Args, db: PgConnectOptions) -> anyhow::Result<String> {
    let pool = neurocards_core::postgres::pool_options(args.concurrency.clamp(8, 90))
        .connect_with(db)
        .await
        .context("connect to the bench database")?;
    neurocards_core::postgres::migrate(&pool).await?;
    let settings = neurocards_core::conversation::ConversationSettings {
        start_credits: Credits::new(1).unwrap_or_default(),
        ..test_settings()
    };
    let h = Arc::new(BotHarness::start(pool.clone(), settings).await);
    let url = format!("{}{}", h.serve_http(SECRET).await, neurocards_core::web::WEBHOOK_PATH);
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;

    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.min(args.users) {
        let (h, client, url, next) = (h.clone(), client.clone(), url.clone(), next.clone());
        let users = args.users;
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= users {
                    break;
                }
                let user = TgUser::new(1_000_000 + i64::from(n));
                user_story(&h, &client, &url, &user, &mut samples).await?;
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let elapsed = started.elapsed();
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
        samples.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default()
    };
    let (orders,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&pool).await?;
    if orders != i64::from(args.users) {
        bail!("expected {} orders, found {orders}", args.users);
    }
    let telegram_calls = h.telegram.all_calls().len();
    Ok(serde_json::json!({
        "bench": "bot",
        "users": args.users,
        "concurrency": args.concurrency,
        "updates": samples.len(),
        "orders": orders,
        "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "telegram_calls_per_update":
            ((telegram_calls as f64 / samples.len().max(1) as f64) * 100.0).round() / 100.0,
        "updates_per_sec": (samples.len() as f64 / elapsed.as_secs_f64()).round(),
        "p50_ms": (pct(0.50) * 100.0).round() / 100.0,
        "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
        "max_ms": (pct(1.0) * 100.0).round() / 100.0,
    })
    .to_string())
}
