//! Decoding an AdmissionReview body in one pass, keeping only what the rules read.
//!
//! kube's `AdmissionReview<DynamicObject>` buffers the whole review (a flattened `TypeMeta`) and then each object (a
//! flattened `DynamicObject`) before decoding them, and decodes every field of the objects' metadata, managed fields
//! and annotations included. The rules read a request's identity, its operation, and of each object only its name,
//! its deletion timestamp and its `spec`: [`parse_review`] decodes exactly that, straight from the bytes, skipping the
//! rest without building it, and hands the rules kube's `AdmissionRequest<DynamicObject>` holding those fields.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde_json::Value;

/// `apiVersion` of the AdmissionReviews this webhook answers.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of an AdmissionReview.
pub const REVIEW_KIND: &str = "AdmissionReview";

/// Why a request body is not an AdmissionReview this webhook can answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body does not parse as JSON.
    #[error("request body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON of another kind or version.
    #[error("expected an {REVIEW_API_VERSION} {REVIEW_KIND}, got kind {kind:?} of apiVersion {api_version:?}")]
    NotAdmissionReview {
        /// The body's `kind`.
        kind: String,
        /// The body's `apiVersion`.
        api_version: String,
    },
    /// The review has no `request` to answer.
    #[error("the AdmissionReview has no request")]
    MissingRequest,
    /// The `request` does not have the fields of an AdmissionRequest.
    #[error("malformed AdmissionReview request: {0}")]
    Malformed(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    request: Option<Request>,
}

/// The fields of kube's `AdmissionRequest` (the same ones required), objects reduced to what the rules read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    #[serde(default)]
    object: Option<Object>,
    #[serde(default)]
    old_object: Option<Object>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
}

impl Object {
    fn into_dynamic(self) -> DynamicObject {
        let types = (!self.api_version.is_empty() || !self.kind.is_empty())
            .then_some(TypeMeta { api_version: self.api_version, kind: self.kind });
        let mut data = serde_json::Map::new();
        if let Some(spec) = self.spec {
            data.insert("spec".into(), spec);
        }
        DynamicObject {
            types,
            metadata: ObjectMeta {
                name: self.metadata.name,
                generate_name: self.metadata.generate_name,
                namespace: self.metadata.namespace,
                deletion_timestamp: self.metadata.deletion_timestamp,
                ..ObjectMeta::default()
            },
            data: Value::Object(data),
        }
    }
}

/// Parses a request body into the request it carries, in one pass over the bytes.
///
/// # Errors
/// See [`ReviewError`]. Only a body that fails the one pass is looked at again, to say what is wrong with it.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, ReviewError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => return Err(diagnose(body, error)),
    };
    if envelope.kind != REVIEW_KIND || envelope.api_version != REVIEW_API_VERSION {
        return Err(ReviewError::NotAdmissionReview { kind: envelope.kind, api_version: envelope.api_version });
    }
    let request = envelope.request.ok_or(ReviewError::MissingRequest)?;
    Ok(AdmissionRequest {
        types: TypeMeta { api_version: REVIEW_API_VERSION.into(), kind: REVIEW_KIND.into() },
        uid: request.uid,
        kind: request.kind,
        resource: request.resource,
        sub_resource: request.sub_resource,
        request_kind: request.request_kind,
        request_resource: request.request_resource,
        request_sub_resource: request.request_sub_resource,
        name: request.name,
        namespace: request.namespace,
        operation: request.operation,
        user_info: request.user_info,
        object: request.object.map(Object::into_dynamic),
        old_object: request.old_object.map(Object::into_dynamic),
        dry_run: request.dry_run,
        options: None,
    })
}

/// Why `body` failed the one pass: not JSON at all, another kind of object, no request, or a malformed request.
fn diagnose(body: &[u8], error: serde_json::Error) -> ReviewError {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(not_json) => return ReviewError::NotJson(not_json),
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (kind, api_version) = (field("kind"), field("apiVersion"));
    if kind != REVIEW_KIND || api_version != REVIEW_API_VERSION {
        return ReviewError::NotAdmissionReview { kind, api_version };
    }
    if value.get("request").is_none_or(Value::is_null) {
        return ReviewError::MissingRequest;
    }
    ReviewError::Malformed(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(object: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
                "resource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
                "name": "kubia",
                "namespace": "shop",
                "operation": "UPDATE",
                "userInfo": {"username": "alice", "groups": ["devs"]},
                "object": object,
                "oldObject": {"metadata": {"name": "kubia"}},
                "dryRun": true,
                "options": {"kind": "UpdateOptions"}
            }
        })
    }

    #[test]
    fn keeps_what_the_rules_read_and_agrees_with_kubes_own_decoding() {
        let object = json!({
            "apiVersion": "extensions.example.com/v1", "kind": "Website",
            "metadata": {"name": "kubia", "namespace": "shop", "deletionTimestamp": "2026-11-27T10:00:00Z",
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "annotations": {"a": "b"}},
            "spec": {"gitRepo": "https://e.com/r.git", "replicas": 2},
            "status": {"url": "x"}
        });
        let body = serde_json::to_vec(&review(object)).expect("json");
        let lean = parse_review(&body).expect("parses");
        let full: kube::core::admission::AdmissionReview<DynamicObject> =
            serde_json::from_slice(&body).expect("kube parses it too");
        let full: AdmissionRequest<DynamicObject> = full.try_into().expect("a request");
        assert_eq!(lean.uid, full.uid);
        assert_eq!(lean.kind, full.kind);
        assert_eq!(lean.operation, full.operation);
        assert_eq!((lean.name.as_str(), lean.namespace.as_deref()), ("kubia", Some("shop")));
        assert_eq!(lean.user_info.username, full.user_info.username);
        assert!(lean.dry_run);
        let (object, reference) = (lean.object.expect("object"), full.object.expect("object"));
        assert_eq!(object.metadata.name, reference.metadata.name);
        assert_eq!(object.metadata.deletion_timestamp, reference.metadata.deletion_timestamp);
        assert_eq!(object.data.get("spec"), reference.data.get("spec"));
        assert_eq!(object.types, reference.types);
        assert!(lean.old_object.expect("old object").data.get("spec").is_none());
    }

    #[test]
    fn says_what_is_wrong_with_a_body_it_cannot_answer() {
        assert!(matches!(parse_review(b"{"), Err(ReviewError::NotJson(_))));
        assert!(matches!(
            parse_review(br#"{"apiVersion": "v1", "kind": "Pod"}"#),
            Err(ReviewError::NotAdmissionReview { .. })
        ));
        assert!(matches!(
            parse_review(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#),
            Err(ReviewError::MissingRequest)
        ));
        let mut no_uid = review(json!({}));
        no_uid["request"].as_object_mut().expect("object").remove("uid");
        let error = parse_review(&serde_json::to_vec(&no_uid).expect("json")).expect_err("malformed");
        assert!(matches!(error, ReviewError::Malformed(_)), "{error}");
        assert!(error.to_string().contains("uid"), "{error}");
        let mut wrong_type = review(json!({}));
        wrong_type["kind"] = json!(7);
        assert!(matches!(
            parse_review(&serde_json::to_vec(&wrong_type).expect("json")),
            Err(ReviewError::NotAdmissionReview { .. })
        ));
    }
}
