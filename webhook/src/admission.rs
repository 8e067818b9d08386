//! The admission rules, free of HTTP: an [`AdmissionRequest`] in, an [`AdmissionResponse`] out.
//!
//! [`validate`] answers the ValidatingWebhookConfiguration, [`mutate`] the MutatingWebhookConfiguration.
//! Both judge `Website` objects on CREATE, and on UPDATE only when the update changes `spec`; then they judge
//! the whole new spec. Everything else is admitted untouched: other kinds and operations, an UPDATE that leaves
//! `spec` as it was (labels, annotations, finalizers, the garbage collector's own updates), even when the stored
//! spec breaks today's rules, and an object that is being deleted. One function, `read`, decides this for both.
//!
//! The request is decoded once, by the server, into an `AdmissionRequest<DynamicObject>`: the object's metadata
//! typed, its spec as JSON. The spec is then decoded into a [`WebsiteSpec`] straight from that JSON, and every rule
//! runs on it ([`website_crd::check_spec`], shared with every other client of the rules).

use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{DynamicObject, GroupVersionKind};
use serde::Deserialize as _;
use serde_json::Value;
use tracing::{debug, info, warn};
use website_crd::{GROUP, Violation, WebsiteSpec};

use crate::log::Untrusted;

/// The rules of the `Website` version this build serves. The CRD's JSON schema they use for a spec that does not
/// decode is compiled once per process, when the first such spec arrives: a webhook that never sees one never holds
/// it in memory.
#[derive(Debug)]
pub struct Rules(());

impl Rules {
    /// The rules.
    pub fn new() -> Self {
        Self(())
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
            uid = %Untrusted(&req.uid), group = %Untrusted(&req.kind.group), kind = %Untrusted(&req.kind.kind),
            "admitting an object of a kind this webhook does not judge; check the webhook configuration's rules"
        );
        return false;
    }
    matches!(req.operation, Operation::Create | Operation::Update)
}

/// What the rules judge: the new object's spec and, on UPDATE, the stored spec it replaces.
#[derive(Debug)]
struct Subject<'a> {
    /// The new object.
    object: &'a DynamicObject,
    /// Its `spec`, in JSON form, if it has one.
    spec: Option<&'a Value>,
    /// The stored `spec` on UPDATE; `None` on CREATE.
    old_spec: Option<&'a Value>,
}

/// Reads the object a request asks both webhooks to judge, or `None` when the request is admitted untouched:
/// not a `Website` CREATE or UPDATE, an object that is being deleted, or an UPDATE that leaves `spec` as it
/// was. An `Err` says why the request is malformed.
fn read(req: &AdmissionRequest<DynamicObject>) -> Result<Option<Subject<'_>>, String> {
    if !judged(req) {
        return Ok(None);
    }
    let object = req.object.as_ref().ok_or("the request carries no object")?;
    let untouched = |reason: &str| {
        debug!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(&display_name(req)), reason, "admitted untouched");
    };
    // Blocking or patching it could only keep it from going away, e.g. when its last finalizer is removed.
    if object.metadata.deletion_timestamp.is_some() {
        untouched("the object is being deleted");
        return Ok(None);
    }
    let spec = object.data.get("spec");
    let old_spec = match req.operation {
        Operation::Update => {
            let old = req.old_object.as_ref().ok_or("the UPDATE request carries no oldObject to compare with")?;
            let old_spec = old.data.get("spec");
            // A missing spec and a null one are the same spec.
            if old_spec.unwrap_or(&Value::Null) == spec.unwrap_or(&Value::Null) {
                untouched("the update leaves spec as it was");
                return Ok(None);
            }
            Some(old_spec.unwrap_or(&Value::Null))
        }
        _ => None,
    };
    Ok(Some(Subject { object, spec, old_spec }))
}

/// Answers a validating admission request.
///
/// A `Website` on CREATE, or on an UPDATE that changes its spec, is checked by every rule of
/// [`website_crd::check_spec`] (the semantic rules, and the CRD's JSON schema for a spec that does not decode) and,
/// on CREATE only, the name rule (a name never changes); a denial lists every violation, in the message and as
/// `status.details.causes`, and on UPDATE says which of them the stored object already had. Unencrypted
/// repositories are admitted with a warning. Any other request is admitted untouched (see the module's
/// documentation).
pub fn validate(_rules: &Rules, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    let subject = match read(req) {
        Ok(Some(subject)) => subject,
        Ok(None) => return response,
        Err(reason) => return deny_malformed(response, &reason),
    };
    let (spec_violations, spec) = website_crd::check_spec(subject.spec);
    let mut violations = Vec::with_capacity(spec_violations.len() + 1);
    if subject.old_spec.is_none()
        && let Some(name) = subject.object.metadata.name.as_deref()
    {
        violations.extend(website_crd::validate_name(name));
    }
    violations.extend(spec_violations);
    if let Some(old_spec) = subject.old_spec {
        mark_stored_violations(&mut violations, subject.spec.unwrap_or(&Value::Null), old_spec);
    }
    if violations.is_empty() {
        let mut response = response;
        let warnings = spec.as_ref().map(website_crd::warnings).unwrap_or_default();
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        debug!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(&display_name(req)), dry_run = req.dry_run, "admitted");
        return response;
    }
    let name = display_name(req);
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let fields = fields.join(",");
    info!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(&name), dry_run = req.dry_run, fields = %Untrusted(&fields), "denied");
    deny_invalid(response, req, &name, &violations)
}

