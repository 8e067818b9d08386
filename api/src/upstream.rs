//! The main API server, where the `v1` Websites are stored: reads with this server's own identity, writes as the
//! requesting user (impersonation), and answers passed back as they came when they are errors.

use bytes::Bytes;
use futures::Stream;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::authn::UserInfo;
use crate::status::ApiError;

/// The path of the `v1` Websites: all of them, those of a namespace, or one.
pub fn v1_path(namespace: Option<&str>, name: Option<&str>) -> String {
    let mut path = String::from("/apis/extensions.example.com/v1");
    if let Some(ns) = namespace {
        path.push_str("/namespaces/");
        path.push_str(ns);
    }
    path.push_str("/websites");
    if let Some(name) = name {
        path.push('/');
        path.push_str(name);
    }
    path
}

/// An answer of the main API server, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Its HTTP status code.
    pub code: u16,
    /// Its body.
    pub body: Bytes,
}

impl Answer {
    /// Whether the code is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The answer as an error to pass on as it came (it is a `metav1.Status` of the API server).
    pub fn into_error(self) -> ApiError {
        let status: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let text = |key: &str| status.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let message = match text("message") {
            m if m.is_empty() => format!("the API server answered {}", self.code),
            m => m,
        };
        ApiError { code: self.code, reason: reason(&text("reason")), message, details: status.get("details").cloned() }
    }
}

/// The API server's reasons, as the static strings [`ApiError`] keeps.
fn reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    KNOWN.iter().find(|known| **known == reason).copied().unwrap_or("Unknown")
}

/// Characters of an extra key that are percent-encoded in an `Impersonate-Extra-` header name.
const EXTRA_KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A client of the main API server.
#[derive(Clone)]
pub struct Upstream {
    client: Client,
}

impl Upstream {
    /// Requests through `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn request(
        method: Method,
        path_and_query: &str,
        body: Option<(Vec<u8>, &str)>,
        user: Option<&UserInfo>,
    ) -> Result<Request<Body>, ApiError> {
        let mut builder = Request::builder().method(method).uri(path_and_query).header(ACCEPT, "application/json");
        if let Some(user) = user {
            let value = |v: &str| {
                HeaderValue::from_str(v).map_err(|_| {
                    ApiError::bad_request(format!("the user attribute {v:?} cannot be sent on to the API server"))
                })
            };
            builder = builder.header("Impersonate-User", value(&user.username)?);
            for group in &user.groups {
                builder = builder.header("Impersonate-Group", value(group)?);
            }
            for (key, values) in &user.extra {
                let name = format!("Impersonate-Extra-{}", utf8_percent_encode(key, EXTRA_KEY));
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ApiError::bad_request(format!("the extra attribute {key:?} cannot be sent on")))?;
                for v in values {
                    builder = builder.header(name.clone(), value(v)?);
                }
            }
        }
        let body = match body {
            Some((bytes, content_type)) => {
                builder = builder.header(CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        builder.body(body).map_err(|e| ApiError::bad_request(format!("cannot build the request: {e}")))
    }

    /// Sends a request (as `user`, when given) and reads the whole answer.
    ///
    /// # Errors
    /// 503 when the API server cannot be reached.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(Vec<u8>, &str)>,
        user: Option<&UserInfo>,
    ) -> Result<Answer, ApiError> {
        let request = Self::request(method, path_and_query, body, user)?;
        let response = self.client.send(request).await.map_err(unreachable)?;
        let code = response.status().as_u16();
        let body = response.into_body().collect_bytes().await.map_err(unreachable)?;
        Ok(Answer { code, body })
    }

    /// Opens a watch: the answer's code, and its body as it arrives. An error code comes with the whole body.
    ///
    /// # Errors
    /// 503 when the API server cannot be reached.
    pub async fn watch(
        &self,
        path_and_query: &str,
    ) -> Result<Result<impl Stream<Item = Result<Bytes, kube::Error>> + use<>, Answer>, ApiError> {
        let request = Self::request(Method::GET, path_and_query, None, None)?;
        let response = self.client.send(request).await.map_err(unreachable)?;
        let code = response.status().as_u16();
        if !(200..300).contains(&code) {
            let body = response.into_body().collect_bytes().await.map_err(unreachable)?;
            return Ok(Err(Answer { code, body }));
        }
        Ok(Ok(response.into_body().into_data_stream()))
    }
}

fn unreachable(error: kube::Error) -> ApiError {
    ApiError::unavailable(format!("the Kubernetes API server, which stores the Websites, did not answer: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_v1_websites() {
        assert_eq!(v1_path(None, None), "/apis/extensions.example.com/v1/websites");
        assert_eq!(v1_path(Some("shop"), None), "/apis/extensions.example.com/v1/namespaces/shop/websites");
        assert_eq!(
            v1_path(Some("shop"), Some("kubia")),
            "/apis/extensions.example.com/v1/namespaces/shop/websites/kubia"
        );
    }

    #[test]
    fn a_write_impersonates_every_attribute_of_the_user() {
        let user = UserInfo {
            username: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: [("example.com/team".to_owned(), vec!["web".to_owned()])].into(),
        };
        let request = Upstream::request(Method::POST, "/x", Some((b"{}".to_vec(), "application/json")), Some(&user))
            .expect("builds");
        let headers = request.headers();
        assert_eq!(headers["impersonate-user"], "alice");
        let groups: Vec<_> = headers.get_all("impersonate-group").iter().collect();
        assert_eq!(groups, ["dev", "system:authenticated"]);
        assert_eq!(headers["impersonate-extra-example.com%2Fteam"], "web");
        // Reads carry no impersonation.
        let read = Upstream::request(Method::GET, "/x", None, None).expect("builds");
        assert!(read.headers().get("impersonate-user").is_none());
    }

    #[test]
    fn an_error_of_the_api_server_is_passed_on_with_its_code_reason_and_details() {
        let body = serde_json::json!({"kind": "Status", "code": 409, "reason": "Conflict",
            "message": "Operation cannot be fulfilled", "details": {"name": "kubia"}});
        let error = Answer { code: 409, body: Bytes::from(body.to_string()) }.into_error();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert_eq!(error.message, "Operation cannot be fulfilled");
        assert_eq!(error.details, Some(serde_json::json!({"name": "kubia"})));
    }
}
