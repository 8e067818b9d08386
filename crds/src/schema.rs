//! The CRD's OpenAPI v3 schema, enforced with the `jsonschema` crate, and [`check_spec`]: every rule a spec in
//! JSON form breaks, which the webhook and any other client run alike.
//!
//! Objects are checked against the schema of the CRD this build generates, so an older CRD still installed in the
//! cluster cannot let through what the current rules refuse.

use std::sync::OnceLock;

use jsonschema::JsonType;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde::Deserialize as _;
use serde_json::Value;

use crate::types::{GIT_REPO_MAX_LEN, WebsiteSpec};
use crate::validation::Violation;

/// A compiled schema that reports violations with Kubernetes-style field paths.
#[derive(Debug)]
pub struct SchemaValidator {
    validator: jsonschema::Validator,
}

/// Every rule `spec` (the JSON of a Website's `spec`, `None` when it has none) breaks, in field order, and the typed
/// spec when it decodes.
///
/// A spec that decodes as a [`WebsiteSpec`] is checked by the semantic rules ([`crate::validate`]), which cover
/// every constraint of the CRD's schema (types, required fields, enums, bounds; a test holds them to it) and say
/// more. Only a spec that does not decode goes through the JSON schema, whose messages then explain why, together
/// with the `spec.gitRepo` rules when it is a string.
pub fn check_spec(spec: Option<&Value>) -> (Vec<crate::Violation>, Option<WebsiteSpec>) {
    if let Some(value) = spec
        && let Ok(decoded) = WebsiteSpec::deserialize(value)
    {
        return (crate::validate(&decoded), Some(decoded));
    }
    (explain_undecodable(spec), None)
}

/// [`check_spec`] of a spec given as JSON text (`None`: no spec), decoded straight into a [`WebsiteSpec`]: the
/// text is read as a JSON value only when it does not decode, for the schema to say why.
pub fn check_spec_json(spec: Option<&str>) -> (Vec<crate::Violation>, Option<WebsiteSpec>) {
    let Some(text) = spec else {
        return (explain_undecodable(None), None);
    };
    if let Ok(decoded) = serde_json::from_str::<WebsiteSpec>(text) {
        return (crate::validate(&decoded), Some(decoded));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => (explain_undecodable(Some(&value)), None),
        Err(error) => (vec![crate::Violation::new("spec", format!("is not JSON: {error}"))], None),
    }
}

/// Every violation of a spec that does not decode: the schema's, and those of the string rules.
fn explain_undecodable(spec: Option<&Value>) -> Vec<crate::Violation> {
    let object = match spec {
        Some(spec) => serde_json::json!({ "spec": spec }),
        None => serde_json::json!({}),
    };
    let mut violations = SchemaValidator::website().violations(&object);
    // The rules for the string fields still apply, whatever is wrong elsewhere.
    let text = |field: &str| spec.and_then(|s| s.get(field)).and_then(Value::as_str);
    let partial = WebsiteSpec {
        git_ref: text("ref").map(str::to_owned),
        ..WebsiteSpec::new(text("gitRepo").unwrap_or("https://example.com/placeholder.git"))
    };
    for v in crate::validate(&partial) {
        let applies = (v.field == "spec.gitRepo" && text("gitRepo").is_some()) || v.field == "spec.ref";
        if applies && !violations.iter().any(|s| s.field == v.field) {
            violations.push(v);
        }
    }
    if violations.is_empty() {
        // Valid for the schema, yet not a spec: e.g. a number the schema counts as an integer but that does not
        // fit one. Never admit what cannot be decoded.
        violations.push(crate::Violation::new(
            "spec",
            "does not decode as a Website spec; accepted: the fields of `kubectl explain website.spec`, with \
             integers written without a fraction",
        ));
    }
    violations.sort_by_key(|v| field_rank(&v.field));
    violations
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

impl SchemaValidator {
    /// The schema of `Website` objects, compiled once.
    pub fn website() -> &'static Self {
        static SCHEMA: OnceLock<SchemaValidator> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let schema = to_json_schema(crate::openapi_schema());
            let validator =
                jsonschema::validator_for(&schema).expect("the generated CRD schema is a valid JSON schema");
            Self { validator }
        })
    }

    /// Every place where `instance` breaks the schema.
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(instance)
            .map(|error| {
                let path = field_path(error.instance_path().as_str());
                match error.kind() {
                    ValidationErrorKind::Required { property } => {
                        let property = property.as_str().unwrap_or_default();
                        let field = if path.is_empty() { property.to_owned() } else { format!("{path}.{property}") };
                        let hint = if field == "spec.gitRepo" {
                            format!(
                                "; accepted: the URL of a remote git repository, at most {GIT_REPO_MAX_LEN} characters"
                            )
                        } else {
                            String::new()
                        };
                        Violation::new(field, format!("is required{hint}"))
                    }
                    kind => {
                        let field = if path.is_empty() { "object".to_owned() } else { path };
                        // `masked` leaves the offending value out: it may be long, and it is the author's own input.
                        let message = describe(kind).unwrap_or_else(|| error.masked().to_string());
                        Violation::new(field, message)
                    }
                }
            })
            .collect()
    }
}

