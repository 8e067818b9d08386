//! The `extensions.example.com/v1alpha1` API: discovery, and the verbs on `websites`, each with Kubernetes
//! semantics, on top of the stored `v1` objects.
//!
//! Every request is authenticated ([`crate::authn`]) and, but for discovery and OpenAPI, authorized for the
//! `v1alpha1` resource ([`crate::authz`]) before anything is read. Then:
//! - reads (`get`, `list`, `watch`) read the `v1` objects with this server's identity and show them as
//!   `v1alpha1`;
//! - writes are checked here with the shared rules (422 with one cause per broken rule, before the API server is
//!   asked), then sent to the `v1` object as the requesting user (impersonation), so that the API server's RBAC
//!   and the admission webhooks judge that user;
//! - errors of the API server (404, 409 on a stale `resourceVersion`, 403, ...) are passed on as they came.

use actix_web::http::header::{ACCEPT, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use serde_json::{Value, json};
use website_crd::v1alpha1::{WebsiteV1alpha1, api_version_v1alpha1, to_v1};
use website_crd::{Violation, Website, check_spec, defaults, validate_name};

use crate::State;
use crate::authn::{Caller, UserInfo, authenticate};
use crate::authz::{Attributes, Decision};
use crate::status::ApiError;
use crate::upstream::{Answer, v1_path};
use crate::view::{self, Form};

/// The group's path prefix.
pub const PREFIX: &str = "/apis/extensions.example.com/v1alpha1";

/// Query parameters passed on to a list or a watch.
const LIST_PARAMS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "allowWatchBookmarks",
    "watch",
];
/// Query parameters passed on to a write.
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager"];
/// Query parameters passed on to a delete.
const DELETE_PARAMS: &[&str] = &["dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents"];
/// Longest watch line (one event) kept while it arrives.
const MAX_WATCH_LINE: usize = 16 * 1024 * 1024;
/// Patches retried on a conflict that the client did not ask for (it sent no `resourceVersion`).
const PATCH_ATTEMPTS: usize = 5;

/// The routes of the API.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/apis", web::get().to(group_list))
        .route("/apis/extensions.example.com", web::get().to(group))
        .route(PREFIX, web::get().to(resources))
        .route("/openapi/v2", web::get().to(openapi))
        .route(&format!("{PREFIX}/websites"), web::get().to(list_all))
        .service(
            web::resource(format!("{PREFIX}/namespaces/{{namespace}}/websites"))
                .route(web::get().to(list))
                .route(web::post().to(create))
                .route(web::delete().to(delete_collection))
                .default_service(web::to(not_allowed)),
        )
        .service(
            web::resource(format!("{PREFIX}/namespaces/{{namespace}}/websites/{{name}}"))
                .route(web::get().to(get))
                .route(web::put().to(update))
                .route(web::patch().to(patch))
                .route(web::delete().to(delete))
                .default_service(web::to(not_allowed)),
        );
}

async fn not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::method_not_allowed(format!("{} is not supported on {}", req.method(), req.path())).error_response()
}

/// The answer to a path this server does not serve.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::path_not_found(req.path()).error_response()
}

fn caller(req: &HttpRequest, state: &State) -> Result<Caller, ApiError> {
    let peer = req.conn_data::<crate::authn::Peer>().cloned().unwrap_or_default();
    authenticate(&state.front_proxy.config(), &peer, req.headers()).map_err(|e| {
        tracing::info!(path = req.path(), reason = %e, "refused an unauthenticated request");
        ApiError::unauthorized(e.to_string())
    })
}

