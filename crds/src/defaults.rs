//! Defaulting: the values a `Website` gets for every field its author left out.

use crate::types::{GitCredentials, ServiceType, WebsiteSpec};

/// Default `spec.ref`: the remote's default branch.
pub const DEFAULT_REF: &str = "HEAD";
/// Default `spec.replicas`.
pub const DEFAULT_REPLICAS: i32 = 1;
/// Default `spec.serviceType`.
pub const DEFAULT_SERVICE_TYPE: ServiceType = ServiceType::ClusterIP;
/// Default `spec.port`.
pub const DEFAULT_PORT: i32 = 80;
/// Default `spec.syncIntervalSeconds`.
pub const DEFAULT_SYNC_INTERVAL_SECONDS: i32 = 60;

/// Fills every field the author left out with its default. Fields that are set are never changed.
pub fn defaults(spec: &WebsiteSpec) -> WebsiteSpec {
    let effective = EffectiveSpec::from(spec);
    WebsiteSpec {
        git_repo: effective.git_repo,
        git_ref: Some(effective.git_ref),
        replicas: Some(effective.replicas),
        service_type: Some(effective.service_type),
        port: Some(effective.port),
        sync_interval_seconds: Some(effective.sync_interval_seconds),
        credentials: effective.credentials,
    }
}

/// A spec with every default applied: what the controller builds from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveSpec {
    /// `spec.gitRepo`.
    pub git_repo: String,
    /// `spec.ref`, or [`DEFAULT_REF`].
    pub git_ref: String,
    /// `spec.replicas`, or [`DEFAULT_REPLICAS`].
    pub replicas: i32,
    /// `spec.serviceType`, or [`DEFAULT_SERVICE_TYPE`].
    pub service_type: ServiceType,
    /// `spec.port`, or [`DEFAULT_PORT`].
    pub port: i32,
    /// `spec.syncIntervalSeconds`, or [`DEFAULT_SYNC_INTERVAL_SECONDS`].
    pub sync_interval_seconds: i32,
    /// `spec.credentials`: none for a public repository.
    pub credentials: Option<GitCredentials>,
}

impl From<&WebsiteSpec> for EffectiveSpec {
    fn from(spec: &WebsiteSpec) -> Self {
        Self {
            git_repo: spec.git_repo.clone(),
            git_ref: spec.git_ref.clone().unwrap_or_else(|| DEFAULT_REF.to_owned()),
            replicas: spec.replicas.unwrap_or(DEFAULT_REPLICAS),
            service_type: spec.service_type.unwrap_or(DEFAULT_SERVICE_TYPE),
            port: spec.port.unwrap_or(DEFAULT_PORT),
            sync_interval_seconds: spec.sync_interval_seconds.unwrap_or(DEFAULT_SYNC_INTERVAL_SECONDS),
            credentials: spec.credentials.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> WebsiteSpec {
        WebsiteSpec::new("https://example.com/site.git")
    }

    #[test]
    fn fills_every_defaulted_field_of_a_minimal_spec() {
        let d = defaults(&minimal());
        assert_eq!(d.git_repo, "https://example.com/site.git");
        assert_eq!(d.git_ref.as_deref(), Some("HEAD"));
        assert_eq!(d.replicas, Some(1));
        assert_eq!(d.service_type, Some(ServiceType::ClusterIP));
        assert_eq!(d.port, Some(80));
        assert_eq!(d.sync_interval_seconds, Some(60));
    }

    #[test]
    fn never_overwrites_a_users_values() {
        let spec = WebsiteSpec {
            git_ref: Some("v2".into()),
            replicas: Some(3),
            service_type: Some(ServiceType::NodePort),
            port: Some(8080),
            sync_interval_seconds: Some(300),
            ..minimal()
        };
        assert_eq!(defaults(&spec), spec);
    }

    #[test]
    fn is_idempotent() {
        let once = defaults(&minimal());
        assert_eq!(defaults(&once), once);
    }

    #[test]
    fn effective_spec_matches_defaulted_spec() {
        let spec = WebsiteSpec { replicas: Some(4), ..minimal() };
        let e = EffectiveSpec::from(&spec);
        let d = defaults(&spec);
        assert_eq!(Some(e.git_ref), d.git_ref);
        assert_eq!(Some(e.replicas), d.replicas);
        assert_eq!(Some(e.service_type), d.service_type);
        assert_eq!(Some(e.port), d.port);
        assert_eq!(Some(e.sync_interval_seconds), d.sync_interval_seconds);
    }
}