/// Messages in the words the semantic rules use, for the keywords a Website's schema has.
fn describe(kind: &ValidationErrorKind) -> Option<String> {
    let number = |v: &Value| v.as_f64().map(|f| if f.fract() == 0.0 { format!("{f:.0}") } else { f.to_string() });
    Some(match kind {
        ValidationErrorKind::Type { kind } => {
            let types: Vec<String> = match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(set) => {
                    set.into_iter().filter(|t| *t != JsonType::Null).map(|t| t.to_string()).collect()
                }
            };
            format!("must be of type {}", types.join(" or "))
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<&str> = options.as_array()?.iter().filter_map(Value::as_str).collect();
            format!("must be one of {}", options.join(", "))
        }
        ValidationErrorKind::Minimum { limit } => format!("must be at least {}", number(limit)?),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {}", number(limit)?),
        ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters long"),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters long"),
        _ => return None,
    })
}

/// `/spec/replicas` → `spec.replicas`; `/status/conditions/0/type` → `status.conditions[0].type`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// OpenAPI v3's `nullable: true` becomes JSON Schema's `"type": [T, "null"]`; everything else carries over
/// (unknown `x-kubernetes-*` keywords are ignored by JSON Schema).
fn to_json_schema(mut schema: Value) -> Value {
    fn walk(node: &mut Value) {
        match node {
            Value::Object(map) => {
                if map.remove("nullable") == Some(Value::Bool(true))
                    && let Some(Value::String(t)) = map.get("type").cloned()
                {
                    map.insert("type".into(), serde_json::json!([t, "null"]));
                    if let Some(Value::Array(values)) = map.get_mut("enum") {
                        values.push(Value::Null);
                    }
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn violations(spec: Value) -> Vec<(String, String)> {
        let object = json!({"apiVersion": "extensions.example.com/v1", "kind": "Website", "metadata": {"name": "a"}, "spec": spec});
        SchemaValidator::website().violations(&object).into_iter().map(|v| (v.field, v.message)).collect()
    }

    #[test]
    fn accepts_a_valid_spec_and_explicit_nulls() {
        assert_eq!(violations(json!({"gitRepo": "https://e.com/r.git"})), vec![]);
        assert_eq!(
            violations(json!({"gitRepo": "https://e.com/r.git", "replicas": null, "serviceType": null})),
            vec![]
        );
    }

    #[test]
    fn reports_types_bounds_and_enums_with_field_paths() {
        let got = violations(json!({"gitRepo": 7, "replicas": 101, "serviceType": "Internal", "port": 0}));
        assert_eq!(
            got,
            vec![
                ("spec.gitRepo".into(), "must be of type string".into()),
                ("spec.port".into(), "must be at least 1".into()),
                ("spec.replicas".into(), "must be at most 100".into()),
                ("spec.serviceType".into(), "must be one of ClusterIP, NodePort, LoadBalancer".into()),
            ]
        );
    }

    #[test]
    fn reports_a_missing_git_repo_as_required() {
        assert_eq!(
            violations(json!({"replicas": 1})),
            vec![(
                "spec.gitRepo".into(),
                "is required; accepted: the URL of a remote git repository, at most 2048 characters".into()
            )]
        );
    }

    #[test]
    fn reports_a_missing_spec() {
        let v = SchemaValidator::website().violations(&json!({"metadata": {"name": "a"}}));
        assert_eq!(v, vec![Violation::new("spec", "is required")]);
    }

    #[test]
    fn a_spec_that_does_not_decode_is_explained_by_the_schema_and_the_git_repo_rules() {
        let (v, spec) =
            check_spec(Some(&json!({"gitRepo": "ftp://x/y", "replicas": "three", "serviceType": "Internal"})));
        assert!(spec.is_none());
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["spec.gitRepo", "spec.replicas", "spec.serviceType"]);
        assert!(v[0].message.starts_with("scheme \"ftp://\" is not supported"), "{}", v[0].message);
        assert_eq!(v[1].message, "must be of type integer");
        let (v, _) = check_spec(None);
        assert_eq!(v, vec![Violation::new("spec", "is required")]);
    }

    #[test]
    fn a_spec_the_schema_accepts_but_that_does_not_decode_is_still_refused_with_its_string_rules() {
        // The schema counts 300.0 as an integer; a Website spec does not.
        let spec = json!({"gitRepo": "git@github.com:luksa/site.git", "ref": "@", "syncIntervalSeconds": 300.0});
        let (v, decoded) = check_spec(Some(&spec));
        assert!(decoded.is_none());
        assert_eq!(v.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), ["spec.ref"]);
        let (v, _) = check_spec(Some(&json!({"gitRepo": "https://e.com/r.git", "port": 80.0})));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "spec");
        assert!(v[0].message.starts_with("does not decode as a Website spec"), "{}", v[0].message);
    }

    #[test]
    fn a_spec_that_decodes_gets_the_semantic_rules() {
        let (v, spec) = check_spec(Some(&json!({"gitRepo": "https://e.com/r.git", "replicas": 0})));
        assert_eq!(spec.map(|s| s.replicas), Some(Some(0)));
        assert_eq!(v, vec![Violation::new("spec.replicas", "must be between 1 and 100, got 0")]);
    }

    #[test]
    fn a_spec_as_json_text_is_judged_as_the_same_spec_as_a_value() {
        let specs = [
            json!({"gitRepo": "https://e.com/r.git"}),
            json!({"gitRepo": "https://e.com/r.git", "replicas": 0, "ref": null}),
            json!({"gitRepo": "ftp://x/y", "replicas": "three", "serviceType": "Internal"}),
            json!({"gitRepo": "git@github.com:luksa/site.git", "ref": "@", "syncIntervalSeconds": 300.0}),
            json!({"replicas": 2}),
            json!("a string"),
            json!([1, 2]),
        ];
        for spec in specs {
            let text = spec.to_string();
            assert_eq!(check_spec_json(Some(&text)), check_spec(Some(&spec)), "{text}");
        }
        assert_eq!(check_spec_json(None), check_spec(None));
        let (v, decoded) = check_spec_json(Some("{\"gitRepo\": "));
        assert!(decoded.is_none());
        assert_eq!(v[0].field, "spec");
        assert!(v[0].message.starts_with("is not JSON: "), "{}", v[0].message);
    }

    #[test]
    fn field_paths_read_like_kubectl_paths() {
        assert_eq!(field_path(""), "");
        assert_eq!(field_path("/spec/replicas"), "spec.replicas");
        assert_eq!(field_path("/status/conditions/0/type"), "status.conditions[0].type");
        assert_eq!(field_path("/metadata/labels/a~1b"), "metadata.labels.a/b");
    }
}
