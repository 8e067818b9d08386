//! What the webhook holds at once: request bodies are read once, into a buffer of their announced size, within a
//! deadline, and only while a shared budget of bytes in flight allows.
//!
//! A request over the budget is refused at once with 429 rather than queued: the API server's call would time out
//! anyway, and queued bodies are memory. Small requests (at most [`SMALL_BODY_BYTES`], which is what the API
//! server sends for any ordinary Website) may also use a reserve on top of the budget, so that a flood of large
//! bodies cannot starve them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::Payload;
use actix_web::{HttpResponse, ResponseError};
use futures::{FutureExt as _, StreamExt as _};

/// Bodies up to this size may use the reserve.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// How much of the budget comes on top of it for small bodies: an eighth.
const RESERVE_DIVISOR: usize = 8;

/// The limits of one webhook process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body of one request.
    pub max_body_bytes: usize,
    /// Bodies held at once by all requests together (small ones may use a reserve of an eighth more).
    pub max_inflight_bytes: usize,
    /// Time from the request's headers to the end of its body.
    pub body_timeout: Duration,
}

/// The shared budget of bytes in flight.
#[derive(Debug)]
pub struct Capacity {
    limits: Limits,
    in_flight: AtomicUsize,
    refused: AtomicU64,
    /// Seconds since `started` of the last logged refusal.
    last_logged: AtomicU64,
    started: std::time::Instant,
}

impl Capacity {
    /// A budget for `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            in_flight: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_logged: AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes reserved by requests now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests refused for capacity so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether a refused request should be logged: the first in each second, so that a flood does not become a
    /// flood of log lines.
    pub fn should_log_refusal(&self) -> bool {
        let now = self.started.elapsed().as_secs();
        let last = self.last_logged.load(Ordering::Relaxed);
        (last == u64::MAX || now > last)
            && self.last_logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    fn ceiling(&self, total_request_bytes: usize) -> usize {
        let budget = self.limits.max_inflight_bytes;
        if total_request_bytes <= SMALL_BODY_BYTES { budget + budget / RESERVE_DIVISOR } else { budget }
    }

    /// Takes `bytes` more for a request that will then hold `total` bytes, if the budget allows.
    fn take(&self, bytes: usize, total: usize) -> bool {
        let ceiling = self.ceiling(total);
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(bytes).filter(|after| *after <= ceiling)
            })
            .is_ok();
        if !taken {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}

/// Bytes a request holds from the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    capacity: Arc<Capacity>,
    bytes: usize,
}

impl Reservation {
    /// Reserves `bytes` for a new request.
    fn new(capacity: &Arc<Capacity>, bytes: usize) -> Result<Self, BodyError> {
        if capacity.take(bytes, bytes) {
            Ok(Self { capacity: capacity.clone(), bytes })
        } else {
            Err(BodyError::OverCapacity)
        }
    }

