//! The admission routes driven in-process: every AdmissionReview is answered with HTTP 200 and an
//! AdmissionReview carrying the verdict; only bodies that are not AdmissionReviews get a 4xx saying why.

mod support;

use actix_web::http::{Method, StatusCode};
use actix_web::{App, test};
use base64::Engine as _;
use serde_json::{Value, json};
use std::time::Duration;
use support::{UID, body, create, review, website};

use website_webhook::capacity::Limits;
use website_webhook::server::{admission_routes, app_data, metrics_routes};

/// The binary's default limit.
const DEFAULT_LIMIT: usize = 3 * 1024 * 1024 + 64 * 1024;

/// Status, `Content-Type` and body of one request to an app built with a `limit`-byte body limit.
async fn call(limit: usize, method: Method, path: &str, payload: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
    let limits = Limits { max_body_bytes: limit, max_inflight_bytes: 16 << 20, body_timeout: Duration::from_secs(3) };
    let app = test::init_service(App::new().app_data(app_data(limits)).configure(admission_routes)).await;
    let request = test::TestRequest::default()
        .method(method)
        .uri(path)
        .insert_header(("content-type", "application/json"))
        .set_payload(payload)
        .to_request();
    let response = test::call_service(&app, request).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("an ASCII content type").to_owned())
        .unwrap_or_default();
    let bytes = test::read_body(response).await;
    (status, content_type, bytes.to_vec())
}

/// Posts `review` to `path` and returns the `response` of the AdmissionReview that comes back, after
/// checking the envelope every answer must have.
async fn answer(path: &str, review: &Value) -> Value {
    let (status, content_type, bytes) = call(DEFAULT_LIMIT, Method::POST, path, body(review)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type, "application/json", "{text}");
    let answered: Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
    assert_eq!(answered["apiVersion"], "admission.k8s.io/v1", "{answered:#}");
    assert_eq!(answered["kind"], "AdmissionReview", "{answered:#}");
    let response = answered["response"].clone();
    assert_eq!(response["uid"], UID, "{answered:#}");
    response
}

/// The bytes of a mutate response's `patch`. The admission API documents them as a base64 string (Go's
/// encoding of `[]byte`); kube-core 5 serializes `AdmissionResponse::patch` (a `Vec<u8>`) as an array of
/// numbers instead (kube-rs/kube#1781), which Go's `encoding/json` also decodes into `[]byte`. Both are
/// accepted here; [`mutate_patch_is_a_base64_string_as_the_admission_api_documents`] pins the documented form.
fn patch_bytes(response: &Value) -> Vec<u8> {
    assert_eq!(response["patchType"], "JSONPatch", "{response:#}");
    let encoded = response["patch"].as_str().unwrap_or_else(|| panic!("patch is not a base64 string: {response:#}"));
    base64::engine::general_purpose::STANDARD.decode(encoded).expect("patch is standard base64")
}

/// The decoded JSON patch of a mutate response, its operations sorted by path.
fn sorted_patch(response: &Value) -> Vec<Value> {
    let patch: Value = serde_json::from_slice(&patch_bytes(response)).expect("the decoded patch is JSON");
    let mut ops = patch.as_array().expect("a JSON patch is an array").clone();
    ops.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    ops
}

