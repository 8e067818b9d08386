//! Offline validation: the verdict the two webhooks give together, without a cluster.
//!
//! Each Website of a (multi-document) YAML manifest gets the defaults the API server and the mutating webhook fill
//! in (for a field left out or set to `null`), then every rule the validating webhook runs on a CREATE: the name
//! rule, the CRD's JSON schema for a spec that does not decode, and the semantic rules
//! ([`website_crd::check_spec`], the same function the webhook calls). Warnings are the webhook's warnings.
//! Documents of other kinds are skipped; a `kind: List` is read item by item.

use serde::Deserialize as _;
use serde_json::Value;
use website_crd::{GROUP, VERSION, Violation, WebsiteSpec};

/// One finding: where it is, the field and the message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The file, or `-` for standard input.
    pub file: String,
    /// The document in the file, from 1.
    pub document: usize,
    /// The Website's name, when it has one.
    pub name: Option<String>,
    /// The field, e.g. `spec.gitRepo`; empty for a problem with the document itself.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.document)?;
        if let Some(name) = &self.name {
            write!(f, " website/{name}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// What validating some manifests found.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Websites checked.
    pub checked: usize,
    /// Documents of other kinds, skipped.
    pub skipped: usize,
    /// Broken rules: the webhooks would refuse these Websites.
    pub violations: Vec<Finding>,
    /// Warnings: the webhooks would admit these Websites, and tell their author this.
    pub warnings: Vec<Finding>,
    /// Documents that are not YAML, or not objects.
    pub unreadable: Vec<Finding>,
}

impl Report {
    /// Whether every Website passed (warnings aside) and every document could be read.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty() && self.unreadable.is_empty()
    }
}