/// The user of a request, once the API server's authorizer has allowed it `attributes`.
async fn authorize(req: &HttpRequest, state: &State, attributes: Attributes) -> Result<UserInfo, ApiError> {
    let Caller::User(user) = caller(req, state)? else {
        return Err(ApiError::unauthorized("no user: the request names none in the request-header user headers"));
    };
    match state.authorizer.authorize(&user, &attributes).await? {
        Decision::Allowed => Ok(user),
        Decision::Denied(reason) => {
            tracing::info!(user = %user.username, verb = attributes.verb, namespace = ?attributes.namespace,
                name = ?attributes.name, "refused by the authorizer");
            Err(attributes.forbidden(&user, &reason))
        }
    }
}

/// The namespace and name of a request for one Website, the form its answer takes, and its user, once allowed
/// `verb` on that Website.
async fn authorize_object(
    req: &HttpRequest,
    state: &State,
    path: web::Path<(String, String)>,
    verb: &'static str,
) -> Result<(String, String, Form, UserInfo), ApiError> {
    let (namespace, name) = object_of(path)?;
    let form = form(req)?;
    let attributes = Attributes { verb, namespace: Some(namespace.clone()), name: Some(name.clone()) };
    let user = authorize(req, state, attributes).await?;
    Ok((namespace, name, form, user))
}

/// The namespace of a request for the Websites of a namespace, the form its answer takes, and its user, once
/// allowed `verb` on them.
async fn authorize_collection(
    req: &HttpRequest,
    state: &State,
    path: web::Path<String>,
    verb: &'static str,
) -> Result<(String, Form, UserInfo), ApiError> {
    let namespace = namespace_of(path)?;
    let form = form(req)?;
    let user = authorize(req, state, Attributes { verb, namespace: Some(namespace.clone()), name: None }).await?;
    Ok((namespace, form, user))
}

/// Discovery and OpenAPI are for any caller the aggregator vouches for (in Kubernetes, every authenticated user may
/// read them, through `system:discovery`).
fn discoverer(req: &HttpRequest, state: &State) -> Result<(), ApiError> {
    caller(req, state).map(drop)
}

async fn group_list(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    discoverer(&req, &state)?;
    Ok(HttpResponse::Ok().json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_body()]})))
}

fn group_body() -> Value {
    let v1 = json!({"groupVersion": "extensions.example.com/v1", "version": "v1"});
    let v1alpha1 = json!({"groupVersion": api_version_v1alpha1(), "version": "v1alpha1"});
    json!({"name": "extensions.example.com", "versions": [v1.clone(), v1alpha1], "preferredVersion": v1})
}

async fn group(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    discoverer(&req, &state)?;
    let mut body = group_body();
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(HttpResponse::Ok().json(body))
}

async fn resources(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    discoverer(&req, &state)?;
    Ok(HttpResponse::Ok().json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version_v1alpha1(),
        "resources": [{
            "name": "websites",
            "singularName": "website",
            "namespaced": true,
            "kind": "Website",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": ["ws"],
        }],
    })))
}

async fn openapi(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    discoverer(&req, &state)?;
    Ok(HttpResponse::Ok().json(crate::openapi::document()))
}

/// The request's query parameters among `allowed`, encoded again.
fn query(req: &HttpRequest, allowed: &[&[&str]]) -> Result<String, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("the query string is not valid: {e}")))?;
    let kept: Vec<(String, String)> =
        pairs.into_iter().filter(|(k, _)| allowed.iter().any(|set| set.contains(&k.as_str()))).collect();
    if kept.is_empty() {
        return Ok(String::new());
    }
    let encoded = serde_urlencoded::to_string(&kept).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(format!("?{encoded}"))
}

fn query_value(req: &HttpRequest, key: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
}

fn form(req: &HttpRequest) -> Result<Form, ApiError> {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    Form::negotiate(accept, query_value(req, "includeObject").as_deref()).map_err(ApiError::not_acceptable)
}