/// Appended to the violation of a field an UPDATE leaves as it was.
const STORED_VALUE_HINT: &str =
    "the stored value already breaks the current rules and must be fixed in the same update";

/// Says of every violation of a spec field whose value is the same in `old_spec` as in `spec` that the stored value
/// already breaks the rules: the author changed something else, and must fix this too.
fn mark_stored_violations(violations: &mut [Violation], spec: &Value, old_spec: &Value) {
    for violation in violations {
        let Some(pointer) = spec_pointer(&violation.field) else { continue };
        let stored = old_spec.pointer(&pointer);
        if stored.is_some() && stored == spec.pointer(&pointer) {
            violation.message = format!("{}; {STORED_VALUE_HINT}", violation.message);
        }
    }
}

/// `spec.gitRepo` → `/gitRepo`, a pointer into the spec; `None` for a field outside the spec.
fn spec_pointer(field: &str) -> Option<String> {
    let rest = field.strip_prefix("spec.")?;
    Some(rest.split(['.', '[']).map(|segment| format!("/{}", segment.trim_end_matches(']'))).collect())
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
    warn!(uid = %Untrusted(&response.uid), reason = %Untrusted(reason), "malformed admission request");
    let mut response = response.deny(format!("malformed admission request: {reason}"));
    response.result.code = 400;
    response.result.reason = "BadRequest".into();
    response
}

/// Answers a mutating admission request with a JSON Patch that fills in every defaulted field the author
/// left out (see [`website_crd::defaults`]), on CREATE and on an UPDATE that changes `spec`; any other
/// request, an UPDATE that leaves `spec` as it was included, gets no patch. No patch when nothing is missing,
/// and a value that is set is never changed. An object that cannot be decoded is admitted unchanged:
/// validation will explain it.
pub fn mutate(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    let subject = match read(req) {
        Ok(Some(subject)) => subject,
        Ok(None) => return response,
        Err(reason) => return deny_malformed(response, &reason),
    };
    let Some(patch) = subject.spec.and_then(defaulting_patch) else {
        return response;
    };
    debug!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(&display_name(req)), operations = patch.0.len(), "defaulting");
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        Err(e) => deny_malformed(response, &format!("failed to encode the defaulting patch: {e}")),
    }
}

