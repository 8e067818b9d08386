//! The CRD's OpenAPI v3 schema, enforced with the `jsonschema` crate.
//!
//! The webhook checks objects against the schema of the CRD this build generates, so an older CRD still
//! installed in the cluster cannot let through what the current rules refuse.

use jsonschema::JsonType;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;
use website_crd::{GIT_REPO_MAX_LEN, Violation};

/// A compiled schema that reports violations with Kubernetes-style field paths.
#[derive(Debug)]
pub struct SchemaValidator {
    validator: jsonschema::Validator,
}

impl SchemaValidator {
    /// The schema of `Website` objects.
    pub fn website() -> Self {
        let schema = to_json_schema(website_crd::openapi_schema());
        let validator = jsonschema::validator_for(&schema).expect("the generated CRD schema is a valid JSON schema");
        Self { validator }
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
    fn field_paths_read_like_kubectl_paths() {
        assert_eq!(field_path(""), "");
        assert_eq!(field_path("/spec/replicas"), "spec.replicas");
        assert_eq!(field_path("/status/conditions/0/type"), "status.conditions[0].type");
        assert_eq!(field_path("/metadata/labels/a~1b"), "metadata.labels.a/b");
    }
}
