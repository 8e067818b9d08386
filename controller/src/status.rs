//! What a Website's status should say, computed from the Website and its Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use website_crd::{EffectiveSpec, READY_CONDITION, Website, WebsiteStatus};

/// Reason of `Ready=True`.
pub const REASON_AVAILABLE: &str = "Available";
/// Reason of `Ready=False` while fewer pods are available than desired.
pub const REASON_PODS_UNAVAILABLE: &str = "PodsUnavailable";
/// Reason of `Ready=False` while the Deployment has not caught up with the latest spec.
pub const REASON_ROLLOUT_PENDING: &str = "RolloutInProgress";

/// The status `website` should have, given its Deployment as last read (or `None` when it has none yet).
///
/// `now` stamps a condition whose status changed; an unchanged condition keeps its transition time, so that
/// computing the status again yields the same object and writes nothing.
pub fn desired_status(website: &Website, deployment: Option<&Deployment>, url: String, now: Time) -> WebsiteStatus {
    let spec = EffectiveSpec::from(&website.spec);
    let generation = website.metadata.generation;
    let deployment_status = deployment.and_then(|d| d.status.as_ref());
    let available = deployment_status.and_then(|s| s.available_replicas).unwrap_or(0);
    let caught_up = deployment.is_some_and(|d| {
        d.metadata.generation.is_some()
            && deployment_status.and_then(|s| s.observed_generation) >= d.metadata.generation
            && d.spec.as_ref().and_then(|s| s.replicas) == Some(spec.replicas)
    });
    let (status, reason, message) = if !caught_up {
        (
            "False",
            REASON_ROLLOUT_PENDING,
            format!("waiting for the web server Deployment to roll out {} pod(s)", spec.replicas),
        )
    } else if available >= spec.replicas {
        ("True", REASON_AVAILABLE, format!("{available} of {} web server pod(s) available", spec.replicas))
    } else {
        ("False", REASON_PODS_UNAVAILABLE, format!("{available} of {} web server pod(s) available", spec.replicas))
    };
    let previous = website.status.as_ref().and_then(WebsiteStatus::ready_condition);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now,
    };
    WebsiteStatus {
        observed_generation: generation,
        available_replicas: Some(available),
        url: Some(url),
        conditions: vec![Condition {
            type_: READY_CONDITION.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time,
        }],
    }
}

/// A `Ready=False` status with `reason` and `message`, for a Website that is not served at all (an invalid spec, or
/// children whose names are taken). Everything else the status said stays; an unchanged condition keeps its
/// transition time, so that reporting the same problem again writes nothing.
pub fn not_ready_status(website: &Website, reason: &str, message: &str, now: Time) -> WebsiteStatus {
    let previous = website.status.as_ref().and_then(WebsiteStatus::ready_condition);
    let last_transition_time = match previous {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => now,
    };
    WebsiteStatus {
        observed_generation: website.metadata.generation,
        conditions: vec![Condition {
            type_: READY_CONDITION.into(),
            status: "False".into(),
            reason: reason.into(),
            message: message.to_owned(),
            observed_generation: website.metadata.generation,
            last_transition_time,
        }],
        ..website.status.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::jiff::Timestamp;
    use website_crd::WebsiteSpec;

    fn time(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid"))
    }

    fn website(replicas: i32, generation: i64) -> Website {
        let mut w =
            Website::new("kubia", WebsiteSpec { replicas: Some(replicas), ..WebsiteSpec::new("https://e.com/r.git") });
        w.metadata.generation = Some(generation);
        w
    }

    fn deployment(replicas: i32, available: Option<i32>, generation: i64, observed: Option<i64>) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..DeploymentSpec::default() }),
            status: Some(DeploymentStatus {
                available_replicas: available,
                observed_generation: observed,
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    fn ready(status: &WebsiteStatus) -> (&str, &str) {
        let c = status.ready_condition().expect("ready condition");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn not_ready_without_a_deployment() {
        let s = desired_status(&website(1, 1), None, "u".into(), time(10));
        assert_eq!(ready(&s), ("False", REASON_ROLLOUT_PENDING));
        assert_eq!(s.available_replicas, Some(0));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.url.as_deref(), Some("u"));
    }

    #[test]
    fn not_ready_until_every_desired_pod_is_available() {
        let s = desired_status(&website(2, 3), Some(&deployment(2, Some(1), 5, Some(5))), "u".into(), time(10));
        assert_eq!(ready(&s), ("False", REASON_PODS_UNAVAILABLE));
        assert_eq!(s.ready_condition().map(|c| c.message.as_str()), Some("1 of 2 web server pod(s) available"));
        assert_eq!(s.ready_condition().and_then(|c| c.observed_generation), Some(3));
    }

    #[test]
    fn ready_when_available_reaches_desired() {
        let s = desired_status(&website(2, 1), Some(&deployment(2, Some(2), 1, Some(1))), "u".into(), time(10));
        assert_eq!(ready(&s), ("True", REASON_AVAILABLE));
        assert_eq!(s.available_replicas, Some(2));
    }

    #[test]
    fn not_ready_while_the_deployment_lags_the_spec() {
        // Scaled from 1 to 3: the Deployment still reports its old generation.
        let s = desired_status(&website(3, 2), Some(&deployment(3, Some(3), 2, Some(1))), "u".into(), time(10));
        assert_eq!(ready(&s), ("False", REASON_ROLLOUT_PENDING));
        // The Deployment has not been updated to the new replica count yet.
        let s = desired_status(&website(3, 2), Some(&deployment(1, Some(1), 1, Some(1))), "u".into(), time(10));
        assert_eq!(ready(&s), ("False", REASON_ROLLOUT_PENDING));
    }

    #[test]
    fn not_ready_statuses_keep_the_rest_and_an_unchanged_transition_time() {
        let mut w = website(1, 4);
        w.status = Some(desired_status(&w, Some(&deployment(1, Some(1), 1, Some(1))), "u".into(), time(10)));
        let conflict = not_ready_status(&w, "ChildConflict", "Service \"kubia\" already exists", time(20));
        assert_eq!(ready(&conflict), ("False", "ChildConflict"));
        assert_eq!(conflict.url.as_deref(), Some("u"));
        assert_eq!(conflict.observed_generation, Some(4));
        assert_eq!(conflict.ready_condition().map(|c| c.last_transition_time.clone()), Some(time(20)));
        w.status = Some(conflict.clone());
        let again = not_ready_status(&w, "ChildConflict", "Service \"kubia\" already exists", time(30));
        assert_eq!(again, conflict, "reporting the same conflict again gives the same object");
    }

    #[test]
    fn transition_time_changes_only_when_the_condition_status_does() {
        let mut w = website(1, 1);
        let first = desired_status(&w, Some(&deployment(1, Some(0), 1, Some(1))), "u".into(), time(10));
        w.status = Some(first.clone());
        let again = desired_status(&w, Some(&deployment(1, Some(0), 1, Some(1))), "u".into(), time(20));
        assert_eq!(again, first, "recomputing an unchanged status gives the same object");
        let flipped = desired_status(&w, Some(&deployment(1, Some(1), 1, Some(1))), "u".into(), time(30));
        assert_eq!(flipped.ready_condition().map(|c| c.last_transition_time.clone()), Some(time(30)));
    }
}
