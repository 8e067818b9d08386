//! `reconcile` against a mocked API server: which requests it makes, in which order, with which bodies.
//! The real API server path is covered by the end-to-end tests in `tests/`; these pin down the exact calls.

use std::sync::Arc;

use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::Deployment;
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

/// Takes the next request, checks its method and path, answers with `reply`, and returns the query and JSON body.
async fn expect(handle: &mut ApiHandle, method: Method, path: &str, reply: Value) -> (String, Value) {
    answer(handle, method, path, 200, reply).await
}

/// Like [`expect`], answering with HTTP `code` and a `Status` of that code.
async fn expect_failure(handle: &mut ApiHandle, method: Method, path: &str, code: u16) -> (String, Value) {
    let reason = match code {
        404 => "NotFound",
        409 => "AlreadyExists",
        _ => "Forbidden",
    };
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("the server says {reason}"), "reason": reason, "code": code});
    answer(handle, method, path, code, status).await
}

async fn answer(handle: &mut ApiHandle, method: Method, path: &str, code: u16, reply: Value) -> (String, Value) {
    let (request, send) = handle.next_request().await.expect("the reconciler made another request");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query = request.uri().query().unwrap_or_default().to_owned();
    let bytes = request.into_body().collect_bytes().await.expect("request body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
            .expect("response"),
    );
    (query, body)
}

/// One expected request of a group that the reconciler makes concurrently: its method and path, and the answer's
/// code and body.
type Expected = (Method, &'static str, u16, Value);

/// Answers the next requests, in whatever order they come, each with the matching entry of `expected`; returns the
/// query and body of each, in the order of `expected`.
async fn expect_all(handle: &mut ApiHandle, expected: Vec<Expected>) -> Vec<(String, Value)> {
    let mut bodies = vec![(String::new(), Value::Null); expected.len()];
    let mut answered = vec![false; expected.len()];
    for _ in 0..expected.len() {
        let (request, send) = handle.next_request().await.expect("the reconciler made another request");
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let query = request.uri().query().unwrap_or_default().to_owned();
        let index = expected
            .iter()
            .enumerate()
            .position(|(i, (m, p, _, _))| !answered[i] && *m == method && *p == path)
            .unwrap_or_else(|| panic!("unexpected {method} {path}; expected one of {expected:?}"));
        answered[index] = true;
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        bodies[index] = (query, body);
        let (_, _, code, reply) = &expected[index];
        let reply = if *code >= 400 {
            let reason = if *code == 409 { "AlreadyExists" } else { "Forbidden" };
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason,
                   "code": code})
        } else {
            reply.clone()
        };
        send.send_response(
            Response::builder()
                .status(*code)
                .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
                .expect("response"),
        );
    }
    bodies
}

const CONFIG_MAP: &str = "/api/v1/namespaces/shop/configmaps/kubia-web";
const CONFIG_MAPS: &str = "/api/v1/namespaces/shop/configmaps";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/kubia";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const SERVICE: &str = "/api/v1/namespaces/shop/services/kubia";
const SERVICES: &str = "/api/v1/namespaces/shop/services";
const NETWORK_POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";
const STATUS: &str = "/apis/extensions.example.com/v1/namespaces/shop/websites/kubia/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

/// The uid the API server gave a child.
const CHILD_UID: &str = "0c1d2e3f-0000-4000-8000-00000000c41d";