/// Validates every document of `text`, read from `file`, into `report`.
pub fn validate_text(file: &str, text: &str, report: &mut Report) {
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = |field: &str, message: String, name: Option<String>| Finding {
            file: file.to_owned(),
            document: index + 1,
            name,
            field: field.to_owned(),
            message,
        };
        match Value::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(Value::Object(object)) => validate_object(&Value::Object(object), report, &at),
            Ok(other) => report.unreadable.push(at("", format!("is not an object but {}", kind_of(&other)), None)),
            Err(error) => {
                report.unreadable.push(at("", format!("is not YAML: {error}"), None));
                // The parser cannot resume after a syntax error: the rest of the file is unread.
                break;
            }
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn validate_object(object: &Value, report: &mut Report, at: &dyn Fn(&str, String, Option<String>) -> Finding) {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    if text("/kind") == Some("List") {
        for item in object.get("items").and_then(Value::as_array).into_iter().flatten() {
            validate_object(item, report, at);
        }
        return;
    }
    let website_version = format!("{GROUP}/{VERSION}");
    if text("/kind") != Some("Website") || text("/apiVersion") != Some(website_version.as_str()) {
        report.skipped += 1;
        return;
    }
    report.checked += 1;
    let name = text("/metadata/name").map(str::to_owned);
    let mut violations: Vec<Violation> = Vec::new();
    match name.as_deref() {
        Some(name) => violations.extend(website_crd::validate_name(name)),
        None if text("/metadata/generateName").is_none() => {
            violations.push(Violation::new("metadata.name", "is required (or metadata.generateName)"));
        }
        None => {}
    }
    let spec = object.get("spec").filter(|s| !s.is_null()).map(with_defaults);
    let (spec_violations, decoded) = website_crd::check_spec(spec.as_ref());
    violations.extend(spec_violations);
    let finding = |v: Violation| at(&v.field, v.message, name.clone());
    report.violations.extend(violations.into_iter().map(finding));
    if let Some(decoded) = decoded.filter(|_| report.violations.iter().all(|v| v.name != name)) {
        for warning in website_crd::warnings(&decoded) {
            let (field, message) = warning.split_once(": ").unwrap_or(("", &warning));
            report.warnings.push(at(field, message.to_owned(), name.clone()));
        }
    }
}

/// `spec` with every defaulted field that is missing or `null` set to its default, as the API server (from the
/// CRD's schema) and the mutating webhook fill them in. A spec that is not an object is left for the schema.
pub fn with_defaults(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let Some(fields) = spec.as_object_mut() else { return spec };
    let Ok(Value::Object(defaults)) = serde_json::to_value(website_crd::defaults(&WebsiteSpec::new(""))) else {
        return spec;
    };
    for (field, value) in defaults {
        if field != "gitRepo" && fields.get(&field).is_none_or(Value::is_null) {
            fields.insert(field, value);
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(text: &str) -> Report {
        let mut report = Report::default();
        validate_text("site.yaml", text, &mut report);
        report
    }

    #[test]
    fn reads_every_document_and_names_file_document_and_field() {
        let r = report(
            "apiVersion: extensions.example.com/v1\nkind: Website\nmetadata: {name: good}\n\
             spec: {gitRepo: https://github.com/luksa/kubia-website-example.git}\n\
             ---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n\
             ---\n\
             apiVersion: extensions.example.com/v1\nkind: Website\nmetadata: {name: bad}\n\
             spec: {gitRepo: 'file:///etc', replicas: 0}\n",
        );
        assert_eq!((r.checked, r.skipped), (2, 1));
        let found: Vec<String> = r.violations.iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("site.yaml:3 website/bad: spec.gitRepo: local paths are not supported"),
            "{found:?}"
        );
        assert_eq!(found[1], "site.yaml:3 website/bad: spec.replicas: must be between 1 and 100, got 0");
        assert!(!r.is_valid());
    }

    #[test]
    fn defaults_fill_what_is_missing_or_null_before_the_rules_run() {
        let spec = serde_json::json!({"gitRepo": "https://e.com/r.git", "replicas": null, "port": 8080});
        assert_eq!(
            with_defaults(&spec),
            serde_json::json!({"gitRepo": "https://e.com/r.git", "ref": "HEAD", "replicas": 1,
                "serviceType": "ClusterIP", "port": 8080, "syncIntervalSeconds": 60})
        );
        let r = report(
            "apiVersion: extensions.example.com/v1\nkind: Website\nmetadata: {name: nulls}\n\
             spec: {gitRepo: 'https://e.com/r.git', ref: null, replicas: null}\n",
        );
        assert!(r.is_valid(), "{:?}", r.violations);
    }

    #[test]
    fn warnings_do_not_fail_and_lists_are_read_item_by_item() {
        let r = report(
            "apiVersion: v1\nkind: List\nitems:\n\
             - apiVersion: extensions.example.com/v1\n  kind: Website\n  metadata: {name: plain}\n\
             \x20 spec: {gitRepo: 'http://git.example.com/site.git'}\n",
        );
        assert_eq!(r.checked, 1);
        assert!(r.is_valid());
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].field, "spec.gitRepo");
        assert!(r.warnings[0].message.contains("without encryption"), "{:?}", r.warnings);
    }

    #[test]
    fn unreadable_documents_are_reported_apart_from_invalid_websites() {
        let r = report("apiVersion: v1\nkind: [unclosed\n");
        assert_eq!(r.unreadable.len(), 1);
        assert!(r.unreadable[0].message.starts_with("is not YAML"), "{:?}", r.unreadable);
        let r = report("- just\n- a list\n");
        assert_eq!(r.unreadable[0].message, "is not an object but a list");
        let r = report("apiVersion: extensions.example.com/v1\nkind: Website\nspec: {gitRepo: 'https://e.com/r'}\n");
        assert_eq!(r.violations[0].field, "metadata.name");
        let r = report("apiVersion: extensions.example.com/v1\nkind: Website\nmetadata: {name: nospec}\n");
        assert_eq!(r.violations[0].to_string(), "site.yaml:1 website/nospec: spec: is required");
    }
}
