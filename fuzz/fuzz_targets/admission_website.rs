//! Structure-aware: `AdmissionReview`s of `Website` objects whose fields the fuzzer picks (typical values, values
//! at and past each bound, other strings and numbers, `null`, missing), on CREATE, UPDATE (with an `oldObject`
//! whose spec may or may not differ), DELETE and CONNECT, for a `Website` or for another kind.
//!
//! Properties, beyond "nothing panics":
//! - mutate's patch applies to the object as sent; it only adds spec fields that are missing or `null`; and it is
//!   idempotent: mutating the patched object gives no patch;
//! - when validate admits a request it judges (a `Website` CREATE, or an UPDATE that changes `spec`, of an object
//!   that is not being deleted), the spec decodes, and `website_crd::validate` of the defaulted spec is empty;
//! - every other well-formed request (another kind, DELETE or CONNECT, an object being deleted, an UPDATE that
//!   leaves `spec` as it was) is admitted by validate and gets no patch from mutate, as the webhook documents;
//! - both answers carry the request's uid.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use website_crd::{GROUP, WebsiteSpec};
use website_webhook::admission::{Judgement, Request, mutate, validate};
use website_webhook::server::parse_review;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

/// One JSON value for a field, or the field left out.
#[derive(Arbitrary, Debug, Clone)]
enum Field {
    Missing,
    Null,
    /// One of the field's typical values: valid, at a bound, or just past one, or of another type.
    Typical(u8),
    /// A typical value followed by fuzzer-chosen text (a string value when the typical one is not a string).
    Extended(u8, String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    EmptyObject,
    Array(Vec<u8>),
}

impl Field {
    fn value(&self, typical: &[Value]) -> Option<Value> {
        let pick = |i: &u8| typical[usize::from(*i) % typical.len()].clone();
        Some(match self {
            Self::Missing => return None,
            Self::Null => Value::Null,
            Self::Typical(i) => pick(i),
            Self::Extended(i, tail) => match pick(i) {
                Value::String(head) => Value::String(head + tail),
                _ => Value::String(tail.clone()),
            },
            Self::Str(s) => Value::String(s.clone()),
            Self::Int(n) => Value::from(*n),
            Self::Float(f) => api_server_number(*f),
            Self::Bool(b) => Value::Bool(*b),
            Self::EmptyObject => json!({}),
            Self::Array(items) => Value::from(items.clone()),
        })
    }
}

/// A number as kube-apiserver sends it: it decodes a request into Go values and encodes them again for the
/// webhook, and Go writes a whole float64 without a fraction (`300.0` arrives as `300`).
fn api_server_number(f: f64) -> Value {
    // Whole numbers within ±2^63, where the cast is exact.
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        #[allow(clippy::cast_possible_truncation, reason = "whole and within range")]
        return Value::from(f as i64);
    }
    Value::from(f)
}