/// `object` as the API server holds it: with a uid, and with the owner references it was given.
fn stored<K: serde::Serialize>(object: &K) -> Value {
    let mut value = serde_json::to_value(object).expect("json");
    value["metadata"]["uid"] = json!(CHILD_UID);
    value
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

fn assert_create(query: &str) {
    assert!(query.contains(&format!("fieldManager={FIELD_MANAGER}")), "{query}");
    assert!(!query.contains("force"), "{query}");
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
async fn a_new_website_creates_every_child_without_reading_it_then_applies_its_status() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let served = served_deployment(&w, 0);
    let config = ChildConfig::default();
    let want_config_map = serde_json::to_value(resources::web_config(&w, &config).expect("builds")).expect("json");
    let want_deployment = serde_json::to_value(resources::deployment(&w, &config).expect("builds")).expect("json");
    let want_service = serde_json::to_value(resources::service(&w).expect("builds")).expect("json");
    let stored_website = serde_json::to_value(&w).expect("json");
    let server = tokio::spawn(async move {
        // Absent children are created with a POST, which never changes an object created in between; the Deployment,
        // which starts pods, last.
        // The ConfigMap and the Service at once.
        let bodies = expect_all(
            &mut handle,
            vec![
                (Method::POST, CONFIG_MAPS, 201, want_config_map.clone()),
                (Method::POST, SERVICES, 201, want_service.clone()),
            ],
        )
        .await;
        for (query, _) in &bodies {
            assert_create(query);
        }
        assert_eq!(bodies[0].1, want_config_map);
        assert_eq!(bodies[1].1, want_service);
        let (q, body) = expect(&mut handle, Method::POST, DEPLOYMENTS, stored(&served)).await;
        assert_create(&q);
        assert_eq!(body, want_deployment);
        let (q, body) = expect(&mut handle, Method::PATCH, STATUS, stored_website).await;
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
        // One event lists every child created.
        let (_, event) = expect(&mut handle, Method::POST, EVENTS, json!({})).await;
        assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Normal"), Some("Created")));
        assert_eq!(event["note"], "created ConfigMap/kubia-web, Service/kubia, Deployment/kubia");
        handle
    });
    let action = run(w, &ctx).await.expect("reconciles");
    assert_eq!(action, Action::requeue(RESYNC_PERIOD));
    let mut handle = server.await.expect("every expected request was made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "no request after the status");
    assert_metric(&ctx, r#"website_controller_reconciles_total{result="success"} 1"#);
}

#[tokio::test]
async fn a_reconcile_of_the_same_website_before_the_watch_shows_its_new_status_writes_it_once() {
    let (ctx, mut handle) = context();
    let mut w = website("https://github.com/luksa/kubia-website-example.git");
    w.metadata.resource_version = Some("41".into());
    let served = served_deployment(&w, 0);
    let stored_website = serde_json::to_value(&w).expect("json");
    let server = tokio::spawn(async move {
        expect_all(
            &mut handle,
            vec![(Method::POST, CONFIG_MAPS, 201, json!({})), (Method::POST, SERVICES, 201, json!({}))],
        )
        .await;
        expect(&mut handle, Method::POST, DEPLOYMENTS, stored(&served)).await;
        expect(&mut handle, Method::PATCH, STATUS, stored_website).await;
        expect(&mut handle, Method::POST, EVENTS, json!({})).await;
        handle
    });
    run(w.clone(), &ctx).await.expect("reconciles");
    let handle = server.await.expect("the first reconcile's requests were made");
    // Triggered again by its children's creation, with the Website as the watch still shows it (version 41, no
    // status): its children exist now (409, read back as its own), and the status it would write is the one just
    // written over version 41.
    let config = ChildConfig::default();
    let (config_map, service) = (
        stored(&website_controller::resources::web_config(&w, &config).expect("builds")),
        stored(&website_controller::resources::service(&w).expect("builds")),
    );
    let deployment = stored(&served_deployment(&w, 0));
    let mut handle = handle;
    let server = tokio::spawn(async move {
        expect_all(
            &mut handle,
            vec![
                (Method::POST, CONFIG_MAPS, 409, Value::Null),
                (Method::POST, SERVICES, 409, Value::Null),
                (Method::GET, CONFIG_MAP, 200, config_map),
                (Method::GET, SERVICE, 200, service),
            ],
        )
        .await;
        expect_failure(&mut handle, Method::POST, DEPLOYMENTS, 409).await;
        expect(&mut handle, Method::GET, DEPLOYMENT, deployment).await;
        handle
    });
    run(w, &ctx).await.expect("reconciles");
    let mut handle = server.await.expect("the children were read back");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "the same status was written again");
}

/// `line` is in the context's metrics.
fn assert_metric(ctx: &Context, line: &str) {
    let text = ctx.metrics().encode();
    assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
}

/// The Website as it is after a reconcile that met `Service "kubia"` in the way.
fn in_conflict(mut w: Website) -> Website {
    let mut status = website_controller::status::not_ready_status(
        &w,
        website_controller::reconcile::REASON_CHILD_CONFLICT,
        "Service \"kubia\" already exists",
        Time(Timestamp::UNIX_EPOCH),
    );
    status.observed_generation = w.metadata.generation;
    w.status = Some(status);
    w
}

#[tokio::test]
async fn children_the_cache_has_not_seen_are_read_once_their_create_answers_that_they_exist() {
    let (ctx, mut handle) = context();
    let mut w = website("https://github.com/luksa/kubia-website-example.git");
    let config = ChildConfig::default();
    let served = served_deployment(&w, 1);
    let url = resources::url(&w, &config);
    w.status = Some(desired_status(&w, Some(&served), url, Time(Timestamp::UNIX_EPOCH)));
    let config_map = stored(&resources::web_config(&w, &config).expect("builds"));
    let deployment = stored(&served);
    // Someone changed the Service's type by hand: its generation does not change, its spec does.
    let mut drifted = stored(&resources::service(&w).expect("builds"));
    drifted["spec"]["type"] = json!("NodePort");
    drifted["spec"]["clusterIP"] = json!("10.96.0.12");
    let server = tokio::spawn(async move {
        // The ConfigMap and the Service at once: both exist, and are read back as the Website's own.
        let bodies = expect_all(
            &mut handle,
            vec![
                (Method::POST, CONFIG_MAPS, 409, Value::Null),
                (Method::POST, SERVICES, 409, Value::Null),
                (Method::GET, CONFIG_MAP, 200, config_map),
                (Method::GET, SERVICE, 200, drifted.clone()),
                (Method::PATCH, SERVICE, 200, drifted),
            ],
        )
        .await;
        // Only the drifted Service is written, with its uid as a precondition: an object deleted and recreated by
        // someone else in between is not overwritten.
        let (query, body) = &bodies[4];
        assert_apply(query);
        assert_eq!(body["metadata"]["uid"], CHILD_UID);
        assert_eq!(body["spec"]["type"], "ClusterIP");
        expect_failure(&mut handle, Method::POST, DEPLOYMENTS, 409).await;
        expect(&mut handle, Method::GET, DEPLOYMENT, deployment).await;
        // The status was as it should be; the repair is told in an event.
        let (_, event) = expect(&mut handle, Method::POST, EVENTS, json!({})).await;
        assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Normal"), Some("Repaired")));
        assert!(event["note"].as_str().unwrap_or_default().starts_with("put back Service/kubia,"), "{event}");
        handle
    });
    run(w, &ctx).await.expect("reconciles");
    let mut handle = server.await.expect("the reads and the apply were made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "another write was made");
}

/// Checks that the request is a delete of the child created before, conditioned on its uid.
async fn expect_undo(handle: &mut ApiHandle, path: &str, created: Value) {
    let (_, body) = expect(handle, Method::DELETE, path, created).await;
    assert_eq!(body["preconditions"]["uid"], CHILD_UID, "{body}");
    assert_eq!(body["propagationPolicy"], "Background", "{body}");
}

/// Checks the `ChildConflict` status and Warning event naming `Kind "kubia"`.
async fn expect_conflict_reported(handle: &mut ApiHandle, stored_website: Value, kind: &str) {
    let (_, body) = expect(handle, Method::PATCH, STATUS, stored_website).await;
    let condition = &body["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "ChildConflict");
    assert_eq!(
        condition["message"],
        format!(
            "{kind} \"kubia\" already exists and is not controlled by this Website; delete or rename that object, or \
             rename the Website"
        )
    );
    let (_, event) = expect(handle, Method::POST, EVENTS, json!({})).await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "ChildConflict");
    assert!(event["note"].as_str().unwrap_or_default().contains(&format!("{kind} \"kubia\"")), "{event}");
}

fn foreign_service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubia", "namespace": "shop", "uid": "f0f0f0f0-0000-4000-8000-000000000000"},
        "spec": {"selector": {"app": "shop"}, "ports": [{"port": 443, "protocol": "TCP"}]}})
}