/// A successful answer of the API server in `form`, with its code; an error as it came.
fn respond(answer: Answer, form: Form) -> Result<HttpResponse, ApiError> {
    if !answer.is_success() {
        return Err(answer.into_error());
    }
    let stored: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::internal(format!("the API server's answer is not JSON: {e}")))?;
    let code = actix_web::http::StatusCode::from_u16(answer.code).unwrap_or(actix_web::http::StatusCode::OK);
    // A delete may answer with a Status rather than the object.
    if stored.get("kind").and_then(Value::as_str) == Some("Status") {
        return Ok(HttpResponse::build(code).json(stored));
    }
    Ok(HttpResponse::build(code).json(view::answer(stored, form)))
}

/// A namespace or name from the path, which goes into the path of the request to the API server: only what a
/// Kubernetes name may be (lower-case letters, digits, `-` and `.`, at most 253), never `.` or `..`.
fn segment(what: &str, value: String) -> Result<String, ApiError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value != "."
        && value != ".."
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if valid {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {value:?} is not a valid name; accepted: lower-case letters, digits, '-' and '.', at most 253"
        )))
    }
}

fn namespace_of(path: web::Path<String>) -> Result<String, ApiError> {
    segment("namespace", path.into_inner())
}

fn object_of(path: web::Path<(String, String)>) -> Result<(String, String), ApiError> {
    let (namespace, name) = path.into_inner();
    Ok((segment("namespace", namespace)?, segment("name", name)?))
}

fn is_watch(req: &HttpRequest) -> bool {
    matches!(query_value(req, "watch").as_deref(), Some("true" | "1"))
}

async fn list_all(req: HttpRequest, state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    read_collection(req, state, None).await
}

async fn list(req: HttpRequest, state: web::Data<State>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    read_collection(req, state, Some(namespace_of(path)?)).await
}

async fn read_collection(
    req: HttpRequest,
    state: web::Data<State>,
    namespace: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let watch = is_watch(&req);
    let verb = if watch { "watch" } else { "list" };
    let form = form(&req)?;
    authorize(&req, &state, Attributes { verb, namespace: namespace.clone(), name: None }).await?;
    let path = format!("{}{}", v1_path(namespace.as_deref(), None), query(&req, &[LIST_PARAMS])?);
    if !watch {
        return respond(state.upstream.send(Method::GET, &path, None, None).await?, form);
    }
    let events = match state.upstream.watch(&path).await? {
        Ok(events) => events,
        Err(answer) => return Err(answer.into_error()),
    };
    let mut pending: Vec<u8> = Vec::new();
    let converted = events.map(move |chunk| -> Result<Bytes, actix_web::Error> {
        let chunk = chunk.map_err(|e| actix_web::error::ErrorBadGateway(e.to_string()))?;
        pending.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            out.extend(view::watch_event(&line[..end], form));
            out.push(b'\n');
        }
        if pending.len() > MAX_WATCH_LINE {
            return Err(actix_web::error::ErrorBadGateway("a watch event of the API server is too large"));
        }
        Ok(Bytes::from(out))
    });
    Ok(HttpResponse::Ok().content_type("application/json").streaming(converted))
}

async fn get(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name, form, _) = authorize_object(&req, &state, path, "get").await?;
    let path = format!("{}{}", v1_path(Some(&namespace), Some(&name)), query(&req, &[&["resourceVersion"]])?);
    respond(state.upstream.send(Method::GET, &path, None, None).await?, form)
}

/// The body of a write, as JSON.
fn json_body(req: &HttpRequest, body: &[u8], accepted: &[&str]) -> Result<Value, ApiError> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !accepted.contains(&media) {
        return Err(ApiError::unsupported_media_type(format!(
            "the body's type {media:?} is not accepted here; accepted: {}",
            accepted.join(", ")
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// Checks that `object` is a `v1alpha1` Website for `namespace` (and `name`, when the path names one).
fn check_identity(object: &Value, namespace: &str, name: Option<&str>) -> Result<(), ApiError> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version != api_version_v1alpha1() || kind != "Website" {
        return Err(ApiError::bad_request(format!(
            "the object is apiVersion {api_version:?}, kind {kind:?}; this endpoint accepts apiVersion \
             \"extensions.example.com/v1alpha1\", kind \"Website\""
        )));
    }
    let meta = &object["metadata"];
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str).filter(|ns| !ns.is_empty())
        && ns != namespace
    {
        return Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({ns}) does not match the namespace sent on the request \
             ({namespace})"
        )));
    }
    if let Some(name) = name {
        let given = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        if given != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
    }
    Ok(())
}

