//! Validity periods: defaults, bounds and the not-before/not-after window.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{Error, Result};

const SECS_PER_DAY: u64 = 24 * 60 * 60;

/// Default validity of a generated CA certificate: 3650 days (about ten years).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(3650 * SECS_PER_DAY);

/// Default validity of a serving certificate: 365 days.
pub const DEFAULT_SERVING_VALIDITY: Duration = Duration::from_secs(365 * SECS_PER_DAY);

/// Shortest accepted validity period: one minute.
pub const MIN_VALIDITY: Duration = Duration::from_secs(60);

/// Longest accepted validity period: 36500 days (about a hundred years).
pub const MAX_VALIDITY: Duration = Duration::from_secs(36_500 * SECS_PER_DAY);

/// How far `notBefore` is set in the past, so that a certificate is already valid for peers
/// (e.g. the kube-apiserver) whose clock is slightly behind ours. Kubernetes' own tooling
/// (kubeadm) backdates by the same amount.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// Converts a number of days to a [`Duration`], e.g. for command-line flags given in days.
#[must_use]
pub const fn days(days: u32) -> Duration {
    // u32::MAX days fits comfortably in a u64 number of seconds.
    Duration::from_secs(days as u64 * SECS_PER_DAY)
}

/// The validity window of a certificate about to be issued: `notBefore` is
/// [`CLOCK_SKEW_ALLOWANCE`] before now and `notAfter` is `validity` after now, both truncated to
/// whole seconds as X.509 stores them.
pub(crate) fn window(what: &'static str, validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime)> {
    if !(MIN_VALIDITY..=MAX_VALIDITY).contains(&validity) {
        return Err(Error::InvalidValidity { what, requested: validity });
    }
    let now = now();
    // Both conversions and additions are in range: `validity` is at most ~100 years.
    let invalid = || Error::InvalidValidity { what, requested: validity };
    let validity = time::Duration::try_from(validity).map_err(|_| invalid())?;
    let skew = time::Duration::try_from(CLOCK_SKEW_ALLOWANCE).map_err(|_| invalid())?;
    let not_before = now.checked_sub(skew).ok_or_else(invalid)?;
    let not_after = now.checked_add(validity).ok_or_else(invalid)?;
    Ok((not_before, not_after))
}

/// The current time in UTC, truncated to whole seconds.
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
}

/// Human-readable form of a duration for error messages ("365 days", "90 minutes", "0 seconds").
pub(crate) fn describe_duration(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 {
        return format!("{duration:?}");
    }
    let secs = duration.as_secs();
    let plural = |n: u64, unit: &str| {
        if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
    };
    if secs != 0 && secs.is_multiple_of(SECS_PER_DAY) {
        plural(secs / SECS_PER_DAY, "day")
    } else if secs != 0 && secs.is_multiple_of(3600) {
        plural(secs / 3600, "hour")
    } else if secs != 0 && secs.is_multiple_of(60) {
        plural(secs / 60, "minute")
    } else {
        plural(secs, "second")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_durations_in_the_largest_whole_unit() {
        let cases = [
            (Duration::ZERO, "0 seconds"),
            (Duration::from_secs(1), "1 second"),
            (Duration::from_secs(59), "59 seconds"),
            (Duration::from_secs(60), "1 minute"),
            (Duration::from_secs(90 * 60), "90 minutes"),
            (Duration::from_secs(7200), "2 hours"),
            (days(1), "1 day"),
            (days(36_500), "36500 days"),
            (Duration::from_millis(1500), "1.5s"),
        ];
        for (duration, expected) in cases {
            assert_eq!(describe_duration(duration), expected, "{duration:?}");
        }
    }

    #[test]
    fn window_rejects_out_of_bounds_validity() {
        for validity in [
            Duration::ZERO,
            MIN_VALIDITY - Duration::from_nanos(1),
            MAX_VALIDITY + Duration::from_secs(1),
            Duration::MAX,
        ] {
            let err = window("CA", validity).expect_err("validity must be rejected");
            assert!(
                matches!(err, Error::InvalidValidity { what: "CA", requested } if requested == validity),
                "{err:?}"
            );
        }
    }

    #[test]
    fn window_accepts_the_bounds_and_backdates_not_before() -> Result<()> {
        for validity in [MIN_VALIDITY, MAX_VALIDITY] {
            let before = now();
            let (not_before, not_after) = window("CA", validity)?;
            let after = now();
            assert_eq!(not_before.nanosecond(), 0);
            assert_eq!(not_after.nanosecond(), 0);
            assert!(not_after - not_before == validity + CLOCK_SKEW_ALLOWANCE);
            assert!(not_before >= before - CLOCK_SKEW_ALLOWANCE);
            assert!(not_before <= after - CLOCK_SKEW_ALLOWANCE);
        }
        Ok(())
    }

    #[test]
    fn invalid_validity_message_states_the_accepted_range() {
        let message = Error::InvalidValidity { what: "serving certificate", requested: Duration::ZERO }.to_string();
        assert_eq!(
            message,
            "failed to use a serving certificate validity of 0 seconds: it must be between \
             1 minute and 36500 days"
        );
    }
}