/// `add` operations for every spec field that is missing or null and has a default; `None` when there are none or
/// the spec does not decode.
fn defaulting_patch(spec: &Value) -> Option<json_patch::Patch> {
    let current = spec.as_object()?;
    let decoded = WebsiteSpec::deserialize(spec).ok()?;
    let defaulted = serde_json::to_value(website_crd::defaults(&decoded)).ok()?;
    let ops: Vec<Value> = defaulted
        .as_object()?
        .iter()
        .filter(|(key, _)| current.get(key.as_str()).is_none_or(Value::is_null))
        .map(|(key, value)| serde_json::json!({"op": "add", "path": format!("/spec/{key}"), "value": value}))
        .collect();
    if ops.is_empty() {
        return None;
    }
    serde_json::from_value(Value::Array(ops)).ok()
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

    /// An UPDATE from `old` to `new`, with `oldObject` as the API server sends it.
    fn update(old: Value, new: Value) -> AdmissionRequest<DynamicObject> {
        let mut req = request("UPDATE", new);
        req.old_object = Some(serde_json::from_value(old).expect("a valid object"));
        req
    }

    /// A Website stored before the current rules: its repository is refused today, and it has no defaults.
    fn stored_before_the_rules() -> Value {
        website(json!({"gitRepo": "file:///etc"}))
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
             ssh:// or git:// URL with a host and a path, or scp-like [user@]host:path"
        );
    }

    #[test]
    fn lists_every_violation_in_the_message_and_the_causes() {
        let spec = json!({"gitRepo": "ftp://x/y", "replicas": 0, "serviceType": "Internal", "port": "80"});
        let r = validate(&Rules::new(), &request("CREATE", website(spec)));
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
        let r = mutate(&request("CREATE", website(full)));
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

    #[test]
    fn an_update_without_the_old_object_is_denied_as_malformed_by_both() {
        let req = request("UPDATE", website(json!({"gitRepo": "https://e.com/r.git"})));
        for r in [validate(&Rules::new(), &req), mutate(&req)] {
            assert!(!r.allowed);
            assert_eq!(r.result.code, 400);
            assert_eq!(
                r.result.message,
                "malformed admission request: the UPDATE request carries no oldObject to compare with"
            );
            assert_eq!(r.patch, None);
        }
    }

    #[test]
    fn a_label_only_update_of_a_website_the_rules_now_refuse_is_admitted_unpatched_by_both() {
        let mut labelled = stored_before_the_rules();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        let req = update(stored_before_the_rules(), labelled);
        let validated = validate(&Rules::new(), &req);
        assert!(validated.allowed, "{:?}", validated.result);
        assert_eq!(validated.warnings, None);
        let mutated = mutate(&req);
        assert!(mutated.allowed, "{:?}", mutated.result);
        assert_eq!(mutated.patch, None, "an unchanged spec gets no defaults either");
    }

    /// Both webhooks admit `req`, and the mutating one adds no patch.
    fn assert_admitted_untouched(req: &AdmissionRequest<DynamicObject>) {
        let validated = validate(&Rules::new(), req);
        assert!(validated.allowed, "{:?}", validated.result);
        let mutated = mutate(req);
        assert!(mutated.allowed, "{:?}", mutated.result);
        assert_eq!(mutated.patch, None);
    }

    #[test]
    fn the_garbage_collector_removing_the_last_finalizer_of_a_deleting_website_is_admitted_unpatched() {
        let mut deleting = stored_before_the_rules();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        deleting["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        let mut without_finalizer = deleting.clone();
        without_finalizer["metadata"]["finalizers"] = json!([]);
        let req = update(deleting, without_finalizer);
        assert_admitted_untouched(&req);
    }

    #[test]
    fn a_website_being_deleted_is_admitted_unpatched_even_when_its_spec_changes() {
        let mut deleting = stored_before_the_rules();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let mut changed = deleting.clone();
        changed["spec"] = json!({"gitRepo": "ext::sh", "replicas": 0});
        let req = update(deleting, changed);
        assert_admitted_untouched(&req);
    }

    #[test]
    fn a_spec_changing_update_is_judged_on_the_whole_spec_and_says_which_stored_value_to_fix_first() {
        let mut changed = stored_before_the_rules();
        changed["spec"]["replicas"] = json!(0);
        let r = validate(&Rules::new(), &update(stored_before_the_rules(), changed));
        assert!(!r.allowed);
        assert_eq!(r.result.code, 422);
        let c = causes(&r);
        assert_eq!(c.len(), 2, "{c:?}");
        // gitRepo is as it was stored: the author must fix it in this update too.
        assert_eq!(c[0].0, "spec.gitRepo");
        assert!(c[0].1.starts_with("local paths are not supported"), "{}", c[0].1);
        assert!(c[0].1.ends_with(&format!("; {STORED_VALUE_HINT}")), "{}", c[0].1);
        // replicas is what the author just changed: its own message says enough.
        assert_eq!(c[1], ("spec.replicas".to_owned(), "must be between 1 and 100, got 0".to_owned()));
        assert!(
            r.result.message.contains(
                "; the stored value already breaks the current rules and must be fixed in the same update, \
                 spec.replicas: must be between 1 and 100, got 0]"
            ),
            "{}",
            r.result.message
        );
    }

    #[test]
    fn a_spec_changing_update_that_fixes_every_stored_value_is_admitted() {
        let mut fixed = stored_before_the_rules();
        fixed["spec"]["gitRepo"] = json!("https://e.com/r.git");
        let r = validate(&Rules::new(), &update(stored_before_the_rules(), fixed));
        assert!(r.allowed, "{:?}", r.result);
    }

    #[test]
    fn mutation_defaults_the_missing_fields_of_a_spec_changing_update() {
        let old = website(json!({"gitRepo": "https://e.com/r.git", "replicas": 1, "port": 80}));
        let new = website(json!({"gitRepo": "https://e.com/r.git", "replicas": 3}));
        let r = mutate(&update(old, new.clone()));
        assert!(r.allowed, "{:?}", r.result);
        let patch: json_patch::Patch = serde_json::from_value(patch_of(&r)).expect("a JSON patch");
        let mut patched = new;
        json_patch::patch(&mut patched, &patch).expect("patch applies");
        assert_eq!(
            patched["spec"],
            json!({"gitRepo": "https://e.com/r.git", "ref": "HEAD", "replicas": 3, "serviceType": "ClusterIP", "port": 80, "syncIntervalSeconds": 60})
        );
    }

    #[test]
    fn the_name_rule_applies_on_create_only_since_a_name_never_changes() {
        let named = |spec: Value| {
            let mut object = website(spec);
            object["metadata"]["name"] = json!("My.Site");
            object
        };
        let created = validate(&Rules::new(), &request("CREATE", named(json!({"gitRepo": "https://e.com/r.git"}))));
        assert_eq!(causes(&created)[0].0, "metadata.name");
        let old = named(json!({"gitRepo": "https://e.com/r.git"}));
        let edited = validate(&Rules::new(), &update(old, named(json!({"gitRepo": "https://e.com/other.git"}))));
        assert!(edited.allowed, "{:?}", edited.result);
    }
}
