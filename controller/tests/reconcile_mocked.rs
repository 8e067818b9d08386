//! `reconcile` against a mocked API server: which requests it makes, in which order, with which bodies.
//! The real API server path is covered by the end-to-end tests in `tests/`; these pin down the exact calls.

use std::sync::Arc;

use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};
use website_controller::reconcile::{Context, FIELD_MANAGER, RESYNC_PERIOD, reconcile};
use website_controller::resources;
use website_controller::settings::ChildConfig;
use website_controller::status::desired_status;
use website_crd::{Website, WebsiteSpec};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn website(git_repo: &str) -> Website {
    let mut w = Website::new("kubia", WebsiteSpec::new(git_repo));
    w.metadata.namespace = Some("shop".into());
    w.metadata.uid = Some("7d4ba3e2-0000-4000-8000-000000000001".into());
    w.metadata.generation = Some(1);
    w
}

fn context() -> (Arc<Context>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    (Arc::new(Context::new(client, ChildConfig::default())), handle)
}

// Each test keeps its `Context` (and with it the client) alive until the end, so that "no further request"
// shows as a pending `next_request` rather than a closed channel.

/// Takes the next request, checks its method and path, answers with `reply`, and returns the JSON body.
async fn expect(handle: &mut ApiHandle, method: Method, path: &str, reply: Value) -> (String, Value) {
    let (request, send) = handle.next_request().await.expect("the reconciler made another request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query = request.uri().query().unwrap_or_default().to_owned();
    let bytes = request.into_body().collect_bytes().await.expect("request body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    send.send_response(
        Response::builder().body(Body::from(serde_json::to_vec(&reply).expect("reply"))).expect("response"),
    );
    (query, body)
}

/// Runs `reconcile`, failing instead of hanging when it waits for an answer to a request no test expected.
async fn run(website: Website, ctx: &Arc<Context>) -> website_controller::Result<Action> {
    tokio::time::timeout(std::time::Duration::from_secs(10), reconcile(Arc::new(website), ctx.clone()))
        .await
        .expect("reconcile made a request the test did not answer")
}

fn assert_apply(query: &str) {
    assert!(query.contains(&format!("fieldManager={FIELD_MANAGER}")), "{query}");
    assert!(query.contains("force=true"), "{query}");
}

/// The Deployment the API server answers with: as applied, with a status.
fn served_deployment(website: &Website, available: i32) -> Deployment {
    let mut d = resources::deployment(website, &ChildConfig::default()).expect("builds");
    d.metadata.generation = Some(1);
    d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        observed_generation: Some(1),
        available_replicas: Some(available),
        ..Default::default()
    });
    d
}

#[tokio::test]
async fn a_new_website_gets_its_deployment_service_and_status_applied_in_that_order() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let served = served_deployment(&w, 0);
    let want_deployment =
        serde_json::to_value(resources::deployment(&w, &ChildConfig::default()).expect("builds")).expect("json");
    let want_service = serde_json::to_value(resources::service(&w).expect("builds")).expect("json");
    let stored = serde_json::to_value(&w).expect("json");
    let server = tokio::spawn(async move {
        let (q, body) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/apps/v1/namespaces/shop/deployments/kubia",
            serde_json::to_value(&served).expect("json"),
        )
        .await;
        assert_apply(&q);
        assert_eq!(body, want_deployment);
        let (q, body) = expect(
            &mut handle,
            Method::PATCH,
            "/api/v1/namespaces/shop/services/kubia",
            serde_json::to_value(Service::default()).expect("json"),
        )
        .await;
        assert_apply(&q);
        assert_eq!(body, want_service);
        let (q, body) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/extensions.example.com/v1/namespaces/shop/websites/kubia/status",
            stored,
        )
        .await;
        assert_apply(&q);
        assert_eq!(body["apiVersion"], "extensions.example.com/v1");
        assert_eq!(body["kind"], "Website");
        let status = &body["status"];
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["availableReplicas"], 0);
        assert_eq!(status["url"], "http://kubia.shop.svc.cluster.local/");
        assert_eq!(status["conditions"][0]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "PodsUnavailable");
        handle
    });
    let action = run(w, &ctx).await.expect("reconciles");
    assert_eq!(action, Action::requeue(RESYNC_PERIOD));
    let mut handle = server.await.expect("every expected request was made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "no request after the status");
}

#[tokio::test]
async fn an_unchanged_website_gets_no_status_write() {
    let (ctx, mut handle) = context();
    let mut w = website("https://github.com/luksa/kubia-website-example.git");
    let served = served_deployment(&w, 1);
    let url = resources::url(&w, &ChildConfig::default());
    w.status = Some(desired_status(&w, Some(&served), url, Time(Timestamp::UNIX_EPOCH)));
    let server = tokio::spawn(async move {
        expect(
            &mut handle,
            Method::PATCH,
            "/apis/apps/v1/namespaces/shop/deployments/kubia",
            serde_json::to_value(&served).expect("json"),
        )
        .await;
        expect(&mut handle, Method::PATCH, "/api/v1/namespaces/shop/services/kubia", json!({})).await;
        handle
    });
    run(w, &ctx).await.expect("reconciles");
    let mut handle = server.await.expect("both applies were made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "the unchanged status was written");
}

#[tokio::test]
async fn an_invalid_website_gets_an_invalid_spec_status_and_a_warning_event_but_no_children() {
    let (ctx, mut handle) = context();
    let w = website("file:///etc");
    let stored = serde_json::to_value(&w).expect("json");
    let server = tokio::spawn(async move {
        let (_, body) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/extensions.example.com/v1/namespaces/shop/websites/kubia/status",
            stored,
        )
        .await;
        let condition = &body["status"]["conditions"][0];
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "InvalidSpec");
        assert!(
            condition["message"].as_str().unwrap_or_default().starts_with("spec.gitRepo: local paths"),
            "{condition}"
        );
        let (_, event) =
            expect(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/shop/events", json!({})).await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "InvalidSpec");
        assert_eq!(event["regarding"]["name"], "kubia");
        handle
    });
    let action = run(w.clone(), &ctx).await.expect("reconciles");
    assert_eq!(action, Action::await_change());
    let mut handle = server.await.expect("status and event were written");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "children were applied for {}", w.name_any());
}

#[tokio::test]
async fn a_refused_apply_is_an_error_naming_the_child() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("a request");
        assert_eq!(request.uri().path(), "/apis/apps/v1/namespaces/shop/deployments/kubia");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "deployments.apps \"kubia\" is forbidden", "reason": "Forbidden", "code": 403});
        send.send_response(
            Response::builder()
                .status(403)
                .body(Body::from(serde_json::to_vec(&status).expect("json")))
                .expect("response"),
        );
    });
    let error = run(w, &ctx).await.expect_err("the apply was refused");
    server.await.expect("the request was made");
    let message = error.to_string();
    assert!(message.starts_with("failed to apply the Deployment"), "{message}");
    assert!(message.contains("forbidden"), "{message}");
}