#[actix_web::test]
async fn admits_a_valid_website_create_and_echoes_the_uid() {
    let response =
        answer("/validate", &create(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"}))).await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert!(response.get("warnings").is_none(), "{response:#}");
    assert!(response.get("patch").is_none(), "{response:#}");
}

#[actix_web::test]
async fn denies_a_local_file_repository_with_422_naming_spec_git_repo() {
    let response = answer("/validate", &create(json!({"gitRepo": "file:///etc"}))).await;
    assert_eq!(response["allowed"], false, "{response:#}");
    let status = &response["status"];
    assert_eq!(status["code"], 422, "{status:#}");
    assert_eq!(status["reason"], "Invalid", "{status:#}");
    let message = status["message"].as_str().expect("a message");
    assert!(message.starts_with("spec.gitRepo: "), "{message}");
    assert!(message.contains("local paths are not supported"), "{message}");
    let causes = status["details"]["causes"].as_array().expect("causes");
    assert_eq!(causes.len(), 1, "{causes:#?}");
    assert_eq!(causes[0]["field"], "spec.gitRepo", "{causes:#?}");
    assert_eq!(causes[0]["reason"], "FieldValueInvalid", "{causes:#?}");
    assert_eq!(status["details"]["name"], "kubia", "{status:#}");
    assert_eq!(status["details"]["kind"], "Website", "{status:#}");
}

#[actix_web::test]
async fn admits_an_http_repository_with_a_warning() {
    let response = answer("/validate", &create(json!({"gitRepo": "http://git.example.com/site.git"}))).await;
    assert_eq!(response["allowed"], true, "{response:#}");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = warnings[0].as_str().expect("a string");
    assert!(
        warning.starts_with("spec.gitRepo: http://git.example.com/site.git is fetched without encryption"),
        "{warning}"
    );
}

#[actix_web::test]
async fn mutate_adds_every_missing_default_as_a_json_patch() {
    let response = answer("/mutate", &create(json!({"gitRepo": "https://example.com/site.git"}))).await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert_eq!(
        sorted_patch(&response),
        vec![
            json!({"op": "add", "path": "/spec/port", "value": 80}),
            json!({"op": "add", "path": "/spec/ref", "value": "HEAD"}),
            json!({"op": "add", "path": "/spec/replicas", "value": 1}),
            json!({"op": "add", "path": "/spec/serviceType", "value": "ClusterIP"}),
            json!({"op": "add", "path": "/spec/syncIntervalSeconds", "value": 60}),
        ]
    );
}

#[actix_web::test]
async fn mutate_patch_is_a_base64_string_as_the_admission_api_documents() {
    let response = answer("/mutate", &create(json!({"gitRepo": "https://example.com/site.git"}))).await;
    let encoded = response["patch"].as_str().unwrap_or_else(|| panic!("patch is not a string: {response:#}"));
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("patch is standard base64");
    assert_eq!(decoded, patch_bytes(&response));
}

#[actix_web::test]
async fn mutate_leaves_a_fully_specified_website_unpatched() {
    let spec = json!({
        "gitRepo": "https://example.com/site.git", "ref": "main", "replicas": 2,
        "serviceType": "NodePort", "port": 8080, "syncIntervalSeconds": 30
    });
    let response = answer("/mutate", &review("UPDATE", website(spec.clone()), website(spec))).await;
    assert_eq!(response["allowed"], true, "{response:#}");
    assert!(response.get("patch").is_none(), "{response:#}");
    assert!(response.get("patchType").is_none(), "{response:#}");
}

#[actix_web::test]
async fn admits_a_delete_on_both_routes_without_judging_or_patching() {
    // On DELETE the API server sends the stored object as oldObject and null as object.
    let delete = review("DELETE", Value::Null, website(json!({"gitRepo": "file:///etc"})));
    let validated = answer("/validate", &delete).await;
    assert_eq!(validated["allowed"], true, "{validated:#}");
    let mutated = answer("/mutate", &delete).await;
    assert_eq!(mutated["allowed"], true, "{mutated:#}");
    assert!(mutated.get("patch").is_none(), "{mutated:#}");
}

#[actix_web::test]
async fn rejects_bodies_that_are_not_admission_reviews_with_400_saying_why() {
    let without = |field: &str| {
        let mut r = create(json!({"gitRepo": "https://example.com/site.git"}));
        r["request"].as_object_mut().expect("request is an object").remove(field);
        body(&r)
    };
    let mut v1beta1 = create(json!({"gitRepo": "https://example.com/site.git"}));
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_request = create(json!({"gitRepo": "https://example.com/site.git"}));
    no_request.as_object_mut().expect("review is an object").remove("request");
    let mut null_request = no_request.clone();
    null_request["request"] = Value::Null;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("an empty body", Vec::new(), "request body is not JSON"),
        ("truncated JSON", b"{".to_vec(), "request body is not JSON"),
        (
            "JSON of another kind",
            br#"{"kind":"Pod"}"#.to_vec(),
            r#"expected an admission.k8s.io/v1 AdmissionReview, got kind "Pod" of apiVersion """#,
        ),
        (
            "a v1beta1 review",
            body(&v1beta1),
            r#"expected an admission.k8s.io/v1 AdmissionReview, got kind "AdmissionReview" of apiVersion "admission.k8s.io/v1beta1""#,
        ),
        ("a review without request", body(&no_request), "the AdmissionReview has no request"),
        ("a review with a null request", body(&null_request), "the AdmissionReview has no request"),
        ("a request without uid", without("uid"), "malformed AdmissionReview request: missing field `uid`"),
        (
            "a request without operation",
            without("operation"),
            "malformed AdmissionReview request: missing field `operation`",
        ),
    ];
    for path in ["/validate", "/mutate"] {
        for (case, payload, why) in &cases {
            let (status, content_type, bytes) = call(DEFAULT_LIMIT, Method::POST, path, payload.clone()).await;
            let text = String::from_utf8_lossy(&bytes);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}, {case}: {text}");
            assert!(content_type.starts_with("text/plain"), "{path}, {case}: {content_type}");
            assert!(text.contains(why), "{path}, {case}: expected {why:?} in {text:?}");
        }
    }
}

/// A valid review padded with trailing white space (still valid JSON) to exactly `len` bytes.
fn review_of_length(len: usize) -> Vec<u8> {
    let mut bytes = body(&create(json!({"gitRepo": "https://example.com/site.git"})));
    assert!(bytes.len() <= len, "the review alone is {} bytes", bytes.len());
    bytes.resize(len, b' ');
    bytes
}

#[actix_web::test]
async fn rejects_a_body_over_the_limit_with_413_and_accepts_one_at_the_limit() {
    let (status, _, bytes) = call(1024, Method::POST, "/validate", review_of_length(2048)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&bytes));
    let (status, _, bytes) = call(1024, Method::POST, "/mutate", review_of_length(1025)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&bytes));

    let (status, _, bytes) = call(1024, Method::POST, "/validate", review_of_length(1024)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    let answered: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answered["response"]["allowed"], true, "{answered:#}");
}

