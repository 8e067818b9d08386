//! What one client can make the webhook hold, over real sockets: a body that never finishes is cut off at the
//! deadline, large bodies beyond the budget are refused at once while a small review is still answered, and a
//! body announced over the size limit is refused before it is read.

mod support;

use std::time::Duration;

use serde_json::json;
use support::net::{CertDir, Http, https, tls_connect};
use support::{body, create};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use website_webhook::server::Application;
use website_webhook::settings::Settings;

/// Longest the test waits for the webhook to act; the deadlines under test are far shorter.
const PATIENCE: Duration = Duration::from_secs(20);

struct Running {
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl Running {
    fn start(settings: Settings) -> Self {
        let app = Application::build(&settings).expect("the webhook starts");
        let running = Self { port: app.port(), handle: app.handle() };
        actix_web::rt::spawn(app.run_until_stopped());
        running
    }
}

fn settings(certs: &CertDir) -> Settings {
    Settings {
        health_addr: None,
        body_timeout_seconds: 1,
        max_inflight_bytes: 100_000,
        ..Settings::for_tests(&certs.files)
    }
}

/// Sends a request's headers announcing `length` bytes of body, and the first `sent` bytes of it.
async fn start_request<S: tokio::io::AsyncWrite + Unpin>(stream: &mut S, length: usize, sent: usize) {
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("headers sent");
    stream.write_all(&vec![b' '; sent]).await.expect("part of the body sent");
    stream.flush().await.expect("flushed");
}

/// Everything the webhook writes until it closes the connection.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the webhook closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_web::test]
async fn a_body_that_never_finishes_gets_408_and_the_connection_closed() {
    let certs = CertDir::new();
    let server = Running::start(settings(&certs));
    let mut stream =
        tls_connect(server.port, certs.pki.client(&[&rustls::version::TLS13]), "localhost").await.expect("connected");
    start_request(&mut stream, 2000, 10).await;
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body not received within 1s"), "{answer}");
    server.handle.stop(false).await;
}

#[actix_web::test]
async fn headers_that_never_finish_get_the_connection_closed() {
    let certs = CertDir::new();
    let server = Running::start(settings(&certs));
    let mut stream =
        tls_connect(server.port, certs.pki.client(&[&rustls::version::TLS13]), "localhost").await.expect("connected");
    stream.write_all(b"POST /validate HTTP/1.1\r\nHost: local").await.expect("part of the headers sent");
    stream.flush().await.expect("flushed");
    let answer = until_closed(&mut stream).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    server.handle.stop(false).await;
}

#[actix_web::test]
async fn large_bodies_beyond_the_budget_get_429_at_once_and_a_small_review_is_still_answered() {
    let certs = CertDir::new();
    let server = Running::start(settings(&certs));
    let client = certs.pki.client(&[&rustls::version::TLS13]);
    // A slow client holds 90 000 of the 100 000 bytes.
    let mut holder = tls_connect(server.port, client.clone(), "localhost").await.expect("connected");
    start_request(&mut holder, 90_000, 1_000).await;
    // Give the webhook time to take the first request's reservation.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another large body does not fit: refused before any of it is sent.
    let mut large = tls_connect(server.port, client.clone(), "localhost").await.expect("connected");
    start_request(&mut large, 70_000, 0).await;
    let answer = until_closed(&mut large).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");

    // A review the size the API server sends uses the reserve.
    let mut api_server = https(server.port, client).await.expect("connected");
    let review = body(&create(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"})));
    let response = api_server.post("/validate", &review).await.expect("answered");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["response"]["allowed"], true);
    drop(holder);
    server.handle.stop(false).await;
}

#[actix_web::test]
async fn a_body_announced_over_the_limit_gets_413_before_it_is_sent() {
    let certs = CertDir::new();
    let server = Running::start(Settings { max_body_bytes: 10_000, ..settings(&certs) });
    let mut stream =
        tls_connect(server.port, certs.pki.client(&[&rustls::version::TLS13]), "localhost").await.expect("connected");
    start_request(&mut stream, 50_000, 0).await;
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request body of 50000 bytes is over the limit of 10000 bytes"), "{answer}");
    // The webhook still answers on a new connection.
    let mut next = Http::new(
        tls_connect(server.port, certs.pki.client(&[&rustls::version::TLS13]), "localhost").await.expect("connected"),
    );
    let review = body(&create(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"})));
    assert_eq!(next.post("/validate", &review).await.expect("answered").status, 200);
    server.handle.stop(false).await;
}
