//! The admission rules, free of HTTP: an [`AdmissionRequest`] in, an [`AdmissionResponse`] out.
//!
//! [`validate`] answers the ValidatingWebhookConfiguration, [`mutate`] the MutatingWebhookConfiguration.
//! Both only judge `Website` objects on CREATE and UPDATE; anything else is allowed untouched.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{DynamicObject, GroupVersionKind};
use serde_json::Value;
use tracing::{info, warn};
use website_crd::{GROUP, Violation, Website, WebsiteSpec};

use crate::schema::SchemaValidator;

/// What the webhook needs to judge a request.
#[derive(Debug)]
pub struct Rules {
    schema: SchemaValidator,
}

impl Rules {
    /// The rules of the `Website` version this build serves.
    pub fn new() -> Self {
        Self { schema: SchemaValidator::website() }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Self::new()
    }
}

fn is_website(kind: &GroupVersionKind) -> bool {
    kind.group == GROUP && kind.kind == "Website"
}

/// Whether this request is one the rules judge; logs and returns `false` for the rest.
fn judged(req: &AdmissionRequest<DynamicObject>) -> bool {
    if !is_website(&req.kind) {
        warn!(
            uid = %req.uid, group = %req.kind.group, kind = %req.kind.kind,
            "admitting an object of a kind this webhook does not judge; check the webhook configuration's rules"
        );
        return false;
    }
    matches!(req.operation, Operation::Create | Operation::Update)
}

/// Answers a validating admission request.
///
/// A `Website` on CREATE or UPDATE is checked against the CRD's JSON schema and the semantic rules of
/// [`website_crd::validate_website`]; a denial lists every violation, in the message and as
/// `status.details.causes`. Unencrypted repositories are admitted with a warning.
pub fn validate(rules: &Rules, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    if !judged(req) {
        return response;
    }
    let Some(object) = &req.object else {
        return deny_malformed(response, "the request carries no object");
    };
    let value = match serde_json::to_value(object) {
        Ok(v) => v,
        Err(e) => return deny_malformed(response, &format!("failed to read the object: {e}")),
    };
    let (violations, spec) = check(rules, &value);
    let name = display_name(req);
    if violations.is_empty() {
        let mut response = response;
        let warnings = spec.as_ref().map(website_crd::warnings).unwrap_or_default();
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        info!(uid = %req.uid, namespace = req.namespace.as_deref(), name = %name, dry_run = req.dry_run, "admitted");
        return response;
    }
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    info!(uid = %req.uid, namespace = req.namespace.as_deref(), name = %name, dry_run = req.dry_run, ?fields, "denied");
    deny_invalid(response, req, &name, &violations)
}

/// Every violation of a `Website` in JSON form: the schema's first, then the semantic rules' for fields the
/// schema did not already reject. Also returns the spec when the object could be decoded.
fn check(rules: &Rules, value: &Value) -> (Vec<Violation>, Option<WebsiteSpec>) {
    let schema_violations = rules.schema.violations(value);
    let (semantic, spec) = match serde_json::from_value::<Website>(value.clone()) {
        Ok(website) => (website_crd::validate_website(&website), Some(website.spec)),
        // The schema already explains why the object does not decode; still check what can be checked.
        Err(_) => (partial_semantic_checks(value), None),
    };
    let mut violations = Vec::new();
    for v in semantic {
        if !schema_violations.iter().any(|s| s.field == v.field) {
            violations.push(v);
        }
    }
    // Semantic messages say more than the schema's for the same field, so they win.
    for s in schema_violations {
        if !violations.iter().any(|v| v.field == s.field) {
            violations.push(s);
        }
    }
    violations.sort_by_key(|v| field_rank(&v.field));
    (violations, spec)
}

