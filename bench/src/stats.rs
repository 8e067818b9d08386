//! Order statistics and the formatting of figures.

use std::time::Duration;

/// The `p`-th percentile (0–100) of `samples` by the nearest-rank method; `None` when there are none.
pub fn percentile<T: Copy + PartialOrd>(samples: &[T], p: f64) -> Option<T> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if sorted.is_empty() {
        return None;
    }
    // Ranks are small: the casts lose nothing.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of `samples` (the lower one of an even count); `None` when there are none.
pub fn median<T: Copy + PartialOrd>(samples: &[T]) -> Option<T> {
    percentile(samples, 50.0)
}

/// A duration in milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A signed difference `a - b` of durations in milliseconds, with its sign.
pub fn ms_delta(a: Duration, b: Duration) -> String {
    let delta = a.as_secs_f64() - b.as_secs_f64();
    format!("{:+.2} ms", delta * 1000.0)
}

/// A duration in seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `a / b` with two decimals and a `×`; `-` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 { "-".into() } else { format!("{:.2}×", a / b) }
}

/// Bytes in MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    crate::mib(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median::<u32>(&[]), None);
    }

    #[test]
    fn figures_are_printed_with_their_unit_and_sign() {
        assert_eq!(ms(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(ms_delta(Duration::from_micros(1000), Duration::from_micros(1500)), "-0.50 ms");
        assert_eq!(ratio(3.0, 4.0), "0.75×");
        assert_eq!(ratio(1.0, 0.0), "-");
    }
}