#[derive(Arbitrary, Debug, Clone)]
struct SpecFields {
    git_repo: Field,
    git_ref: Field,
    replicas: Field,
    service_type: Field,
    port: Field,
    sync_interval_seconds: Field,
    /// A field the schema does not know.
    unknown: Option<(String, Field)>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Spec {
    Missing,
    NotAnObject(Field),
    Fields(Box<SpecFields>),
}

/// `metadata.name`: a string, `null` or missing; any other type makes no object the webhook can read.
#[derive(Arbitrary, Debug, Clone)]
enum Name {
    Missing,
    Null,
    Typical(u8),
    Extended(u8, String),
    Str(String),
}

impl Name {
    fn field(&self) -> Field {
        match self {
            Self::Missing => Field::Missing,
            Self::Null => Field::Null,
            Self::Typical(i) => Field::Typical(*i),
            Self::Extended(i, tail) => Field::Extended(*i, tail.clone()),
            Self::Str(s) => Field::Str(s.clone()),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct Metadata {
    name: Name,
    /// Set `metadata.deletionTimestamp`.
    deleting: bool,
    /// A label, so that an UPDATE can change metadata only.
    label: Option<String>,
}

#[derive(Arbitrary, Debug, Clone)]
struct Object {
    metadata: Metadata,
    spec: Spec,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Kind {
    Website,
    WebsiteOfAnotherGroup,
    Pod,
}

#[derive(Arbitrary, Debug, Clone)]
enum Old {
    /// No `oldObject`.
    Absent,
    /// The new object's spec, with its own metadata.
    SameSpec(Metadata),
    Other(Box<Object>),
}

#[derive(Arbitrary, Debug, Clone)]
struct Input {
    operation: Operation,
    kind: Kind,
    /// `None` sends `"object": null`.
    object: Option<Object>,
    old: Old,
    dry_run: bool,
}

fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|s| Value::from(*s)).collect()
}

static GIT_REPOS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut repos = strings(&[
        "https://github.com/luksa/kubia-website-example.git",
        "http://github.com/luksa/kubia-website-example.git",
        "ssh://git@example.com:2222/org/repo.git",
        "git://example.com/repo.git",
        "git@github.com:luksa/site.git",
        "https://[2001:db8::1]/repo.git",
        "https://10.0.0.7/repo.git",
        "https://example.com/",
        "file:///etc",
        "/srv/site",
        "ext::sh -c touch% /tmp/x",
        "https://user:secret@example.com/r.git",
        "https://ghp_abc@github.com/r.git",
        "https://127.0.0.1/r.git",
        "-oProxyCommand=evil@host:path",
        "HTTPS://example.com/r.git",
        "",
    ]);
    repos.push(Value::from(format!("https://example.com/{}", "a".repeat(website_crd::GIT_REPO_MAX_LEN))));
    repos.push(json!(7));
    repos
});

static REFS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut refs = strings(&["HEAD", "main", "v1.2.3", "refs/heads/main", "-x", "a..b", "@", "a.lock", "a/", ""]);
    refs.push(Value::from("r".repeat(website_crd::REF_MAX_LEN + 1)));
    refs
});

static SERVICE_TYPES: LazyLock<Vec<Value>> =
    LazyLock::new(|| strings(&["ClusterIP", "NodePort", "LoadBalancer", "clusterip", "ExternalName", ""]));

static NAMES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut names = strings(&["kubia", "kubia-full", "a", "My.Site", "a-", "1abc", ""]);
    names.push(Value::from("a".repeat(website_crd::NAME_MAX_LEN)));
    names.push(Value::from("a".repeat(website_crd::NAME_MAX_LEN + 1)));
    names
});

/// The bounds of a range, one past each, zero, a negative number, the i32 edges, a fraction and a string.
fn numbers(range: std::ops::RangeInclusive<i32>, usual: i32) -> Vec<Value> {
    let (lo, hi) = (i64::from(*range.start()), i64::from(*range.end()));
    let mut values: Vec<Value> =
        [i64::from(usual), lo, hi, lo - 1, hi + 1, 0, -1, i64::from(i32::MAX) + 1, i64::from(i32::MIN)]
            .into_iter()
            .map(Value::from)
            .collect();
    values.extend([json!(f64::from(usual) + 0.5), json!(usual.to_string())]);
    values
}

static REPLICAS: LazyLock<Vec<Value>> = LazyLock::new(|| numbers(website_crd::REPLICAS_RANGE, 3));
static PORTS: LazyLock<Vec<Value>> = LazyLock::new(|| numbers(website_crd::PORT_RANGE, 8080));
static SYNC_INTERVALS: LazyLock<Vec<Value>> = LazyLock::new(|| numbers(website_crd::SYNC_INTERVAL_RANGE, 300));

fn insert(map: &mut Map<String, Value>, key: &str, field: &Field, typical: &[Value]) {
    if let Some(value) = field.value(typical) {
        map.insert(key.to_owned(), value);
    }
}