/// Orders violations the way the fields appear in a manifest.
fn field_rank(field: &str) -> (usize, String) {
    const ORDER: [&str; 7] = [
        "metadata.name",
        "spec.gitRepo",
        "spec.ref",
        "spec.replicas",
        "spec.serviceType",
        "spec.port",
        "spec.syncIntervalSeconds",
    ];
    (ORDER.iter().position(|f| *f == field).unwrap_or(ORDER.len()), field.to_owned())
}

/// The name and `spec.gitRepo` rules, for an object whose spec does not decode as a whole.
fn partial_semantic_checks(value: &Value) -> Vec<Violation> {
    let mut violations = Vec::new();
    if let Some(name) = value.pointer("/metadata/name").and_then(Value::as_str) {
        violations.extend(website_crd::validate_name(name));
    }
    if let Some(repo) = value.pointer("/spec/gitRepo").and_then(Value::as_str) {
        let spec = WebsiteSpec::new(repo);
        violations.extend(website_crd::validate(&spec));
    }
    violations
}

fn display_name(req: &AdmissionRequest<DynamicObject>) -> String {
    if !req.name.is_empty() {
        return req.name.clone();
    }
    req.object
        .as_ref()
        .and_then(|o| o.metadata.name.clone().or_else(|| o.metadata.generate_name.clone()))
        .unwrap_or_default()
}

fn deny_invalid(
    response: AdmissionResponse,
    req: &AdmissionRequest<DynamicObject>,
    name: &str,
    violations: &[Violation],
) -> AdmissionResponse {
    let mut response = response.deny(denial_message(violations));
    response.result.code = 422;
    response.result.reason = "Invalid".into();
    response.result.details = Some(StatusDetails {
        name: name.to_owned(),
        group: req.kind.group.clone(),
        kind: req.kind.kind.clone(),
        uid: String::new(),
        causes: violations
            .iter()
            .map(|v| StatusCause {
                reason: "FieldValueInvalid".into(),
                message: v.message.clone(),
                field: v.field.clone(),
            })
            .collect(),
        retry_after_seconds: 0,
    });
    response
}

