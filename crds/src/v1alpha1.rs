//! `extensions.example.com/v1alpha1`: the book's own shape of a Website, `spec.gitRepo` and nothing else, as a view
//! of the stored `v1` object.
//!
//! The two versions are two views of one Website, which is stored as `v1`:
//! - reading a `v1` Website as `v1alpha1` ([`to_v1alpha1`]) drops the spec fields that `v1alpha1` lacks (`ref`,
//!   `replicas`, `serviceType`, `port`, `syncIntervalSeconds`, `credentials`); metadata and status are the same;
//! - writing a `v1alpha1` Website ([`to_v1`]) changes `spec.gitRepo` and the metadata a client may change, and keeps
//!   every `v1` spec field that is already stored, so that no user data is lost across the two views; a new
//!   Website gets the defaults of every other field.
//!
//! The conversion is pure: no validation (the rules run on the `v1` result), no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::types::{GROUP, Website, WebsiteSpec, WebsiteStatus};

/// The version of this view.
pub const VERSION_V1ALPHA1: &str = "v1alpha1";

/// A Website as `extensions.example.com/v1alpha1` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteV1alpha1 {
    /// `extensions.example.com/v1alpha1`.
    pub api_version: String,
    /// `Website`.
    pub kind: String,
    /// The object's metadata, the same in both versions.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec: the repository only.
    #[serde(default)]
    pub spec: SpecV1alpha1,
    /// The status, the same in both versions (written by the controller, read-only here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WebsiteStatus>,
}

/// The `v1alpha1` spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecV1alpha1 {
    /// The git repository whose files are served.
    #[serde(default)]
    pub git_repo: String,
}

/// `extensions.example.com/v1alpha1`.
pub fn api_version_v1alpha1() -> String {
    format!("{GROUP}/{VERSION_V1ALPHA1}")
}

/// The `v1alpha1` view of a stored `v1` Website: its metadata and status, and its repository.
pub fn to_v1alpha1(website: &Website) -> WebsiteV1alpha1 {
    WebsiteV1alpha1 {
        api_version: api_version_v1alpha1(),
        kind: "Website".into(),
        metadata: website.metadata.clone(),
        spec: SpecV1alpha1 { git_repo: website.spec.git_repo.clone() },
        status: website.status.clone(),
    }
}

/// The `v1` Website to store for a `v1alpha1` write: the repository and metadata of `incoming`, over `stored` (the
/// `v1` object it replaces, `None` on create), whose other spec fields and status are kept.
///
/// On create, the other spec fields are left out, for the defaults to fill in as for any `v1` Website.
pub fn to_v1(incoming: &WebsiteV1alpha1, stored: Option<&Website>) -> Website {
    let spec = match stored {
        Some(stored) => WebsiteSpec { git_repo: incoming.spec.git_repo.clone(), ..stored.spec.clone() },
        None => WebsiteSpec::new(incoming.spec.git_repo.clone()),
    };
    let mut website = Website::new(incoming.metadata.name.as_deref().unwrap_or_default(), spec);
    website.metadata = incoming.metadata.clone();
    // The status belongs to the controller: a write through either view never changes it.
    website.status = stored.and_then(|s| s.status.clone());
    website
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CredentialsKind, GitCredentials, ServiceType};

    fn stored() -> Website {
        let spec = WebsiteSpec {
            git_ref: Some("v2".into()),
            replicas: Some(3),
            service_type: Some(ServiceType::NodePort),
            port: Some(8080),
            sync_interval_seconds: Some(300),
            credentials: Some(GitCredentials { kind: CredentialsKind::Https, secret_name: "creds".into() }),
            ..WebsiteSpec::new("https://github.com/org/site.git")
        };
        let mut website = Website::new("kubia", spec);
        website.metadata.namespace = Some("shop".into());
        website.metadata.resource_version = Some("42".into());
        website.status = Some(WebsiteStatus {
            url: Some("http://kubia.shop.svc.cluster.local:8080/".into()),
            ..WebsiteStatus::default()
        });
        website
    }

    #[test]
    fn reading_as_v1alpha1_keeps_the_repository_metadata_and_status_only() {
        let view = to_v1alpha1(&stored());
        let json = serde_json::to_value(&view).expect("serializes");
        assert_eq!(json["apiVersion"], "extensions.example.com/v1alpha1");
        assert_eq!(json["kind"], "Website");
        assert_eq!(json["spec"], serde_json::json!({"gitRepo": "https://github.com/org/site.git"}));
        assert_eq!(json["metadata"]["resourceVersion"], "42");
        assert_eq!(json["status"]["url"], "http://kubia.shop.svc.cluster.local:8080/");
    }

    #[test]
    fn writing_through_v1alpha1_keeps_every_stored_v1_field() {
        let mut view = to_v1alpha1(&stored());
        view.spec.git_repo = "https://github.com/org/other.git".into();
        view.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        view.status = None;
        let written = to_v1(&view, Some(&stored()));
        let expected = WebsiteSpec { git_repo: "https://github.com/org/other.git".into(), ..stored().spec };
        assert_eq!(written.spec, expected);
        assert_eq!(written.metadata.labels, view.metadata.labels);
        assert_eq!(written.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(written.status, stored().status, "the status is the controller's");
        // A round trip through v1alpha1 changes nothing.
        assert_eq!(to_v1(&to_v1alpha1(&stored()), Some(&stored())), stored());
    }

    #[test]
    fn a_website_created_through_v1alpha1_leaves_the_other_fields_to_their_defaults() {
        let view: WebsiteV1alpha1 = serde_json::from_value(serde_json::json!({
            "apiVersion": "extensions.example.com/v1alpha1", "kind": "Website",
            "metadata": {"name": "kubia", "namespace": "shop"},
            "spec": {"gitRepo": "https://github.com/luksa/kubia-website-example.git"},
            "status": {"url": "forged"}
        }))
        .expect("decodes");
        let created = to_v1(&view, None);
        assert_eq!(created.spec, WebsiteSpec::new("https://github.com/luksa/kubia-website-example.git"));
        assert_eq!(created.metadata.name.as_deref(), Some("kubia"));
        assert_eq!(created.status, None, "a client cannot write a status");
        let json = serde_json::to_value(&created).expect("serializes");
        assert_eq!(json["apiVersion"], "extensions.example.com/v1");
    }
}