#[tokio::test]
async fn a_new_website_that_meets_a_foreign_object_deletes_what_it_created_and_reports_it() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let stored_website = serde_json::to_value(&w).expect("json");
    let config_map = stored(&resources::web_config(&w, &ChildConfig::default()).expect("builds"));
    let server = tokio::spawn(async move {
        expect(&mut handle, Method::POST, CONFIG_MAPS, config_map.clone()).await;
        expect_failure(&mut handle, Method::POST, SERVICES, 409).await;
        expect(&mut handle, Method::GET, SERVICE, foreign_service()).await;
        // The ConfigMap it created is deleted again, by uid; the Deployment is never created.
        expect_undo(&mut handle, CONFIG_MAP, config_map).await;
        expect_conflict_reported(&mut handle, stored_website, "Service").await;
        handle
    });
    let action = run(w, &ctx).await.expect("reconciles");
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(5)), "retried soon");
    let mut handle = server.await.expect("the requests were made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "a child was written");
    assert_metric(&ctx, r#"website_controller_reconciles_total{result="conflict"} 1"#);
    assert_metric(&ctx, r#"website_controller_child_conflicts_total{kind="Service"} 1"#);
}

#[tokio::test]
async fn a_website_in_conflict_reads_every_child_first_and_writes_none_while_one_is_foreign() {
    let (ctx, mut handle) = context();
    let w = in_conflict(website("https://github.com/luksa/kubia-website-example.git"));
    let stored_website = serde_json::to_value(&w).expect("json");
    let server = tokio::spawn(async move {
        expect_failure(&mut handle, Method::GET, CONFIG_MAP, 404).await;
        expect_failure(&mut handle, Method::GET, DEPLOYMENT, 404).await;
        expect(&mut handle, Method::GET, SERVICE, foreign_service()).await;
        // No child is created or applied: straight to the status.
        expect_conflict_reported(&mut handle, stored_website, "Service").await;
        handle
    });
    run(w, &ctx).await.expect("reconciles");
    let mut handle = server.await.expect("reads, status and event were made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "a child was written");
}

#[tokio::test]
async fn a_deployment_that_is_someone_elses_undoes_the_service_and_config_map_created_before_it() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let config = ChildConfig::default();
    let stored_website = serde_json::to_value(&w).expect("json");
    let config_map = stored(&resources::web_config(&w, &config).expect("builds"));
    let service = stored(&resources::service(&w).expect("builds"));
    let mut foreign = stored(&served_deployment(&w, 0));
    foreign["metadata"]["uid"] = json!("f0f0f0f0-0000-4000-8000-000000000000");
    foreign["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop",
        "uid": "f0f0f0f0-0000-4000-8000-000000000001", "controller": true}]);
    let server = tokio::spawn(async move {
        expect(&mut handle, Method::POST, CONFIG_MAPS, config_map.clone()).await;
        expect(&mut handle, Method::POST, SERVICES, service.clone()).await;
        // Someone else's Deployment of that name.
        expect_failure(&mut handle, Method::POST, DEPLOYMENTS, 409).await;
        expect(&mut handle, Method::GET, DEPLOYMENT, foreign).await;
        expect_undo(&mut handle, SERVICE, service).await;
        expect_undo(&mut handle, CONFIG_MAP, config_map).await;
        let (_, body) = expect(&mut handle, Method::PATCH, STATUS, stored_website).await;
        let message = body["status"]["conditions"][0]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("Deployment \"kubia\"") && message.contains("ReplicaSet/shop"), "{message}");
        expect(&mut handle, Method::POST, EVENTS, json!({})).await;
        handle
    });
    run(w, &ctx).await.expect("reconciles");
    let mut handle = server.await.expect("the requests were made");
    assert!(futures::poll!(Box::pin(handle.next_request())).is_pending(), "a child was written after the conflict");
}