/// One line per violation when there are several, the way the API server lists its own field errors.
pub fn denial_message(violations: &[Violation]) -> String {
    match violations {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn deny_malformed(response: AdmissionResponse, reason: &str) -> AdmissionResponse {
    warn!(uid = %response.uid, reason, "malformed admission request");
    let mut response = response.deny(format!("malformed admission request: {reason}"));
    response.result.code = 400;
    response.result.reason = "BadRequest".into();
    response
}

/// Answers a mutating admission request with a JSON Patch that fills in every defaulted field the author
/// left out (see [`website_crd::defaults`]). No patch when nothing is missing, and a value that is set is
/// never changed. An object that cannot be decoded is admitted unchanged: validation will explain it.
pub fn mutate(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    if !judged(req) {
        return response;
    }
    let Some(object) = &req.object else {
        return deny_malformed(response, "the request carries no object");
    };
    let before = match serde_json::to_value(object) {
        Ok(v) => v,
        Err(e) => return deny_malformed(response, &format!("failed to read the object: {e}")),
    };
    let Some(after) = with_defaults(&before) else {
        return response;
    };
    let patch = json_patch::diff(&before, &after);
    if patch.0.is_empty() {
        return response;
    }
    let paths: Vec<String> = patch.0.iter().map(|op| op.path().to_string()).collect();
    info!(uid = %req.uid, namespace = req.namespace.as_deref(), name = %display_name(req), ?paths, "defaulting");
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        Err(e) => deny_malformed(response, &format!("failed to encode the defaulting patch: {e}")),
    }
}

/// The object with every missing spec field defaulted, or `None` when its spec does not decode.
fn with_defaults(object: &Value) -> Option<Value> {
    let spec: WebsiteSpec = serde_json::from_value(object.get("spec")?.clone()).ok()?;
    let defaulted = serde_json::to_value(website_crd::defaults(&spec)).ok()?;
    let mut after = object.clone();
    let current = after.get_mut("spec")?.as_object_mut()?;
    for (key, value) in defaulted.as_object()? {
        let missing = current.get(key).is_none_or(Value::is_null);
        if missing {
            current.insert(key.clone(), value.clone());
        }
    }
    Some(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;
    use serde_json::json;

    fn request(operation: &str, object: Value) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
                "resource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
                "name": object["metadata"]["name"].as_str().unwrap_or(""),
                "namespace": "default",
                "operation": operation,
                "userInfo": {"username": "alice"},
                "object": object,
                "oldObject": null,
                "dryRun": false
            }
        }))
        .expect("valid review");
        review.try_into().expect("has a request")
    }

    fn website(spec: Value) -> Value {
        json!({
            "apiVersion": "extensions.example.com/v1",
            "kind": "Website",
            "metadata": {"name": "kubia", "namespace": "default"},
            "spec": spec
        })
    }

    fn causes(response: &AdmissionResponse) -> Vec<(String, String)> {
        let details = response.result.details.as_ref().expect("details");
        details.causes.iter().map(|c| (c.field.clone(), c.message.clone())).collect()
    }

    #[test]
    fn admits_a_valid_website_with_no_warnings() {
        let r = validate(
            &Rules::new(),
            &request("CREATE", website(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"}))),
        );
        assert!(r.allowed, "{:?}", r.result);
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r.warnings, None);
    }

    #[test]
    fn denies_a_missing_git_repo_naming_the_field() {
        let r = validate(&Rules::new(), &request("CREATE", website(json!({}))));
        assert!(!r.allowed);
        assert_eq!(r.result.code, 422);
        let c = causes(&r);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].0, "spec.gitRepo");
        assert!(r.result.message.starts_with("spec.gitRepo: is required"), "{}", r.result.message);
    }

    #[test]
    fn denies_a_malformed_git_repo_with_the_rule_and_what_is_accepted() {
        let r = validate(&Rules::new(), &request("CREATE", website(json!({"gitRepo": "ext::sh -c touch% /tmp/x"}))));
        assert!(!r.allowed);
        assert_eq!(
            r.result.message,
            "spec.gitRepo: must not contain white space or control characters; accepted: an https://, http://, \
             ssh:// or git:// URL with a host and a path, or scp-like user@host:path"
        );
    }

    #[test]
    fn lists_every_violation_in_the_message_and_the_causes() {
        let spec = json!({"gitRepo": "ftp://x/y", "replicas": 0, "serviceType": "Internal", "port": "80"});
        let r = validate(&Rules::new(), &request("UPDATE", website(spec)));
        assert!(!r.allowed);
        let fields: Vec<String> = causes(&r).into_iter().map(|c| c.0).collect();
        assert_eq!(fields, ["spec.gitRepo", "spec.replicas", "spec.serviceType", "spec.port"]);
        let m = &r.result.message;
        assert!(m.starts_with("[spec.gitRepo: scheme \"ftp://\" is not supported"), "{m}");
        assert!(m.contains("spec.replicas: must be at least 1"), "{m}");
        assert!(m.contains("spec.serviceType: must be one of ClusterIP, NodePort, LoadBalancer"), "{m}");
        assert!(m.contains("spec.port: must be of type integer"), "{m}");
    }

    #[test]
    fn denies_names_that_cannot_name_a_service() {
        let mut object = website(json!({"gitRepo": "https://e.com/r.git"}));
        object["metadata"]["name"] = json!("My.Site");
        let r = validate(&Rules::new(), &request("CREATE", object));
        assert_eq!(causes(&r)[0].0, "metadata.name");
    }

    #[test]
    fn admits_http_repositories_with_a_warning() {
        let r =
            validate(&Rules::new(), &request("CREATE", website(json!({"gitRepo": "http://git.internal/site.git"}))));
        assert!(r.allowed);
        let warnings = r.warnings.expect("a warning");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("without encryption"), "{warnings:?}");
    }

    #[test]
    fn allows_deletes_and_other_kinds_untouched() {
        let mut delete = request("DELETE", website(json!({"gitRepo": "file:///x"})));
        delete.object = None;
        assert!(validate(&Rules::new(), &delete).allowed);
        let mut pod = request("CREATE", website(json!({"gitRepo": "file:///x"})));
        pod.kind = GroupVersionKind::gvk("", "v1", "Pod");
        assert!(validate(&Rules::new(), &pod).allowed);
        assert!(mutate(&pod).patch.is_none());
    }

    #[test]
    fn dry_run_requests_get_the_same_verdict() {
        let mut req = request("CREATE", website(json!({"gitRepo": "/srv/site"})));
        let live = validate(&Rules::new(), &req);
        req.dry_run = true;
        let dry = validate(&Rules::new(), &req);
        assert_eq!(live, dry);
        assert!(!dry.allowed);
    }

    fn patch_of(r: &AdmissionResponse) -> Value {
        serde_json::from_slice(r.patch.as_deref().expect("a patch")).expect("patch is JSON")
    }

    #[test]
    fn mutation_adds_every_missing_default_and_nothing_else() {
        let r = mutate(&request("CREATE", website(json!({"gitRepo": "https://e.com/r.git", "port": 8080}))));
        assert!(r.allowed);
        let serialized = serde_json::to_value(&r).expect("serializes");
        assert_eq!(serialized["patchType"], "JSONPatch");
        let mut ops: Vec<(String, String, Value)> = patch_of(&r)
            .as_array()
            .expect("array")
            .iter()
            .map(|op| {
                (
                    op["op"].as_str().unwrap_or("").to_owned(),
                    op["path"].as_str().unwrap_or("").to_owned(),
                    op["value"].clone(),
                )
            })
            .collect();
        ops.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            ops,
            vec![
                ("add".into(), "/spec/ref".into(), json!("HEAD")),
                ("add".into(), "/spec/replicas".into(), json!(1)),
                ("add".into(), "/spec/serviceType".into(), json!("ClusterIP")),
                ("add".into(), "/spec/syncIntervalSeconds".into(), json!(60)),
            ]
        );
    }

    #[test]
    fn mutation_applied_gives_the_defaulted_object() {
        let object = website(json!({"gitRepo": "https://e.com/r.git", "replicas": 3, "ref": null}));
        let r = mutate(&request("CREATE", object.clone()));
        let patch: json_patch::Patch = serde_json::from_value(patch_of(&r)).expect("a JSON patch");
        let mut patched = object;
        json_patch::patch(&mut patched, &patch).expect("patch applies");
        assert_eq!(
            patched["spec"],
            json!({"gitRepo": "https://e.com/r.git", "ref": "HEAD", "replicas": 3, "serviceType": "ClusterIP", "port": 80, "syncIntervalSeconds": 60})
        );
    }

    #[test]
    fn no_patch_when_nothing_needs_defaulting() {
        let full = json!({"gitRepo": "https://e.com/r.git", "ref": "main", "replicas": 2, "serviceType": "NodePort", "port": 80, "syncIntervalSeconds": 30});
        let r = mutate(&request("UPDATE", website(full)));
        assert!(r.allowed);
        assert_eq!(r.patch, None);
        assert!(serde_json::to_value(&r).expect("serializes").get("patchType").is_none());
    }

    #[test]
    fn undecodable_specs_are_admitted_unpatched_for_validation_to_explain() {
        let r = mutate(&request("CREATE", website(json!({"replicas": "three"}))));
        assert!(r.allowed);
        assert_eq!(r.patch, None);
    }

    #[test]
    fn a_missing_object_is_denied_as_malformed_with_the_uid() {
        let mut req = request("CREATE", website(json!({"gitRepo": "https://e.com/r.git"})));
        req.object = None;
        let r = validate(&Rules::new(), &req);
        assert!(!r.allowed);
        assert_eq!(r.result.code, 400);
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert!(r.result.message.contains("carries no object"));
    }
}