fn spec_json(spec: &Spec) -> Option<Value> {
    match spec {
        Spec::Missing => None,
        Spec::NotAnObject(field) => field.value(&GIT_REPOS),
        Spec::Fields(f) => {
            let mut map = Map::new();
            insert(&mut map, "gitRepo", &f.git_repo, &GIT_REPOS);
            insert(&mut map, "ref", &f.git_ref, &REFS);
            insert(&mut map, "replicas", &f.replicas, &REPLICAS);
            insert(&mut map, "serviceType", &f.service_type, &SERVICE_TYPES);
            insert(&mut map, "port", &f.port, &PORTS);
            insert(&mut map, "syncIntervalSeconds", &f.sync_interval_seconds, &SYNC_INTERVALS);
            if let Some((key, field)) = &f.unknown {
                insert(&mut map, key, field, &REFS);
            }
            Some(Value::Object(map))
        }
    }
}

fn object_json(meta: &Metadata, spec: Option<Value>, kind: Kind) -> Value {
    let mut metadata = Map::new();
    insert(&mut metadata, "name", &meta.name.field(), &NAMES);
    metadata.insert("namespace".into(), "default".into());
    if meta.deleting {
        metadata.insert("deletionTimestamp".into(), "2024-01-01T00:00:00Z".into());
    }
    if let Some(label) = &meta.label {
        metadata.insert("labels".into(), json!({ "fuzz": label }));
    }
    let (api_version, kind) = match kind {
        Kind::Website | Kind::WebsiteOfAnotherGroup => (format!("{GROUP}/v1"), "Website"),
        Kind::Pod => ("v1".to_owned(), "Pod"),
    };
    let mut object = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    if let Some(spec) = spec {
        object["spec"] = spec;
    }
    object
}

fn review(input: &Input) -> Value {
    let object = input.object.as_ref().map(|o| object_json(&o.metadata, spec_json(&o.spec), input.kind));
    let old = match &input.old {
        Old::Absent => Value::Null,
        Old::SameSpec(metadata) => {
            let spec = object.as_ref().and_then(|o| o.get("spec").cloned());
            object_json(metadata, spec, input.kind)
        }
        Old::Other(o) => object_json(&o.metadata, spec_json(&o.spec), input.kind),
    };
    let (group, kind, resource) = match input.kind {
        Kind::Website => (GROUP, "Website", "websites"),
        Kind::WebsiteOfAnotherGroup => ("example.org", "Website", "websites"),
        Kind::Pod => ("", "Pod", "pods"),
    };
    let name = object.as_ref().and_then(|o| o.pointer("/metadata/name")).and_then(Value::as_str).unwrap_or("");
    let operation = match input.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": name,
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "fuzz"},
            "object": object,
            "oldObject": old,
            "dryRun": input.dry_run
        }
    })
}

fn body(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("a serde_json::Value always serializes")
}

/// What the webhook's documentation says becomes of a request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Treatment {
    /// A `Website` CREATE, or an UPDATE that changes `spec`, of an object that is not being deleted: judged.
    Judged,
    /// Another kind, another operation, an object being deleted, an UPDATE that leaves `spec` as it was:
    /// admitted untouched.
    Untouched,
    /// A CREATE or UPDATE without an object, or an UPDATE without the old one: denied as malformed.
    Malformed,
}

fn treatment(input: &Input, review: &Value) -> Treatment {
    let object = &review["request"]["object"];
    let old = &review["request"]["oldObject"];
    let spec = |o: &Value| o.get("spec").cloned().unwrap_or(Value::Null);
    if input.kind != Kind::Website || matches!(input.operation, Operation::Delete | Operation::Connect) {
        return Treatment::Untouched;
    }
    if !object.is_object() {
        return Treatment::Malformed;
    }
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Treatment::Untouched;
    }
    match input.operation {
        Operation::Update if !old.is_object() => Treatment::Malformed,
        Operation::Update if spec(old) == spec(object) => Treatment::Untouched,
        _ => Treatment::Judged,
    }
}