    /// Reserves `more` bytes, for a body of unannounced length that keeps coming.
    fn grow(&mut self, more: usize) -> Result<(), BodyError> {
        if self.capacity.take(more, self.bytes + more) {
            self.bytes += more;
            Ok(())
        } else {
            Err(BodyError::OverCapacity)
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.capacity.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a request's body was not read. Each answer closes the connection: its body was not read to the end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit.
    #[error("request body of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Its size, as announced or as read so far.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The webhook holds as many bytes as it may.
    #[error("the webhook is at capacity; retry shortly")]
    OverCapacity,
    /// The body did not arrive within the deadline.
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
    /// The `Content-Length` header is not a number.
    #[error("invalid Content-Length header")]
    InvalidLength,
    /// The connection failed while the body was read.
    #[error("failed to read the request body: {0}")]
    Read(String),
}

impl ResponseError for BodyError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::OverCapacity => StatusCode::TOO_MANY_REQUESTS,
            Self::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            Self::InvalidLength | Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.force_close().content_type("text/plain; charset=utf-8");
        if matches!(self, Self::OverCapacity) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        response.body(self.to_string())
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<usize>, BodyError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else { return Ok(None) };
    let text = value.to_str().map_err(|_| BodyError::InvalidLength)?;
    text.trim().parse().map(Some).map_err(|_| BodyError::InvalidLength)
}

/// Reads a request's whole body into one buffer of its announced size, within the deadline and the budget.
/// The returned reservation must live as long as the body (and what is decoded from it) does.
///
/// # Errors
/// See [`BodyError`]: a body over the size limit (announced or not), no room in the budget, a deadline missed.
pub async fn read_body(
    capacity: &Arc<Capacity>,
    headers: &HeaderMap,
    mut payload: Payload,
) -> Result<(Vec<u8>, Reservation), BodyError> {
    let limits = *capacity.limits();
    let max = limits.max_body_bytes;
    let announced = content_length(headers)?;
    if let Some(size) = announced.filter(|size| *size > max) {
        return Err(BodyError::TooLarge { size, max });
    }
    let mut reservation = Reservation::new(capacity, announced.unwrap_or(0))?;
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    // A small body has usually arrived with its headers, and the connection hands it over once the handler has
    // started: let it, and take what is there without arming the deadline's timer.
    tokio::task::yield_now().await;
    loop {
        match payload.next().now_or_never() {
            Some(Some(chunk)) => append(&mut body, &mut reservation, chunk, max)?,
            Some(None) => return Ok((body, reservation)),
            None => break,
        }
    }
    let reading = async {
        while let Some(chunk) = payload.next().await {
            append(&mut body, &mut reservation, chunk, max)?;
        }
        Ok(())
    };
    tokio::time::timeout(limits.body_timeout, reading)
        .await
        .map_err(|_| BodyError::TimedOut(limits.body_timeout))??;
    Ok((body, reservation))
}

/// Adds a chunk to the body, within the size limit and growing the reservation as needed.
fn append(
    body: &mut Vec<u8>,
    reservation: &mut Reservation,
    chunk: Result<actix_web::web::Bytes, actix_web::error::PayloadError>,
    max: usize,
) -> Result<(), BodyError> {
    let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
    let size = body.len() + chunk.len();
    if size > max {
        return Err(BodyError::TooLarge { size, max });
    }
    if size > reservation.bytes {
        reservation.grow(size - reservation.bytes)?;
    }
    body.extend_from_slice(&chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(max_inflight_bytes: usize) -> Arc<Capacity> {
        Arc::new(Capacity::new(Limits {
            max_body_bytes: 1 << 20,
            max_inflight_bytes,
            body_timeout: Duration::from_secs(1),
        }))
    }

    #[test]
    fn large_requests_share_the_budget_and_are_refused_beyond_it() {
        let c = capacity(1_000_000);
        let a = Reservation::new(&c, 600_000).expect("fits");
        assert!(matches!(Reservation::new(&c, 600_000), Err(BodyError::OverCapacity)));
        assert_eq!(c.refused(), 1);
        drop(a);
        assert_eq!(c.in_flight(), 0, "given back on drop");
        assert!(Reservation::new(&c, 600_000).is_ok());
    }

    #[test]
    fn small_requests_may_use_the_reserve_when_large_ones_filled_the_budget() {
        let c = capacity(1_000_000);
        let _large = Reservation::new(&c, 1_000_000).expect("fits exactly");
        assert!(matches!(Reservation::new(&c, 100_000), Err(BodyError::OverCapacity)), "large: no reserve");
        let small: Vec<_> = (0..7).map(|_| Reservation::new(&c, 16_000).expect("reserve")).collect();
        assert_eq!(c.in_flight(), 1_000_000 + 7 * 16_000);
        assert!(Reservation::new(&c, 16_000).is_err(), "the reserve is an eighth of the budget");
        drop(small);
        assert_eq!(c.in_flight(), 1_000_000);
    }

    #[test]
    fn a_growing_body_loses_the_reserve_once_it_is_large() {
        let c = capacity(100_000);
        let mut r = Reservation::new(&c, 0).expect("empty");
        r.grow(60_000).expect("fits");
        assert!(matches!(r.grow(60_000), Err(BodyError::OverCapacity)));
        drop(r);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn refusals_are_logged_once_a_second_at_most() {
        let c = capacity(1);
        assert!(c.should_log_refusal());
        assert!(!c.should_log_refusal());
        assert!(!c.should_log_refusal());
    }

    #[test]
    fn errors_answer_with_their_status_and_close_the_connection() {
        let cases = [
            (BodyError::TooLarge { size: 5, max: 4 }, 413),
            (BodyError::OverCapacity, 429),
            (BodyError::TimedOut(Duration::from_secs(3)), 408),
            (BodyError::InvalidLength, 400),
        ];
        for (error, code) in cases {
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), code, "{error}");
            assert_eq!(response.head().connection_type(), actix_web::http::ConnectionType::Close, "{error}");
        }
        let retry = BodyError::OverCapacity.error_response();
        assert_eq!(retry.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    }
}