#[tokio::test]
async fn a_refused_undo_is_an_error_and_the_retry_reads_first() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let config_map = stored(&resources::web_config(&w, &ChildConfig::default()).expect("builds"));
    let server = tokio::spawn(async move {
        expect(&mut handle, Method::POST, CONFIG_MAPS, config_map).await;
        expect_failure(&mut handle, Method::POST, SERVICES, 409).await;
        expect(&mut handle, Method::GET, SERVICE, foreign_service()).await;
        expect_failure(&mut handle, Method::DELETE, CONFIG_MAP, 403).await;
        handle
    });
    let w = Arc::new(w);
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), reconcile(w.clone(), ctx.clone()))
        .await
        .expect("answered")
        .expect_err("the delete was refused");
    let message = error.to_string();
    assert!(message.starts_with("failed to delete the ConfigMap \"kubia-web\" created before"), "{message}");
    let mut handle = server.await.expect("the requests were made");
    // The controller counts the failure; the retry reads every child before it writes any.
    website_controller::reconcile::error_policy(w.clone(), &error, ctx.clone());
    let retry = tokio::spawn(async move {
        // The Warning event of the failure may come first.
        loop {
            let (request, send) = handle.next_request().await.expect("the retry made a request");
            if request.uri().path() == EVENTS {
                send.send_response(Response::builder().status(200).body(Body::from(b"{}".to_vec())).expect("response"));
                continue;
            }
            assert_eq!((request.method(), request.uri().path()), (&Method::GET, CONFIG_MAP));
            break;
        }
        handle
    });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), reconcile(w, ctx.clone())).await;
    retry.await.expect("the retry read first");
}