fn check_validate(treatment: Treatment, review: &Value, request: &Request<'_>) {
    assert_eq!(request.uid, UID, "the parsed request carries the review's uid");
    let response = match validate(request) {
        Judgement::Final(verdict) => verdict,
        Judgement::IfPermitted { verdict, access } => {
            // Only a judged spec with credentials waits for an access check, and it is about the Secret named.
            assert_eq!(treatment, Treatment::Judged, "an access check for a request admitted untouched");
            let secret = review.pointer("/request/object/spec/credentials/secretName").and_then(Value::as_str);
            assert_eq!(Some(access.secret.as_str()), secret, "the access check names another Secret");
            verdict
        }
    };
    match treatment {
        Treatment::Untouched => assert!(response.allowed, "validate denied what it admits untouched: {response:?}"),
        Treatment::Malformed => assert!(!response.allowed, "validate admitted a malformed request: {response:?}"),
        Treatment::Judged => {}
    }
    if !response.allowed || treatment != Treatment::Judged {
        return;
    }
    let spec = review["request"]["object"]["spec"].clone();
    let spec: WebsiteSpec = match serde_json::from_value(spec.clone()) {
        Ok(spec) => spec,
        Err(e) => panic!("validate admitted a spec that does not decode ({e}): {spec}"),
    };
    let violations = website_crd::validate(&website_crd::defaults(&spec));
    assert!(violations.is_empty(), "validate admitted {spec:?}, whose defaulted spec breaks {violations:?}");
}

fn check_mutate(treatment: Treatment, review: &Value, request: &Request<'_>) {
    let response = mutate(request);
    let Some(patch) = &response.patch else {
        return;
    };
    assert_eq!(treatment, Treatment::Judged, "mutate patched what it admits untouched: {response:?}");
    assert!(response.allowed, "mutate denied with a patch: {:?}", response.result);
    let patch: json_patch::Patch = serde_json::from_slice(patch).expect("mutate's patch is a JSON Patch");

    let original = &review["request"]["object"];
    for op in &patch.0 {
        let (verb, pointer) = match op {
            json_patch::PatchOperation::Add(op) => ("add", op.path.to_string()),
            json_patch::PatchOperation::Replace(op) => ("replace", op.path.to_string()),
            other => panic!("mutate's patch has an operation other than add or replace: {other:?}"),
        };
        assert!(pointer.starts_with("/spec/") && pointer.matches('/').count() == 2, "mutate patches {pointer}");
        let before = original.pointer(&pointer);
        assert!(before.is_none_or(Value::is_null), "mutate's {verb} of {pointer} changes the set value {before:?}");
    }

    let mut patched = original.clone();
    if let Err(e) = json_patch::patch(&mut patched, &patch) {
        panic!("mutate's patch {patch:?} does not apply to the object ({e}): {original}");
    }
    let mut again = review.clone();
    again["request"]["object"] = patched;
    let again_body = body(&again);
    let request = parse_review(&again_body).expect("the patched object makes a well-formed review");
    let second = mutate(&request);
    assert!(second.allowed, "mutate denied the patched object: {:?}", second.result);
    if let Some(patch) = second.patch {
        panic!(
            "mutate is not idempotent: the patched object {} gets another patch {}",
            again["request"]["object"],
            String::from_utf8_lossy(&patch)
        );
    }
}

fuzz_target!(|input: Input| {
    let review = review(&input);
    let bytes = body(&review);
    let request = match parse_review(&bytes) {
        Ok(request) => request,
        Err(e) => panic!("parse_review refused a well-formed review ({e}): {review}"),
    };
    let treatment = treatment(&input, &review);
    check_validate(treatment, &review, &request);
    check_mutate(treatment, &review, &request);
});
