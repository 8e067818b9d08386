//! The checked-in CRD manifest is what the types generate, and it carries the schema rules the API server
//! enforces on its own.

use serde_json::{Value, json};

#[test]
fn checked_in_manifest_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/website-crd.yaml");
    let current = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("failed to read {path}: {e}"));
    assert!(
        current == website_crd::crd_yaml(),
        "{path} is stale: run `{}` from the workspace root",
        website_crd::REGENERATE_COMMAND
    );
}

#[test]
fn names_scope_and_subresources_match_the_api() {
    let crd = serde_json::to_value(website_crd::crd()).expect("serializes");
    assert_eq!(crd["metadata"]["name"], "websites.extensions.example.com");
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "extensions.example.com");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "Website");
    assert_eq!(spec["names"]["plural"], "websites");
    assert_eq!(spec["names"]["singular"], "website");
    assert_eq!(spec["names"]["shortNames"], json!(["ws"]));
    assert_eq!(spec["names"]["categories"], json!(["all"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| c["name"].as_str().expect("column name"))
        .collect();
    assert_eq!(columns, ["GitRepo", "Ready", "URL", "Age"]);
}

#[test]
fn schema_requires_git_repo_and_carries_types_enums_and_bounds() {
    let schema = website_crd::openapi_schema();
    let spec = &schema["properties"]["spec"];
    assert_eq!(spec["required"], json!(["gitRepo"]));
    let props = &spec["properties"];
    assert_eq!(props["gitRepo"]["type"], "string");
    assert_eq!(props["gitRepo"]["maxLength"], 2048);
    assert_eq!(props["gitRepo"]["minLength"], 1);
    assert_eq!(props["ref"]["maxLength"], 255);
    assert_eq!(props["replicas"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(props["replicas"]["maximum"].as_f64(), Some(100.0));
    assert_eq!(props["port"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(props["port"]["maximum"].as_f64(), Some(65535.0));
    assert_eq!(props["syncIntervalSeconds"]["minimum"].as_f64(), Some(5.0));
    assert_eq!(props["syncIntervalSeconds"]["maximum"].as_f64(), Some(86400.0));
    assert_eq!(props["serviceType"]["enum"], json!(["ClusterIP", "NodePort", "LoadBalancer"]));
    for field in ["gitRepo", "ref", "replicas", "serviceType", "port", "syncIntervalSeconds"] {
        let description = props[field]["description"].as_str().unwrap_or_default();
        assert!(description.len() > 20, "spec.{field} lacks a description for kubectl explain");
    }
}

#[test]
fn status_conditions_are_a_map_keyed_by_type() {
    let schema = website_crd::openapi_schema();
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    let required: Vec<&str> =
        conditions["items"]["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(required, ["lastTransitionTime", "message", "reason", "status", "type"]);
}
