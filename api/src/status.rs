//! Answers as `metav1.Status`, the way the Kubernetes API answers every error, so kubectl shows them as it shows
//! its own.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};
use website_crd::Violation;

/// The group and resource, as they appear in messages (`websites.extensions.example.com`).
pub const GROUP_RESOURCE: &str = "websites.extensions.example.com";

/// An error answer: its HTTP code, `reason`, message and optional `details`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// The `StatusReason` (`NotFound`, `Invalid`, ...).
    pub reason: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// `details`, when there are any.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401: the request does not come from the aggregator.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", message)
    }

    /// 403: the user may not do this; `message` says who and what.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 for a path this server does not serve.
    pub fn path_not_found(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// 405: the path exists, the verb does not.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 406: no representation the client accepts.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("the request body is larger than {limit} bytes"))
    }

    /// 415: a body of a type this server does not read.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 422: the Website named `name` breaks `violations`, one cause each.
    pub fn invalid(name: &str, violations: &[Violation]) -> Self {
        let summary = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let message = if violations.len() == 1 {
            format!("Website.extensions.example.com {name:?} is invalid: {summary}")
        } else {
            format!("Website.extensions.example.com {name:?} is invalid: [{summary}]")
        };
        let causes: Vec<Value> = violations
            .iter()
            .map(|v| json!({"reason": "FieldValueInvalid", "message": v.message, "field": v.field}))
            .collect();
        Self {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(
                json!({"name": name, "group": "extensions.example.com", "kind": "Website", "causes": causes}),
            ),
        }
    }

    /// 500: something this server did not expect.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 503: a dependency (the main API server) did not answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.to_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_website_has_one_cause_per_broken_rule_with_its_field() {
        let violations = [
            Violation::new("spec.gitRepo", "local paths are not accepted"),
            Violation::new("metadata.name", "too long"),
        ];
        let status = ApiError::invalid("kubia", &violations).to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(
            status["message"],
            "Website.extensions.example.com \"kubia\" is invalid: [spec.gitRepo: local paths are not accepted, \
             metadata.name: too long]"
        );
        assert_eq!(status["details"]["causes"][0]["field"], "spec.gitRepo");
        assert_eq!(status["details"]["causes"][1]["reason"], "FieldValueInvalid");
        assert_eq!(status["details"]["kind"], "Website");
    }
}
