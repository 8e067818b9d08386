//! The hostile clients of `webhook-stress`, shared with the end-to-end flood test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Endpoint;

/// What the large senders got.
#[derive(Debug, Default)]
pub struct Counts {
    /// Answered 200.
    pub ok: AtomicU64,
    /// Refused for capacity (429 or 503).
    pub refused: AtomicU64,
    /// Refused as too large (413).
    pub too_large: AtomicU64,
    /// Any other status.
    pub other_status: AtomicU64,
    /// Connections that failed or were closed.
    pub io_errors: AtomicU64,
}

/// Sends one request and reads the status line and the whole response; returns the status code.
///
/// # Errors
/// When the connection fails or closes.
pub async fn exchange<S>(stream: &mut S, body: &[u8]) -> std::io::Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    read_response(stream).await
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns its status code.
///
/// # Errors
/// When the connection fails or closes.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<u16> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut have = buf.len() - end - 4;
            while have < length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                have += n;
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `body` as reviews over one connection after another, back to back, until `stop`.
pub async fn large_sender(webhook: Arc<Endpoint>, body: Arc<Vec<u8>>, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = webhook.connect().await else {
            counts.io_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            match exchange(&mut stream, &body).await {
                Ok(200) => counts.ok.fetch_add(1, Ordering::Relaxed),
                Ok(429 | 503) => counts.refused.fetch_add(1, Ordering::Relaxed),
                Ok(413) => counts.too_large.fetch_add(1, Ordering::Relaxed),
                Ok(_) => counts.other_status.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    counts.io_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
        }
    }
}

/// Drips a body until the webhook answers or closes; returns how long it kept the connection after the headers, or
/// `None` when it was still open at `stop`.
pub async fn drip(webhook: Arc<Endpoint>, interval: Duration, stop: Arc<AtomicBool>) -> Option<Duration> {
    let stream = webhook.connect().await.ok()?;
    let (mut read, mut write) = tokio::io::split(stream);
    let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n";
    write.write_all(head.as_bytes()).await.ok()?;
    write.flush().await.ok()?;
    let started = Instant::now();
    let closed = async {
        let mut buf = [0u8; 1024];
        // An answer (e.g. 408) or the end of the stream both mean the webhook gave up on the body.
        let _ = read.read(&mut buf).await;
    };
    let dripping = async {
        loop {
            tokio::time::sleep(interval).await;
            if stop.load(Ordering::Relaxed) || write.write_all(b" ").await.is_err() || write.flush().await.is_err() {
                break;
            }
        }
        // Keep the connection open, without sending, until the webhook closes it or the run ends.
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = closed => Some(started.elapsed()),
        () = dripping => None,
    }
}
