//! The safe-fetch client against a real local HTTP server: private addresses and redirects to
//! them are refused, oversize bodies are refused, and concurrent downloads stay within the cap.
//! The notifier uses it for the result video, so a refused URL fails delivery technically.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use neurocards_core::domain::{JobId, Language, OrderId, ProductId, UserId};
use neurocards_core::ports::{Notifier, NotifyError, Recipient, VideoMessage};
use neurocards_core::safe_fetch::{FetchError, FetchPolicy, SafeFetch};
use neurocards_core::telegram::{build_bot, BotOptions, TelegramNotifier};
use neurocards_testkit::fake_telegram::FakeTelegram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts requests in flight and remembers the most at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    served: AtomicUsize,
}

/// Decrements the in-flight count when the response body is done (or dropped).
struct Leaving(Arc<InFlight>);

impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

const CHUNK: usize = 64 * 1024;
const BIG_CHUNKS: usize = 16; // 1 MiB, sent in 16 slow chunks

async fn big(State(counter): State<Arc<InFlight>>) -> Response {
    let now = counter.now.fetch_add(1, Ordering::SeqCst) + 1;
    counter.max.fetch_max(now, Ordering::SeqCst);
    counter.served.fetch_add(1, Ordering::SeqCst);
    let guard = Leaving(counter);
    let stream = futures::stream::unfold((0usize, guard), |(i, guard)| async move {
        if i == BIG_CHUNKS {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(vec![7u8; CHUNK])), (i + 1, guard)))
    });
    Response::builder()
        .header(header::CONTENT_LENGTH, CHUNK * BIG_CHUNKS)
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn redirect(to: &'static str) -> impl Fn() -> std::future::Ready<Response> + Clone {
    move || std::future::ready((StatusCode::FOUND, [(header::LOCATION, to)]).into_response())
}

/// Serves the test routes on 127.0.0.1; returns the base URL and the counter.
async fn server() -> (String, Arc<InFlight>) {
    let counter = Arc::new(InFlight::default());
    let app = Router::new()
        .route("/big", get(big))
        .route("/small", get(|| async { "small body" }))
        .route(
            "/chunked",
            get(|| async {
                let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1024])));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route("/to-metadata", get(redirect("http://169.254.169.254/latest/meta-data/")))
        .route("/to-private", get(redirect("https://10.0.0.1/video.mp4")))
        .route("/to-mapped", get(redirect("http://[::ffff:192.168.1.1]/video.mp4")))
        .route("/to-small", get(redirect("/small")))
        .route("/loop", get(redirect("/loop")))
        .with_state(counter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), counter)
}

fn fetcher(allow_local: bool, concurrency: usize) -> SafeFetch {
    SafeFetch::new(FetchPolicy { allow_local, concurrency, ..FetchPolicy::default() })
        .expect("client")
}

fn refused<T: std::fmt::Debug>(r: Result<T, FetchError>) -> String {
    match r {
        Err(FetchError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn private_and_loopback_addresses_are_refused_outside_test_mode() {
    let (base, counter) = server().await;
    let port = base.rsplit(':').next().expect("port");
    let strict = fetcher(false, 4);
    for url in [
        format!("https://127.0.0.1:{port}/small"),
        format!("https://localhost:{port}/small"),
        format!("https://[::1]:{port}/small"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://10.1.2.3/video.mp4".to_owned(),
        "https://[fd00:ec2::254]/".to_owned(),
        format!("{base}/small"),
    ] {
        let why = refused(strict.get_capped(&url, 1024).await);
        assert!(!why.is_empty(), "{url}");
    }
    assert_eq!(counter.served.load(Ordering::SeqCst), 0, "nothing reached the server");

    // Test mode reaches loopback, and only loopback.
    let local = fetcher(true, 4);
    assert_eq!(
        local.get_capped(&format!("{base}/small"), 1024).await.expect("small"),
        "small body"
    );
    refused(local.get_capped("http://169.254.169.254/latest/meta-data/", 1024).await);
    refused(local.get_capped("http://192.168.0.10/", 1024).await);
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    let (base, _) = server().await;
    let local = fetcher(true, 4);
    for path in ["/to-metadata", "/to-private", "/to-mapped"] {
        let why = refused(local.get_capped(&format!("{base}{path}"), 1024).await);
        assert!(why.contains("not a public address"), "{path}: {why}");
    }
    let why = refused(local.get_capped(&format!("{base}/loop"), 1024).await);
    assert!(why.contains("redirects"), "{why}");
    let followed = local.get_capped(&format!("{base}/to-small"), 1024).await.expect("followed");
    assert_eq!(followed, "small body", "an allowed redirect is followed");
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let (base, counter) = server().await;
    let local = fetcher(true, 4);
    // Declared too large: refused from the header, before the body is read.
    let err = local.get_capped(&format!("{base}/big"), 1000).await.expect_err("too large");
    assert_eq!(err, FetchError::TooLarge { size: Some((CHUNK * BIG_CHUNKS) as u64), limit: 1000 });
    // Not declared: refused while streaming.
    let err = local.get_capped(&format!("{base}/chunked"), 4000).await.expect_err("too large");
    assert_eq!(err, FetchError::TooLarge { size: None, limit: 4000 });
    assert_eq!(local.get_capped(&format!("{base}/chunked"), 8192).await.expect("fits").len(), 8192);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(counter.now.load(Ordering::SeqCst), 0, "the refused download was abandoned");
}

#[tokio::test]
async fn fifty_concurrent_large_downloads_never_exceed_the_cap() {
    let (base, counter) = server().await;
    let local = fetcher(true, 4);
    let url = format!("{base}/big");
    let downloads = (0..50).map(|_| {
        let local = local.clone();
        let url = url.clone();
        async move { local.get_capped(&url, 2 * 1024 * 1024).await.map(|b| b.len()) }
    });
    let results = futures::future::join_all(downloads).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|n| *n == CHUNK * BIG_CHUNKS)));
    assert_eq!(counter.served.load(Ordering::SeqCst), 50);
    let max = counter.max.load(Ordering::SeqCst);
    assert!(max <= 4, "at most 4 downloads at once, saw {max}");
    assert!(max >= 2, "downloads do run in parallel, saw {max}");
}

#[tokio::test]
async fn a_result_video_at_a_private_address_fails_delivery_as_a_technical_error() {
    let fake = FakeTelegram::start().await;
    // Telegram cannot fetch it either, so the notifier would download it itself.
    fake.refuse_media_urls(true);
    let bot = build_bot(&fake.token(), &fake.api_url(), &BotOptions::default()).expect("bot");
    let notifier = TelegramNotifier::new(bot, fetcher(true, 4));
    let video = VideoMessage {
        video_url: "http://169.254.169.254/latest/meta-data/video.mp4".into(),
        order_id: OrderId(1),
        job_id: JobId(2),
        product_id: Some(ProductId(3)),
        index: 1,
        total: 1,
    };
    let to = Recipient { user_id: UserId(77), language: Language::En };
    let err = notifier.send_video(to, &video).await.expect_err("refused");
    match &err {
        NotifyError::Permanent(text) => assert!(text.contains("refused"), "{text}"),
        other => panic!("expected a permanent technical failure, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(fake.videos_to(77).is_empty());
}