/// Every rule the `v1` Website written for `object` breaks: its spec, `v1alpha1`'s (only `spec.gitRepo`), over
/// `stored`'s other fields, through the shared checks (the CRD's schema and the semantic rules).
fn violations(object: &Value, stored: Option<&Website>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut spec = match stored {
        Some(stored) => serde_json::to_value(&stored.spec).unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    match object.get("spec") {
        None | Some(Value::Null) => {
            violations.push(Violation::new("spec", "Required value; accepted: {gitRepo: <URL>}"))
        }
        Some(Value::Object(given)) => {
            for key in given.keys().filter(|k| *k != "gitRepo") {
                violations.push(Violation::new(
                    format!("spec.{key}"),
                    "v1alpha1 has no such field (its spec is gitRepo only); set it through extensions.example.com/v1",
                ));
            }
            match given.get("gitRepo") {
                Some(repo) => spec["gitRepo"] = repo.clone(),
                None => {
                    if let Value::Object(map) = &mut spec {
                        map.remove("gitRepo");
                    }
                }
            }
        }
        Some(other) => violations.push(Violation::new("spec", format!("must be an object, not {other}"))),
    }
    if violations.iter().any(|v| v.field == "spec") {
        return violations;
    }
    violations.extend(check_spec(Some(&spec)).0);
    violations
}

fn name_of(object: &Value) -> String {
    let meta = &object["metadata"];
    meta.get("name")
        .and_then(Value::as_str)
        .or_else(|| meta.get("generateName").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

fn decode(object: Value) -> Result<WebsiteV1alpha1, ApiError> {
    serde_json::from_value(object).map_err(|e| ApiError::bad_request(format!("the object is not a Website: {e}")))
}

fn encode(website: &Website) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(website).map_err(|e| ApiError::internal(e.to_string()))
}

const JSON: &[&str] = &["application/json"];

async fn create(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, form, user) = authorize_collection(&req, &state, path, "create").await?;
    let object = json_body(&req, &body, JSON)?;
    check_identity(&object, &namespace, None)?;
    let mut broken = Vec::new();
    match object["metadata"].get("name").and_then(Value::as_str) {
        Some(name) => broken.extend(validate_name(name)),
        None if object["metadata"].get("generateName").and_then(Value::as_str).is_some_and(|g| !g.is_empty()) => {}
        None => broken.push(Violation::new("metadata.name", "Required value: name or generateName is required")),
    }
    broken.extend(violations(&object, None));
    if !broken.is_empty() {
        return Err(ApiError::invalid(&name_of(&object), &broken));
    }
    let incoming = decode(object)?;
    let mut website = to_v1(&incoming, None);
    website.spec = defaults(&website.spec);
    website.metadata.namespace = Some(namespace.clone());
    let path = format!("{}{}", v1_path(Some(&namespace), None), query(&req, &[WRITE_PARAMS])?);
    let answer =
        state.upstream.send(Method::POST, &path, Some((encode(&website)?, "application/json")), Some(&user)).await?;
    respond(answer, form)
}

/// The stored `v1` Website, read with this server's identity.
async fn stored(state: &State, namespace: &str, name: &str) -> Result<Website, ApiError> {
    let answer = state.upstream.send(Method::GET, &v1_path(Some(namespace), Some(name)), None, None).await?;
    if !answer.is_success() {
        return Err(answer.into_error());
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| ApiError::internal(format!("the stored Website does not decode: {e}")))
}

/// Writes `incoming` over `stored` as `user`: the PUT of the `v1` object.
async fn replace(
    req: &HttpRequest,
    state: &State,
    user: &UserInfo,
    incoming: &WebsiteV1alpha1,
    stored: &Website,
) -> Result<Answer, ApiError> {
    let website = to_v1(incoming, Some(stored));
    let namespace = stored.metadata.namespace.as_deref().unwrap_or_default();
    let name = stored.metadata.name.as_deref().unwrap_or_default();
    let path = format!("{}{}", v1_path(Some(namespace), Some(name)), query(req, &[WRITE_PARAMS])?);
    state.upstream.send(Method::PUT, &path, Some((encode(&website)?, "application/json")), Some(user)).await
}

async fn update(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name, form, user) = authorize_object(&req, &state, path, "update").await?;
    let object = json_body(&req, &body, JSON)?;
    check_identity(&object, &namespace, Some(&name))?;
    let stored = stored(&state, &namespace, &name).await?;
    let broken = violations(&object, Some(&stored));
    if !broken.is_empty() {
        return Err(ApiError::invalid(&name, &broken));
    }
    let mut incoming = decode(object)?;
    incoming.metadata.namespace = Some(namespace);
    // The resourceVersion is the client's: a stale one gets the API server's 409.
    respond(replace(&req, &state, &user, &incoming, &stored).await?, form)
}

