//! Decoding an AdmissionReview body in one pass, keeping only what the rules read.
//!
//! kube's `AdmissionReview<DynamicObject>` buffers the whole review (a flattened `TypeMeta`) and then each object (a
//! flattened `DynamicObject`) before decoding them, and decodes every field of the objects' metadata, managed fields
//! and annotations included, into owned strings and maps. The rules read a request's identity, its operation, and
//! of each object only its name, its deletion timestamp and its `spec`: [`parse_review`] decodes exactly that,
//! straight from the bytes, skipping the rest without building it. Strings are borrowed from the body (copied only
//! when they hold escapes), and a `spec` is kept as the JSON text it arrived as, for the rules to decode into a
//! typed `WebsiteSpec` in one go.

use std::borrow::Cow;

use kube::core::admission::Operation;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

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
struct Envelope<'a> {
    #[serde(default, rename = "apiVersion", borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

/// An admission request, as much of it as the rules read, borrowed from the body it was parsed from.
///
/// The fields the admission API requires are required here too (`uid`, `kind`, `resource`, `operation`,
/// `userInfo`); `resource` is only checked to be there, since no rule reads it, and `userInfo` is kept as its JSON
/// text, decoded ([`Request::user_info`]) only for a request that needs a Secret access check.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    /// `request.uid`, which the answer must carry.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// The kind of the object.
    #[serde(borrow)]
    pub kind: Kind<'a>,
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    /// The object's name; empty on a CREATE whose object has only a `generateName`.
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    /// The object's namespace.
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    /// What is being done.
    pub operation: Operation,
    #[serde(rename = "userInfo", borrow)]
    user_info: &'a RawValue,
    /// The object as it would be stored: present on CREATE and UPDATE.
    #[serde(default, borrow)]
    pub object: Option<Object<'a>>,
    /// The stored object: present on UPDATE and DELETE.
    #[serde(default, borrow)]
    pub old_object: Option<Object<'a>>,
    /// Whether nothing will be persisted.
    #[serde(default)]
    pub dry_run: bool,
}

impl Request<'_> {
    /// `request.userInfo`: who sent the request, as the API server authenticated them.
    ///
    /// # Errors
    /// When it is not a UserInfo.
    pub fn user_info(&self) -> Result<k8s_openapi::api::authentication::v1::UserInfo, serde_json::Error> {
        serde_json::from_str(self.user_info.get())
    }
}

/// `request.kind`: the group, version and kind of the object.
#[derive(Debug, Deserialize)]
pub struct Kind<'a> {
    /// API group; empty for the core group.
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    /// API version.
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    /// Kind.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// An object of a request: its name, whether it is being deleted, and its `spec` as the JSON text it was sent as.
#[derive(Debug, Deserialize)]
pub struct Object<'a> {
    #[serde(default, borrow)]
    metadata: Metadata<'a>,
    /// `spec`, unparsed; `None` when it is missing or null.
    #[serde(default, borrow)]
    pub spec: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    generate_name: Option<Cow<'a, str>>,
    #[serde(default)]
    deletion_timestamp: Option<IgnoredAny>,
}

impl Object<'_> {
    /// `metadata.name`.
    pub fn name(&self) -> Option<&str> {
        self.metadata.name.as_deref()
    }

    /// `metadata.generateName`.
    pub fn generate_name(&self) -> Option<&str> {
        self.metadata.generate_name.as_deref()
    }

    /// Whether `metadata.deletionTimestamp` is set.
    pub fn is_being_deleted(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }
}

/// Parses a request body into the request it carries, in one pass over the bytes, borrowing its strings.
///
/// # Errors
/// See [`ReviewError`]. Only a body that fails the one pass is looked at again, to say what is wrong with it.
pub fn parse_review(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => return Err(diagnose(body, error)),
    };
    if envelope.kind != REVIEW_KIND || envelope.api_version != REVIEW_API_VERSION {
        return Err(ReviewError::NotAdmissionReview {
            kind: envelope.kind.into_owned(),
            api_version: envelope.api_version.into_owned(),
        });
    }
    envelope.request.ok_or(ReviewError::MissingRequest)
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
        let full: kube::core::admission::AdmissionReview<kube::core::DynamicObject> =
            serde_json::from_slice(&body).expect("kube parses it too");
        let full: kube::core::admission::AdmissionRequest<kube::core::DynamicObject> =
            full.try_into().expect("a request");
        assert_eq!(lean.uid, full.uid);
        assert_eq!(
            (&*lean.kind.group, &*lean.kind.version, &*lean.kind.kind),
            (full.kind.group.as_str(), full.kind.version.as_str(), full.kind.kind.as_str())
        );
        assert_eq!(lean.operation, full.operation);
        assert_eq!((&*lean.name, lean.namespace.as_deref()), ("kubia", Some("shop")));
        assert!(lean.dry_run);
        assert_eq!(lean.user_info().expect("a UserInfo"), full.user_info);
        let (object, reference) = (lean.object.expect("object"), full.object.expect("object"));
        assert_eq!(object.name(), reference.metadata.name.as_deref());
        assert_eq!(object.is_being_deleted(), reference.metadata.deletion_timestamp.is_some());
        let spec: Value = serde_json::from_str(object.spec.expect("a spec").get()).expect("JSON");
        assert_eq!(Some(&spec), reference.data.get("spec"));
        assert!(lean.old_object.expect("old object").spec.is_none());
    }

    #[test]
    fn strings_are_borrowed_from_the_body_unless_they_hold_escapes() {
        let mut with_escape = review(json!({"metadata": {"name": "kubia"}, "spec": {"gitRepo": "x"}}));
        with_escape["request"]["uid"] = json!("u-\"1");
        let body = serde_json::to_vec(&with_escape).expect("json");
        let request = parse_review(&body).expect("parses");
        assert!(matches!(request.uid, std::borrow::Cow::Owned(_)));
        assert_eq!(request.uid, "u-\"1");
        assert!(matches!(request.kind.kind, std::borrow::Cow::Borrowed("Website")));
        assert_eq!(request.object.expect("object").spec.expect("spec").get(), r#"{"gitRepo":"x"}"#);
    }

    #[test]
    fn a_null_spec_is_no_spec_and_required_fields_stay_required() {
        let body = serde_json::to_vec(&review(json!({"metadata": {"name": "kubia"}, "spec": null}))).expect("json");
        assert!(parse_review(&body).expect("parses").object.expect("object").spec.is_none());
        for field in ["uid", "kind", "resource", "operation", "userInfo"] {
            let mut incomplete = review(json!({}));
            incomplete["request"].as_object_mut().expect("object").remove(field);
            let error = parse_review(&serde_json::to_vec(&incomplete).expect("json")).expect_err(field);
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
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
