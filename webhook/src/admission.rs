//! The admission rules, free of HTTP: a [`Request`] in, a [`Verdict`] out.
//!
//! [`validate`] answers the ValidatingWebhookConfiguration, [`mutate`] the MutatingWebhookConfiguration.
//! Both judge `Website` objects on CREATE, and on UPDATE only when the update changes `spec`; then they judge
//! the whole new spec. Everything else is admitted untouched: other kinds and operations, an UPDATE that leaves
//! `spec` as it was (labels, annotations, finalizers, the garbage collector's own updates), even when the stored
//! spec breaks today's rules, and an object that is being deleted. One function, `read`, decides this for both.
//!
//! The request is decoded once, by the server, into a [`Request`] that keeps the object's `spec` as the JSON text
//! it arrived as. On CREATE that text is decoded straight into a [`WebsiteSpec`], and every rule runs on it
//! ([`website_crd::check_spec_json`], shared with every other client of the rules). On UPDATE, when the two specs'
//! texts differ, both are read as JSON values, to compare them and to tell which stored values break the rules; the
//! typed spec is then decoded from the new spec's value. No text is parsed twice.

use kube::core::admission::Operation;
use kube::core::response::{Status, StatusCause, StatusDetails};
use serde::Deserialize as _;
use serde_json::Value;
use tracing::{debug, info, warn};
use website_crd::{GROUP, Violation, WebsiteSpec};

pub use crate::access::SecretAccess;
use crate::log::Untrusted;
pub use crate::review::Request;

/// What the webhook answers a request: allowed or not, why not, the defaulting patch, and warnings for the user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why not: the status the API server returns to the client. Empty when allowed.
    pub result: Status,
    /// A JSON Patch (its JSON text) to apply to the object; only on an allowed request.
    pub patch: Option<Vec<u8>>,
    /// Warnings the API server shows the client.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Admitted as it is.
    pub fn allow() -> Self {
        Self { allowed: true, ..Self::default() }
    }

    /// Refused with `code`, `reason` and `message`.
    pub fn deny(code: u16, reason: &str, message: String) -> Self {
        Self {
            allowed: false,
            result: Status { code, reason: reason.to_owned(), message, ..Status::default() },
            ..Self::default()
        }
    }
}

/// What [`validate`] concludes: a verdict, or one that holds only if the requesting user may read the Secret the
/// Website refers to, which only the API server can say (see [`crate::access`]).
#[derive(Debug, PartialEq)]
#[must_use]
pub enum Judgement {
    /// The verdict.
    Final(Verdict),
    /// The rules admit the Website; it is admitted if, and only if, `access` is granted.
    IfPermitted {
        /// The verdict when `access` is granted.
        verdict: Verdict,
        /// What to ask the API server.
        access: SecretAccess,
    },
}

impl From<Verdict> for Judgement {
    fn from(verdict: Verdict) -> Self {
        Self::Final(verdict)
    }
}

/// Spec fields whose change on UPDATE checks again that the user may read the Secret: where the credentials go
/// (`gitRepo`, and `ref`, which picks what is fetched) and which Secret they come from.
const ACCESS_FIELDS: [&str; 3] = ["/gitRepo", "/ref", "/credentials"];

/// The Secret access an admitted request still needs: `None` when the spec has no credentials, or on an UPDATE that
/// leaves the remote, the ref and the credentials as they were. An `Err` says why the request is malformed.
fn secret_access(
    req: &Request<'_>,
    subject: &Subject<'_>,
    spec: Option<&WebsiteSpec>,
) -> Result<Option<SecretAccess>, &'static str> {
    let Some(credentials) = spec.and_then(|s| s.credentials.as_ref()) else {
        return Ok(None);
    };
    if let Subject::Updated { spec, old_spec } = subject {
        let field = |value: &Value, pointer: &str| value.pointer(pointer).filter(|v| !v.is_null()).cloned();
        if ACCESS_FIELDS.iter().all(|pointer| field(spec, pointer) == field(old_spec, pointer)) {
            return Ok(None);
        }
    }
    let user = req.user_info().map_err(|_| "the request's userInfo is not a UserInfo")?;
    let namespace = req.namespace.as_deref().filter(|n| !n.is_empty()).ok_or("the request names no namespace")?;
    Ok(Some(SecretAccess { user, namespace: namespace.to_owned(), secret: credentials.secret_name.clone() }))
}

fn is_website(req: &Request<'_>) -> bool {
    req.kind.group == GROUP && req.kind.kind == "Website"
}