#[tokio::test]
async fn the_egress_policy_is_created_when_the_operator_turns_it_on() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let config = ChildConfig { egress_network_policy: true, ..ChildConfig::default() };
    let ctx = Arc::new(Context::new(Client::new(service, "default"), config.clone()));
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let want_policy = serde_json::to_value(resources::network_policy(&w, &config).expect("builds")).expect("json");
    let server = tokio::spawn(async move {
        expect(&mut handle, Method::POST, CONFIG_MAPS, json!({})).await;
        let (_, body) = expect(&mut handle, Method::POST, NETWORK_POLICIES, want_policy.clone()).await;
        assert_eq!(body, want_policy);
        handle
    });
    // The test answers only up to the policy; the Service's creation then finds no answer.
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(2), reconcile(Arc::new(w), ctx.clone())).await;
    assert!(outcome.is_err(), "reconcile went on to the Service");
    server.await.expect("the policy was created");
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
async fn a_refused_read_is_an_error_naming_the_child() {
    let (ctx, mut handle) = context();
    let w = in_conflict(website("https://github.com/luksa/kubia-website-example.git"));
    let server = tokio::spawn(async move {
        expect_failure(&mut handle, Method::GET, CONFIG_MAP, 403).await;
        handle
    });
    let error = run(w, &ctx).await.expect_err("the read was refused");
    server.await.expect("the request was made");
    let message = error.to_string();
    assert!(message.starts_with("failed to read the ConfigMap"), "{message}");
    assert!(message.contains("Forbidden"), "{message}");
}

#[tokio::test]
async fn a_refused_create_is_an_error_naming_the_child() {
    let (ctx, mut handle) = context();
    let w = website("https://github.com/luksa/kubia-website-example.git");
    let server = tokio::spawn(async move {
        expect_all(
            &mut handle,
            vec![(Method::POST, CONFIG_MAPS, 403, Value::Null), (Method::POST, SERVICES, 201, json!({}))],
        )
        .await;
        handle
    });
    let error = run(w, &ctx).await.expect_err("the create was refused");
    server.await.expect("the request was made");
    let message = error.to_string();
    assert!(message.starts_with("failed to apply the ConfigMap"), "{message}");
    assert!(message.contains("Forbidden"), "{message}");
}
