//! Helpers shared by the integration tests: AdmissionReview bodies as the API server sends them, and
//! polling with a deadline. [`net`] adds certificates on disk, a TLS client and an HTTP/1.1 exchange.

// Each test crate compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod net;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The uid every review built here carries; responses must echo it.
pub const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

/// A `Website` object named `kubia` in `default` with the given spec.
pub fn website(spec: Value) -> Value {
    json!({
        "apiVersion": "extensions.example.com/v1",
        "kind": "Website",
        "metadata": {"name": "kubia", "namespace": "default"},
        "spec": spec
    })
}

/// An `admission.k8s.io/v1` AdmissionReview for a `Website`, shaped like the ones kube-apiserver sends.
pub fn review(operation: &str, object: Value, old_object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
            "resource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
            "requestKind": {"group": "extensions.example.com", "version": "v1", "kind": "Website"},
            "requestResource": {"group": "extensions.example.com", "version": "v1", "resource": "websites"},
            "name": "kubia",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// A CREATE review of a `Website` with the given spec.
pub fn create(spec: Value) -> Value {
    review("CREATE", website(spec), Value::Null)
}

/// The review's body as bytes.
pub fn body(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("a serde_json::Value always serializes")
}

/// Calls `attempt` until it returns `Some`, at most until `timeout` has passed, pausing `every` between
/// attempts; panics naming `what` when the deadline passes.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(every).await;
    }
}
