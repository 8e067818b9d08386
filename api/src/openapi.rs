//! `/openapi/v2`: the Swagger 2.0 document the aggregator downloads and merges into the API server's, so that
//! `kubectl explain` and kubectl's client-side validation know the `v1alpha1` Website.
//!
//! The schemas are those of the CRD (`website_crd::openapi_schema`), cut to what `v1alpha1` has: `spec.gitRepo`,
//! and the same status. Object and list metadata refer to the API server's own definitions, which the merged
//! document holds.

use serde_json::{Value, json};

/// The definition name of the `v1alpha1` Website.
pub const WEBSITE_DEFINITION: &str = "com.example.extensions.v1alpha1.Website";
/// The definition name of the `v1alpha1` Website list.
pub const WEBSITE_LIST_DEFINITION: &str = "com.example.extensions.v1alpha1.WebsiteList";

fn gvk(kind: &str) -> Value {
    json!([{"group": "extensions.example.com", "version": "v1alpha1", "kind": kind}])
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/definitions/{name}")})
}

/// `schema` (OpenAPI v3, as in the CRD) as Swagger 2.0 has it: without `nullable`, which the aggregator refuses in
/// a downloaded document ("has invalid property: nullable"); a field left out reads the same to kubectl.
fn swagger2(mut schema: Value) -> Value {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("nullable");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut schema);
    schema
}

/// The `v1alpha1` Website schema: the CRD's, with `spec.gitRepo` alone in the spec.
fn website_schema() -> Value {
    let crd = swagger2(website_crd::openapi_schema());
    let git_repo = crd["properties"]["spec"]["properties"]["gitRepo"].clone();
    let status = crd["properties"]["status"].clone();
    json!({
        "description": "A static website served from a git repository (the v1alpha1 view: spec.gitRepo only; \
                        extensions.example.com/v1 has every field).",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource."},
            "metadata": reference("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": {
                "description": "The repository whose files are served.",
                "type": "object",
                "required": ["gitRepo"],
                "properties": {"gitRepo": git_repo},
            },
            "status": status,
        },
        "x-kubernetes-group-version-kind": gvk("Website"),
    })
}

fn operation(id: &str, description: &str, response: Value, verb: &str) -> Value {
    json!({
        "description": description,
        "operationId": id,
        "consumes": ["application/json", "application/merge-patch+json", "application/json-patch+json"],
        "produces": ["application/json"],
        "schemes": ["https"],
        "tags": ["extensionsExampleCom_v1alpha1"],
        "responses": {"200": {"description": "OK", "schema": response}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": "extensions.example.com", "version": "v1alpha1", "kind": "Website"},
    })
}

/// The whole document.
pub fn document() -> Value {
    let website = reference(WEBSITE_DEFINITION);
    let list = reference(WEBSITE_LIST_DEFINITION);
    let status = reference("io.k8s.apimachinery.pkg.apis.meta.v1.Status");
    let namespace = json!({"name": "namespace", "in": "path", "required": true, "type": "string",
        "uniqueItems": true, "description": "object name and auth scope, such as for teams and projects"});
    let name = json!({"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true,
        "description": "name of the Website"});
    let body = json!({"name": "body", "in": "body", "required": true, "schema": website});
    let prefix = "/apis/extensions.example.com/v1alpha1";
    json!({
        "swagger": "2.0",
        "info": {"title": "website-api", "version": "v1alpha1"},
        "paths": {
            format!("{prefix}/websites"): {
                "get": operation("listExtensionsExampleComV1alpha1WebsiteForAllNamespaces",
                    "list or watch Websites in every namespace", list.clone(), "list"),
            },
            format!("{prefix}/namespaces/{{namespace}}/websites"): {
                "get": operation("listExtensionsExampleComV1alpha1NamespacedWebsite",
                    "list or watch the Websites of a namespace", list.clone(), "list"),
                "post": operation("createExtensionsExampleComV1alpha1NamespacedWebsite", "create a Website",
                    website.clone(), "post"),
                "delete": operation("deleteExtensionsExampleComV1alpha1CollectionNamespacedWebsite",
                    "delete a collection of Websites", status.clone(), "deletecollection"),
                "parameters": [namespace.clone()],
            },
            format!("{prefix}/namespaces/{{namespace}}/websites/{{name}}"): {
                "get": operation("readExtensionsExampleComV1alpha1NamespacedWebsite", "read a Website",
                    website.clone(), "get"),
                "put": {
                    "parameters": [body],
                    "description": "replace a Website", "operationId": "replaceExtensionsExampleComV1alpha1NamespacedWebsite",
                    "responses": {"200": {"description": "OK", "schema": website.clone()}},
                    "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": {"group": "extensions.example.com", "version": "v1alpha1", "kind": "Website"},
                },
                "patch": operation("patchExtensionsExampleComV1alpha1NamespacedWebsite", "partially update a Website",
                    website.clone(), "patch"),
                "delete": operation("deleteExtensionsExampleComV1alpha1NamespacedWebsite", "delete a Website",
                    status, "delete"),
                "parameters": [name, namespace],
            },
        },
        "definitions": {
            WEBSITE_DEFINITION: website_schema(),
            WEBSITE_LIST_DEFINITION: {
                "description": "A list of Websites.",
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": reference("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"),
                    "items": {"type": "array", "items": website},
                },
                "x-kubernetes-group-version-kind": gvk("WebsiteList"),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_website_definition_has_the_gvk_and_only_git_repo_in_its_spec() {
        let doc = document();
        let website = &doc["definitions"][WEBSITE_DEFINITION];
        assert_eq!(website["x-kubernetes-group-version-kind"][0]["version"], "v1alpha1");
        let spec = website["properties"]["spec"]["properties"].as_object().expect("spec properties");
        assert_eq!(spec.keys().collect::<Vec<_>>(), ["gitRepo"]);
        assert_eq!(spec["gitRepo"]["type"], "string");
        assert!(website["properties"]["status"]["properties"].get("conditions").is_some());
    }

    #[test]
    fn nothing_of_openapi_v3_that_swagger_2_lacks_is_left() {
        let text = document().to_string();
        for v3_only in ["\"nullable\"", "\"anyOf\"", "\"oneOf\"", "\"allOf\""] {
            assert!(!text.contains(v3_only), "{v3_only} in the document");
        }
    }
}
