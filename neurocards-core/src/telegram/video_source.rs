//! Fetching a finished video from the provider's URL so it can be uploaded to Telegram when
//! Telegram cannot fetch it itself. The download is streamed and stops at the upload limit, so a
//! huge file never sits in memory.

use crate::ports::NotifyError;
use bytes::{Bytes, BytesMut};
use reqwest::header::CONTENT_LENGTH;

/// The result of downloading with a size cap.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// The whole file, within the cap.
    Complete(Bytes),
    /// The file is larger than the cap (the size when the server said it).
    TooLarge { size: Option<u64> },
}

/// The size the server declares for `url` (a `HEAD` request), if it answers with one.
/// Failures are not errors here: the caller then simply tries sending by URL.
pub(crate) async fn declared_size(client: &reqwest::Client, url: &str) -> Option<u64> {
    let response = client.head(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Downloads `url`, giving up as soon as more than `max_bytes` arrived.
pub(crate) async fn fetch_capped(
    client: &reqwest::Client,
    url: &str,
    max_bytes: u64,
) -> Result<Fetched, NotifyError> {
    let mut response = client.get(url).send().await.map_err(|e| network(&e))?;
    let status = response.status();
    if !status.is_success() {
        let text = format!("downloading the video answered HTTP {status}");
        // An expired or missing result (4xx) will not come back; a 5xx may.
        return Err(if status.is_client_error() {
            NotifyError::Permanent(text)
        } else {
            NotifyError::Temporary(text)
        });
    }
    if let Some(size) = response.content_length().filter(|s| *s > max_bytes) {
        return Ok(Fetched::TooLarge { size: Some(size) });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(&e))? {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Ok(Fetched::TooLarge { size: None });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched::Complete(body.freeze()))
}

fn network(error: &reqwest::Error) -> NotifyError {
    NotifyError::Temporary(format!("downloading the video failed: {error}"))
}