async fn patch(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name, form, user) = authorize_object(&req, &state, path, "patch").await?;
    let media = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim().to_owned();
    let patch = match media.as_str() {
        "application/merge-patch+json" | "application/json-patch+json" => json_body(&req, &body, &[media.as_str()])?,
        "application/strategic-merge-patch+json" => {
            return Err(ApiError::unsupported_media_type(
                "strategic merge patch is not supported for Websites; use a merge patch (kubectl patch --type=merge) \
                 or a JSON patch (--type=json)",
            ));
        }
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the patch type {other:?} is not supported; accepted: application/merge-patch+json, \
                 application/json-patch+json"
            )));
        }
    };
    let ops: Option<json_patch::Patch> = if media == "application/json-patch+json" {
        Some(
            serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the JSON patch does not decode: {e}")))?,
        )
    } else {
        None
    };
    for _ in 0..PATCH_ATTEMPTS {
        let stored = stored(&state, &namespace, &name).await?;
        let mut object = serde_json::to_value(website_crd::v1alpha1::to_v1alpha1(&stored))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        match &ops {
            Some(ops) => json_patch::patch(&mut object, ops).map_err(|e| {
                ApiError::invalid(&name, &[Violation::new("patch", format!("cannot apply the JSON patch: {e}"))])
            })?,
            None => json_patch::merge(&mut object, &patch),
        }
        check_identity(&object, &namespace, Some(&name))?;
        let broken = violations(&object, Some(&stored));
        if !broken.is_empty() {
            return Err(ApiError::invalid(&name, &broken));
        }
        let stored_version = stored.metadata.resource_version.clone();
        let mut incoming = decode(object)?;
        // A patch that names a resourceVersion is conditioned on it; one that does not applies to the newest object,
        // retried when that changes in between.
        let conditional = incoming.metadata.resource_version != stored_version;
        incoming.metadata.namespace = Some(namespace.clone());
        let answer = replace(&req, &state, &user, &incoming, &stored).await?;
        if answer.code == 409 && !conditional {
            continue;
        }
        return respond(answer, form);
    }
    Err(ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on websites.extensions.example.com {name:?}: the object kept changing; try again"
        ),
        details: None,
    })
}

async fn delete(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, name, form, user) = authorize_object(&req, &state, path, "delete").await?;
    let options = delete_options(&req, &body)?;
    let path = format!("{}{}", v1_path(Some(&namespace), Some(&name)), query(&req, &[DELETE_PARAMS])?);
    respond(state.upstream.send(Method::DELETE, &path, options, Some(&user)).await?, form)
}