/// Whether this request is one the rules judge; logs and returns `false` for the rest.
fn judged(req: &Request<'_>) -> bool {
    if !is_website(req) {
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
enum Subject<'a> {
    /// A CREATE: the new spec's JSON text, if it has a spec.
    Created { spec: Option<&'a str> },
    /// An UPDATE that changes the spec: both specs as JSON values, `Null` for a missing one.
    Updated { spec: Value, old_spec: Value },
}

impl Subject<'_> {
    /// Every violation of the new spec, and the spec itself when it decodes.
    fn check(&self) -> (Vec<Violation>, Option<WebsiteSpec>) {
        match self {
            Subject::Created { spec } => website_crd::check_spec_json(*spec),
            Subject::Updated { spec, .. } => website_crd::check_spec(Some(spec).filter(|s| !s.is_null())),
        }
    }

    /// The new spec, decoded; `None` when it does not decode.
    fn decode(&self) -> Option<WebsiteSpec> {
        match self {
            Subject::Created { spec } => serde_json::from_str(spec.as_ref()?).ok(),
            Subject::Updated { spec, .. } => WebsiteSpec::deserialize(spec).ok(),
        }
    }
}

/// Reads the object a request asks both webhooks to judge, or `None` when the request is admitted untouched:
/// not a `Website` CREATE or UPDATE, an object that is being deleted, or an UPDATE that leaves `spec` as it
/// was. An `Err` says why the request is malformed.
fn read<'a>(req: &Request<'a>) -> Result<Option<Subject<'a>>, &'static str> {
    if !judged(req) {
        return Ok(None);
    }
    let object = req.object.as_ref().ok_or("the request carries no object")?;
    let untouched = |reason: &str| {
        debug!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(display_name(req)), reason, "admitted untouched");
    };
    // Blocking or patching it could only keep it from going away, e.g. when its last finalizer is removed.
    if object.is_being_deleted() {
        untouched("the object is being deleted");
        return Ok(None);
    }
    let spec = object.spec.map(|raw| raw.get());
    if req.operation != Operation::Update {
        return Ok(Some(Subject::Created { spec }));
    }
    let old = req.old_object.as_ref().ok_or("the UPDATE request carries no oldObject to compare with")?;
    let old_spec = old.spec.map(|raw| raw.get());
    // The API server writes both objects the same way, so the same spec is nearly always the same text. A missing
    // spec and a null one are the same spec.
    if spec == old_spec {
        untouched("the update leaves spec as it was");
        return Ok(None);
    }
    let value = |text: Option<&str>| text.map_or(Ok(Value::Null), serde_json::from_str);
    let (Ok(spec), Ok(old_spec)) = (value(spec), value(old_spec)) else {
        return Err("a spec of the request is not JSON");
    };
    if spec == old_spec {
        untouched("the update leaves spec as it was");
        return Ok(None);
    }
    Ok(Some(Subject::Updated { spec, old_spec }))
}

/// Answers a validating admission request.
///
/// A `Website` on CREATE, or on an UPDATE that changes its spec, is checked by every rule of
/// [`website_crd::check_spec`] (the semantic rules, and the CRD's JSON schema for a spec that does not decode) and,
/// on CREATE only, the name rule (a name never changes); a denial lists every violation, in the message and as
/// `status.details.causes`, and on UPDATE says which of them the stored object already had. Unencrypted
/// repositories are admitted with a warning. Any other request is admitted untouched (see the module's
/// documentation).
///
/// A Website with `credentials` that the rules admit is admitted only if the requesting user may `get` the Secret
/// ([`Judgement::IfPermitted`]), on CREATE and on an UPDATE that changes `gitRepo`, `ref` or `credentials`.
pub fn validate(req: &Request<'_>) -> Judgement {
    let subject = match read(req) {
        Ok(Some(subject)) => subject,
        Ok(None) => return Verdict::allow().into(),
        Err(reason) => return deny_malformed(req, reason).into(),
    };
    let (spec_violations, spec) = subject.check();
    let mut violations = Vec::with_capacity(spec_violations.len() + 1);
    if let Subject::Created { .. } = subject
        && let Some(name) = req.object.as_ref().and_then(|o| o.name())
    {
        violations.extend(website_crd::validate_name(name));
    }
    violations.extend(spec_violations);
    if let Subject::Updated { spec, old_spec } = &subject {
        mark_stored_violations(&mut violations, spec, old_spec);
    }
    if violations.is_empty() {
        debug!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(display_name(req)), dry_run = req.dry_run, "admitted");
        let warnings = spec.as_ref().map(website_crd::warnings).unwrap_or_default();
        let verdict = Verdict { warnings, ..Verdict::allow() };
        return match secret_access(req, &subject, spec.as_ref()) {
            Ok(Some(access)) => Judgement::IfPermitted { verdict, access },
            Ok(None) => verdict.into(),
            Err(reason) => deny_malformed(req, reason).into(),
        };
    }
    let name = display_name(req);
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let fields = fields.join(",");
    info!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(name), dry_run = req.dry_run, fields = %Untrusted(&fields), "denied");
    deny_invalid(req, name, &violations).into()
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