#[actix_web::test]
async fn admission_routes_accept_only_post() {
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        for path in ["/validate", "/mutate"] {
            let (status, _, _) = call(DEFAULT_LIMIT, method.clone(), path, Vec::new()).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
}

#[actix_web::test]
async fn health_routes_answer_ok_and_unknown_paths_404() {
    for path in ["/healthz", "/readyz"] {
        let (status, _, bytes) = call(DEFAULT_LIMIT, Method::GET, path, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(bytes, b"ok", "{path}");
    }
    let (status, _, _) = call(DEFAULT_LIMIT, Method::POST, "/validating", Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The metrics of one app after a sequence of requests to it.
#[actix_web::test]
async fn metrics_count_answers_by_endpoint_operation_and_verdict_and_refusals_by_reason() {
    let limits = Limits { max_body_bytes: 4096, max_inflight_bytes: 16 << 20, body_timeout: Duration::from_secs(3) };
    let app =
        test::init_service(App::new().app_data(app_data(limits)).configure(admission_routes).configure(metrics_routes))
            .await;
    let post = |path: &str, payload: Vec<u8>| {
        test::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/json"))
            .set_payload(payload)
            .to_request()
    };
    let valid = body(&create(json!({"gitRepo": "https://github.com/luksa/kubia-website-example.git"})));
    let invalid = body(&create(json!({"gitRepo": "file:///etc"})));
    for (path, payload) in [
        ("/validate", valid.clone()),
        ("/validate", valid.clone()),
        ("/validate", invalid),
        ("/mutate", valid),
        ("/mutate", b"{not json".to_vec()),
        ("/validate", vec![b' '; 5000]),
    ] {
        test::call_service(&app, post(path, payload)).await;
    }
    let response = test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(test::read_body(response).await.to_vec()).expect("UTF-8");
    for line in [
        r#"website_webhook_admission_requests_total{endpoint="validate",operation="CREATE",verdict="allowed"} 2"#,
        r#"website_webhook_admission_requests_total{endpoint="validate",operation="CREATE",verdict="denied"} 1"#,
        r#"website_webhook_admission_requests_total{endpoint="mutate",operation="CREATE",verdict="patched"} 1"#,
        r#"website_webhook_admission_requests_total{endpoint="mutate",operation="none",verdict="malformed"} 1"#,
        r#"website_webhook_admission_duration_seconds_count{endpoint="validate"} 3"#,
        r#"website_webhook_admission_duration_seconds_count{endpoint="mutate"} 2"#,
        r#"website_webhook_refused_requests_total{reason="too_large"} 1"#,
        "# TYPE website_webhook_serving_certificate_expiry_timestamp_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
    }
    // Not on the admission port.
    let (status, ..) = call(DEFAULT_LIMIT, Method::GET, "/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