async fn delete_collection(
    req: HttpRequest,
    state: web::Data<State>,
    path: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (namespace, form, user) = authorize_collection(&req, &state, path, "deletecollection").await?;
    let options = delete_options(&req, &body)?;
    let path = format!("{}{}", v1_path(Some(&namespace), None), query(&req, &[DELETE_PARAMS, LIST_PARAMS])?);
    respond(state.upstream.send(Method::DELETE, &path, options, Some(&user)).await?, form)
}

/// A delete's `DeleteOptions` body, passed on when there is one.
fn delete_options(req: &HttpRequest, body: &[u8]) -> Result<Option<(Vec<u8>, &'static str)>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let options = json_body(req, body, JSON)?;
    let kind = options.get("kind").and_then(Value::as_str).unwrap_or("DeleteOptions");
    if kind != "DeleteOptions" {
        return Err(ApiError::bad_request(format!("a delete's body is DeleteOptions, not {kind}")));
    }
    let bytes = serde_json::to_vec(&options).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Some((bytes, "application/json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Website {
        let mut website = Website::new(
            "kubia",
            website_crd::WebsiteSpec {
                replicas: Some(3),
                ..website_crd::WebsiteSpec::new("https://github.com/luksa/kubia-website-example.git")
            },
        );
        website.metadata.namespace = Some("shop".into());
        website
    }

    fn object(spec: Value) -> Value {
        json!({"apiVersion": "extensions.example.com/v1alpha1", "kind": "Website",
            "metadata": {"name": "kubia", "namespace": "shop"}, "spec": spec})
    }

    #[test]
    fn a_bad_repository_is_refused_with_the_shared_rules() {
        let broken = violations(&object(json!({"gitRepo": "file:///etc/passwd"})), None);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].field, "spec.gitRepo");
        let broken = violations(&object(json!({"gitRepo": 42})), Some(&stored()));
        assert!(broken.iter().any(|v| v.field == "spec.gitRepo"), "{broken:?}");
        let broken = violations(&object(json!({})), None);
        assert!(broken.iter().any(|v| v.field.starts_with("spec")), "{broken:?}");
    }

    #[test]
    fn a_field_v1alpha1_lacks_is_refused_and_named() {
        let broken = violations(&object(json!({"gitRepo": "https://example.com/a.git", "replicas": 2})), None);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].field, "spec.replicas");
        assert!(broken[0].message.contains("extensions.example.com/v1"), "{broken:?}");
        let broken = violations(&object(json!("x")), None);
        assert_eq!(broken[0].field, "spec");
    }

    #[test]
    fn a_valid_update_keeps_the_stored_v1_fields_valid() {
        assert!(violations(&object(json!({"gitRepo": "https://example.com/b.git"})), Some(&stored())).is_empty());
    }

    #[test]
    fn a_path_segment_is_a_kubernetes_name_or_refused() {
        assert_eq!(segment("name", "kubia.v2-x".into()), Ok("kubia.v2-x".into()));
        for bad in ["", ".", "..", "Kubia", "a/b", "a%2Fb", "a b", &"a".repeat(254)] {
            let error = segment("namespace", bad.to_owned()).expect_err(bad);
            assert_eq!(error.code, 400, "{bad}");
        }
    }

    #[test]
    fn the_object_must_be_a_v1alpha1_website_of_the_paths_namespace_and_name() {
        let good = object(json!({"gitRepo": "https://example.com/a.git"}));
        assert!(check_identity(&good, "shop", Some("kubia")).is_ok());
        let error = check_identity(&good, "other", None).expect_err("namespace");
        assert_eq!(error.code, 400);
        assert!(check_identity(&good, "shop", Some("other")).is_err());
        let mut v1 = good.clone();
        v1["apiVersion"] = json!("extensions.example.com/v1");
        let error = check_identity(&v1, "shop", None).expect_err("version");
        assert!(error.message.contains("v1alpha1"), "{error}");
    }
}