/// The name a user knows the object by: the request's, else the object's name or `generateName`.
fn display_name<'a>(req: &'a Request<'_>) -> &'a str {
    if !req.name.is_empty() {
        return &req.name;
    }
    req.object.as_ref().and_then(|o| o.name().or_else(|| o.generate_name())).unwrap_or_default()
}

fn deny_invalid(req: &Request<'_>, name: &str, violations: &[Violation]) -> Verdict {
    let mut verdict = Verdict::deny(422, "Invalid", denial_message(violations));
    verdict.result.details = Some(StatusDetails {
        name: name.to_owned(),
        group: req.kind.group.clone().into_owned(),
        kind: req.kind.kind.clone().into_owned(),
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
    verdict
}

/// One line per violation when there are several, the way the API server lists its own field errors.
pub fn denial_message(violations: &[Violation]) -> String {
    match violations {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

fn deny_malformed(req: &Request<'_>, reason: &str) -> Verdict {
    warn!(uid = %Untrusted(&req.uid), reason = %Untrusted(reason), "malformed admission request");
    Verdict::deny(400, "BadRequest", format!("malformed admission request: {reason}"))
}

/// Answers a mutating admission request with a JSON Patch that fills in every defaulted field the author
/// left out (see [`website_crd::defaults`]), on CREATE and on an UPDATE that changes `spec`; any other
/// request, an UPDATE that leaves `spec` as it was included, gets no patch. No patch when nothing is missing,
/// and a value that is set is never changed. An object that cannot be decoded is admitted unchanged:
/// validation will explain it.
pub fn mutate(req: &Request<'_>) -> Verdict {
    let subject = match read(req) {
        Ok(Some(subject)) => subject,
        Ok(None) => return Verdict::allow(),
        Err(reason) => return deny_malformed(req, reason),
    };
    let Some(patch) = subject.decode().as_ref().and_then(defaulting_patch) else {
        return Verdict::allow();
    };
    debug!(uid = %Untrusted(&req.uid), namespace = %Untrusted(req.namespace.as_deref().unwrap_or_default()), name = %Untrusted(display_name(req)), "defaulting");
    Verdict { patch: Some(patch), ..Verdict::allow() }
}

/// The JSON text of `add` operations for every spec field that is missing (or null, which decodes the same) and
/// has a default; `None` when there are none.
fn defaulting_patch(spec: &WebsiteSpec) -> Option<Vec<u8>> {
    let defaulted = website_crd::defaults(spec);
    if defaulted == *spec {
        return None;
    }
    // Unset optional fields are not serialized: the fields the defaults add are the ones missing here.
    let Ok(Value::Object(set)) = serde_json::to_value(spec) else { return None };
    let Ok(Value::Object(defaulted)) = serde_json::to_value(defaulted) else { return None };
    let ops: Vec<Value> = defaulted
        .into_iter()
        .filter(|(key, _)| !set.contains_key(key))
        .map(|(key, value)| serde_json::json!({"op": "add", "path": format!("/spec/{key}"), "value": value}))
        .collect();
    if ops.is_empty() {
        return None;
    }
    serde_json::to_vec(&ops).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::parse_review;
    use serde_json::json;

    /// `validate` of the request in `review`, decoded as the server decodes it: a final verdict.
    fn validate(review: &Value) -> Verdict {
        match judge(review) {
            Judgement::Final(verdict) => verdict,
            other => panic!("expected a final verdict, got {other:?}"),
        }
    }

    /// `validate` of the request in `review`, decoded as the server decodes it.
    fn judge(review: &Value) -> Judgement {
        let body = serde_json::to_vec(review).expect("JSON");
        super::validate(&parse_review(&body).expect("a well-formed review"))
    }

    /// `mutate` of the request in `review`, decoded as the server decodes it.
    fn mutate(review: &Value) -> Verdict {
        let body = serde_json::to_vec(review).expect("JSON");
        super::mutate(&parse_review(&body).expect("a well-formed review"))
    }

    /// An AdmissionReview of `operation` on `object`.
    fn request(operation: &str, object: Value) -> Value {
        json!({
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
        })
    }

    /// An UPDATE from `old` to `new`, with `oldObject` as the API server sends it.
    fn update(old: Value, new: Value) -> Value {
        let mut req = request("UPDATE", new);
        req["request"]["oldObject"] = old;
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

    fn private(git_repo: &str, kind: &str, secret: &str) -> Value {
        website(json!({"gitRepo": git_repo, "credentials": {"type": kind, "secretName": secret}}))
    }

    /// The access a judgement asks for, or `None` for a final verdict (which must then be an admission).
    fn access_asked(judgement: Judgement) -> Option<SecretAccess> {
        match judgement {
            Judgement::Final(verdict) => {
                assert!(verdict.allowed, "{:?}", verdict.result);
                None
            }
            Judgement::IfPermitted { verdict, access } => {
                assert!(verdict.allowed, "{:?}", verdict.result);
                Some(access)
            }
        }
    }

    #[test]
    fn a_website_with_credentials_is_admitted_only_if_its_creator_may_get_the_secret() {
        let mut review = request("CREATE", private("https://github.com/org/private.git", "HTTPS", "site-creds"));
        review["request"]["userInfo"] =
            json!({"username": "bob", "uid": "u-2", "groups": ["devs"], "extra": {"scopes": ["x"]}});
        let access = access_asked(judge(&review)).expect("an access check");
        assert_eq!((access.namespace.as_str(), access.secret.as_str()), ("default", "site-creds"));
        assert_eq!(access.user.username.as_deref(), Some("bob"));
        assert_eq!(access.user.uid.as_deref(), Some("u-2"));
        assert_eq!(access.user.groups, Some(vec!["devs".to_owned()]));
        assert_eq!(access.user.extra.expect("extra")["scopes"], ["x"]);
        // No credentials, no check.
        assert_eq!(access_asked(judge(&request("CREATE", website(json!({"gitRepo": "https://e.com/r.git"}))))), None);
    }

    #[test]
    fn a_website_whose_credentials_break_the_rules_is_refused_without_asking() {
        let r = validate(&request("CREATE", private("git@github.com:org/private.git", "HTTPS", "site-creds")));
        assert!(!r.allowed);
        assert_eq!(causes(&r)[0].0, "spec.credentials.type");
        let r = validate(&request("CREATE", private("http://git.example.com/private.git", "HTTPS", "site-creds")));
        assert_eq!(causes(&r)[0].0, "spec.credentials");
    }

    #[test]
    fn an_update_asks_again_when_it_changes_the_remote_the_ref_or_the_credentials() {
        let old = private("https://github.com/org/private.git", "HTTPS", "site-creds");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut new = old.clone();
            f(&mut new["spec"]);
            update(old.clone(), new)
        };
        for (what, review) in [
            ("gitRepo", with(&|s| s["gitRepo"] = json!("https://evil.example.com/collect.git"))),
            ("ref", with(&|s| s["ref"] = json!("other"))),
            ("secretName", with(&|s| s["credentials"]["secretName"] = json!("other-creds"))),
            (
                "credentials added",
                update(website(json!({"gitRepo": "https://github.com/org/private.git"})), old.clone()),
            ),
        ] {
            assert!(access_asked(judge(&review)).is_some(), "{what}");
        }
        for (what, review) in [
            ("replicas", with(&|s| s["replicas"] = json!(3))),
            ("a null ref is no ref", with(&|s| s["ref"] = Value::Null)),
            (
                "credentials removed",
                with(&|s| {
                    s.as_object_mut().expect("spec").remove("credentials");
                }),
            ),
        ] {
            assert_eq!(access_asked(judge(&review)), None, "{what}");
        }
    }

    #[test]
    fn a_request_without_a_namespace_or_a_readable_user_is_malformed() {
        let mut review = request("CREATE", private("https://github.com/org/private.git", "HTTPS", "site-creds"));
        review["request"]["userInfo"] = json!({"username": 7});
        let r = validate(&review);
        assert_eq!((r.allowed, r.result.code), (false, 400));
        assert!(r.result.message.contains("userInfo"), "{}", r.result.message);
        let mut review = request("CREATE", private("https://github.com/org/private.git", "HTTPS", "site-creds"));
        review["request"].as_object_mut().expect("request").remove("namespace");
        assert!(validate(&review).result.message.contains("no namespace"));
    }

    fn causes(response: &Verdict) -> Vec<(String, String)> {
        let details = response.result.details.as_ref().expect("details");
        details.causes.iter().map(|c| (c.field.clone(), c.message.clone())).collect()
    }

    #[test]
    fn admits_a_valid_website_with_no_warnings() {
        let r = validate(&request(
            "CREATE",
            website(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"})),
        ));
        assert!(r.allowed, "{:?}", r.result);
        assert_eq!(r.warnings, Vec::<String>::new());
    }

    #[test]
    fn denies_a_missing_git_repo_naming_the_field() {
        let r = validate(&request("CREATE", website(json!({}))));
        assert!(!r.allowed);
        assert_eq!(r.result.code, 422);
        let c = causes(&r);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].0, "spec.gitRepo");
        assert!(r.result.message.starts_with("spec.gitRepo: is required"), "{}", r.result.message);
    }

    #[test]
    fn denies_a_malformed_git_repo_with_the_rule_and_what_is_accepted() {
        let r = validate(&request("CREATE", website(json!({"gitRepo": "ext::sh -c touch% /tmp/x"}))));
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
        let r = validate(&request("CREATE", website(spec)));
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
        let r = validate(&request("CREATE", object));
        assert_eq!(causes(&r)[0].0, "metadata.name");
    }

    #[test]
    fn admits_http_repositories_with_a_warning() {
        let r = validate(&request("CREATE", website(json!({"gitRepo": "http://git.internal/site.git"}))));
        assert!(r.allowed);
        let warnings = r.warnings;
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("without encryption"), "{warnings:?}");
    }

    #[test]
    fn allows_deletes_and_other_kinds_untouched() {
        let mut delete = request("DELETE", website(json!({"gitRepo": "file:///x"})));
        delete["request"]["object"] = Value::Null;
        assert!(validate(&delete).allowed);
        let mut pod = request("CREATE", website(json!({"gitRepo": "file:///x"})));
        pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
        assert!(validate(&pod).allowed);
        assert!(mutate(&pod).patch.is_none());
    }

    #[test]
    fn dry_run_requests_get_the_same_verdict() {
        let mut req = request("CREATE", website(json!({"gitRepo": "/srv/site"})));
        let live = validate(&req);
        req["request"]["dryRun"] = json!(true);
        let dry = validate(&req);
        assert_eq!(live, dry);
        assert!(!dry.allowed);
    }

    fn patch_of(r: &Verdict) -> Value {
        serde_json::from_slice(r.patch.as_deref().expect("a patch")).expect("patch is JSON")
    }

    #[test]
    fn mutation_adds_every_missing_default_and_nothing_else() {
        let r = mutate(&request("CREATE", website(json!({"gitRepo": "https://e.com/r.git", "port": 8080}))));
        assert!(r.allowed);
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
    }

    #[test]
    fn undecodable_specs_are_admitted_unpatched_for_validation_to_explain() {
        let r = mutate(&request("CREATE", website(json!({"replicas": "three"}))));
        assert!(r.allowed);
        assert_eq!(r.patch, None);
    }

    #[test]
    fn a_missing_object_is_denied_as_malformed() {
        let mut req = request("CREATE", website(json!({"gitRepo": "https://e.com/r.git"})));
        req["request"]["object"] = Value::Null;
        let r = validate(&req);
        assert!(!r.allowed);
        assert_eq!(r.result.code, 400);
        assert!(r.result.message.contains("carries no object"));
    }

    #[test]
    fn an_update_without_the_old_object_is_denied_as_malformed_by_both() {
        let req = request("UPDATE", website(json!({"gitRepo": "https://e.com/r.git"})));
        for r in [validate(&req), mutate(&req)] {
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
        let validated = validate(&req);
        assert!(validated.allowed, "{:?}", validated.result);
        assert!(validated.warnings.is_empty());
        let mutated = mutate(&req);
        assert!(mutated.allowed, "{:?}", mutated.result);
        assert_eq!(mutated.patch, None, "an unchanged spec gets no defaults either");
    }

    /// Both webhooks admit `req`, and the mutating one adds no patch.
    fn assert_admitted_untouched(req: &Value) {
        let validated = validate(req);
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
        let r = validate(&update(stored_before_the_rules(), changed));
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
        let r = validate(&update(stored_before_the_rules(), fixed));
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
        let created = validate(&request("CREATE", named(json!({"gitRepo": "https://e.com/r.git"}))));
        assert_eq!(causes(&created)[0].0, "metadata.name");
        let old = named(json!({"gitRepo": "https://e.com/r.git"}));
        let edited = validate(&update(old, named(json!({"gitRepo": "https://e.com/other.git"}))));
        assert!(edited.allowed, "{:?}", edited.result);
    }
}
