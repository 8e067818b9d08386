//! Secret access: a Website that refers to a Secret is admitted only when the user asking may `get` that Secret.
//!
//! git-sync sends a private repository's credentials to the Website's `gitRepo`. Without this check, a user who may
//! create Websites but may not read a Secret could name that Secret and a git server of their own, and read the
//! credentials off the wire (a confused deputy: the operator would read the Secret on their behalf). So the
//! validating webhook asks the API server, with a SubjectAccessReview built from the request's `userInfo`, whether
//! the requesting user may `get` the Secret, on every CREATE of a Website with credentials and on every UPDATE that
//! changes its `gitRepo`, `ref` or `credentials` (see [`crate::admission::validate`]). The webhook never reads the
//! Secret itself.
//!
//! Every failure refuses: a user the API server does not allow, an API server that cannot be asked, an answer that
//! does not come within `--access-review-timeout-seconds`.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use kube::core::response::{StatusCause, StatusDetails};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::admission::Verdict;

/// The field a refusal concerns.
const FIELD: &str = "spec.credentials.secretName";

/// A question for the API server: may this user `get` this Secret?
#[derive(Clone, Debug, PartialEq)]
pub struct SecretAccess {
    /// The user who sent the request, as the API server authenticated them.
    pub user: UserInfo,
    /// The Website's namespace, which is the Secret's.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
}

impl SecretAccess {
    /// The SubjectAccessReview that asks the question.
    pub fn review(&self) -> SubjectAccessReview {
        let user = &self.user;
        SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.namespace.clone()),
                    verb: Some("get".into()),
                    group: Some(String::new()),
                    resource: Some("secrets".into()),
                    name: Some(self.secret.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        }
    }

    fn username(&self) -> &str {
        self.user.username.as_deref().unwrap_or("(unnamed)")
    }

    /// The verdict when the API server says no; `reason` is its authorizer's, possibly empty.
    pub fn refusal(&self, reason: &str) -> Verdict {
        let because = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
        let message = format!(
            "{FIELD}: user \"{user}\" may not get Secret \"{secret}\" in namespace \"{namespace}\"{because}, so may \
             not have its credentials sent to a git server; accepted: a Secret the user may get (ask for `get` on \
             it), or no credentials for a public repository",
            user = self.username(),
            secret = self.secret,
            namespace = self.namespace,
        );
        self.deny(403, "Forbidden", message)
    }

    /// The verdict when the API server cannot be asked: refused, since the user's right to the Secret is unknown.
    pub fn unanswered(&self, why: &str) -> Verdict {
        let message = format!(
            "{FIELD}: cannot check whether user \"{user}\" may get Secret \"{secret}\" in namespace \"{namespace}\": \
             {why}; a Website with credentials is admitted only once that is checked, so try again",
            user = self.username(),
            secret = self.secret,
            namespace = self.namespace,
        );
        self.deny(503, "ServiceUnavailable", message)
    }

    fn deny(&self, code: u16, reason: &str, message: String) -> Verdict {
        let mut verdict = Verdict::deny(code, reason, message.clone());
        verdict.result.details = Some(StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: vec![StatusCause { reason: "FieldValueForbidden".into(), message, field: FIELD.into() }],
            retry_after_seconds: 0,
        });
        verdict
    }
}

/// What the API server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The user may get the Secret.
    Allowed,
    /// The user may not.
    Denied,
    /// No answer: the API server could not be reached, refused the review or took too long.
    Unanswered,
}

/// Where the reviewer's API server is.
#[derive(Clone)]
enum Source {
    /// Found as kube does (in-cluster service account, else kubeconfig), on first use.
    Infer,
    /// Given.
    Config(Box<kube::Config>),
    /// Nowhere: every question is refused.
    Unavailable,
    /// A client made already.
    Client(kube::Client),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Infer => f.write_str("Infer"),
            Self::Config(config) => write!(f, "Config({})", config.cluster_url),
            Self::Unavailable => f.write_str("Unavailable"),
            Self::Client(_) => f.write_str("Client"),
        }
    }
}

/// Asks the API server whether users may get Secrets, through a client made on first use: a webhook that never sees
/// credentials neither reads its kubeconfig nor opens a connection (nor keeps the code that does in memory).
pub struct AccessReviewer {
    source: Source,
    client: OnceCell<kube::Client>,
    timeout: Duration,
}

/// Whether the API server's address and credentials can be found, as kube's `Config::infer` looks for them: a pod's
/// service account (`KUBERNETES_SERVICE_HOST` and its token file), else a kubeconfig file (`KUBECONFIG`, else
/// `~/.kube/config`). Reads no file, so that a webhook that never needs them does not load the code that parses
/// them.
///
/// # Errors
/// What was looked for, when none is there.
pub fn api_server_configured() -> Result<(), String> {
    const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::env::var_os("KUBERNETES_SERVICE_PORT").is_some()
        && std::path::Path::new(TOKEN).is_file();
    if in_cluster {
        return Ok(());
    }
    let kubeconfigs: Vec<std::path::PathBuf> = match std::env::var_os("KUBECONFIG") {
        Some(paths) => std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()).collect(),
        None => {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".kube/config")).into_iter().collect()
        }
    };
    if kubeconfigs.iter().any(|path| path.is_file()) {
        return Ok(());
    }
    let looked: Vec<String> = kubeconfigs.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "no in-cluster service account (KUBERNETES_SERVICE_HOST and {TOKEN}) and no kubeconfig file (looked for: {})",
        if looked.is_empty() { "none: neither KUBECONFIG nor HOME is set".to_owned() } else { looked.join(", ") }
    ))
}

impl std::fmt::Debug for AccessReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessReviewer")
            .field("source", &self.source)
            .field("connected", &self.client.initialized())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AccessReviewer {
    /// A reviewer that finds the API server as kube does, when first asked, and waits at most `timeout` for an
    /// answer.
    pub fn inferred(timeout: Duration) -> Self {
        Self { source: Source::Infer, client: OnceCell::new(), timeout }
    }

    /// A reviewer that reaches the API server with `config`, waiting at most `timeout` for an answer.
    pub fn new(config: kube::Config, timeout: Duration) -> Self {
        Self { source: Source::Config(Box::new(config)), client: OnceCell::new(), timeout }
    }

    /// A reviewer that asks through `client`, waiting at most `timeout` for an answer.
    pub fn with_client(client: kube::Client, timeout: Duration) -> Self {
        Self { source: Source::Client(client), client: OnceCell::new(), timeout }
    }

    /// A reviewer without an API server, which refuses every question: for servers built without one (tests).
    pub fn unavailable() -> Self {
        Self { source: Source::Unavailable, client: OnceCell::new(), timeout: Duration::ZERO }
    }

    /// Asks whether `access` is granted, and turns `verdict` (what the rules concluded: admitted) into the final
    /// verdict: unchanged when it is, refused otherwise. Returns the outcome for the metrics.
    pub async fn conclude(&self, verdict: Verdict, access: &SecretAccess) -> (Verdict, Outcome) {
        let (user, namespace, secret) = (access.username(), access.namespace.as_str(), access.secret.as_str());
        let answer = match tokio::time::timeout(self.timeout, self.ask(access)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("the API server did not answer within {} s", self.timeout.as_secs_f32())),
        };
        match answer {
            Ok(status) if status.allowed && !status.denied.unwrap_or(false) => {
                info!(user, namespace, secret, "the user may get the Secret the Website refers to");
                (verdict, Outcome::Allowed)
            }
            Ok(status) => {
                let reason = status.reason.unwrap_or_default();
                info!(user, namespace, secret, reason, "denied: the user may not get the Secret the Website refers to");
                (access.refusal(&reason), Outcome::Denied)
            }
            Err(why) => {
                warn!(user, namespace, secret, error = %why, "denied: cannot check access to the Secret the Website refers to");
                (access.unanswered(&why), Outcome::Unanswered)
            }
        }
    }

    async fn ask(
        &self,
        access: &SecretAccess,
    ) -> Result<k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus, String> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let config = match &self.source {
                    Source::Infer => kube::Config::infer()
                        .await
                        .map_err(|e| format!("failed to find the API server's address and credentials: {e}"))?,
                    Source::Config(config) => (**config).clone(),
                    Source::Client(client) => return Ok(client.clone()),
                    Source::Unavailable => return Err("the webhook runs without an API server".to_owned()),
                };
                kube::Client::try_from(config).map_err(|e| format!("failed to make an API client: {e}"))
            })
            .await?;
        let review = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &access.review())
            .await
            .map_err(|e| format!("the SubjectAccessReview failed: {e}"))?;
        let status = review.status.ok_or("the SubjectAccessReview came back without a status")?;
        if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty())
            && !status.allowed
        {
            // An authorizer that failed may have denied only for want of an answer: say so.
            return Err(format!("the authorizer failed: {error}"));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn access() -> SecretAccess {
        SecretAccess {
            user: UserInfo {
                username: Some("alice".into()),
                uid: Some("u-7".into()),
                groups: Some(vec!["devs".into(), "system:authenticated".into()]),
                extra: Some(BTreeMap::from([("scopes".into(), vec!["a".into()])])),
            },
            namespace: "shop".into(),
            secret: "site-creds".into(),
        }
    }

    #[test]
    fn the_review_asks_for_get_on_the_secret_as_the_requesting_user() {
        let review = serde_json::to_value(access().review()).expect("serializes");
        assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(review["kind"], "SubjectAccessReview");
        let spec = &review["spec"];
        assert_eq!(spec["user"], "alice");
        assert_eq!(spec["uid"], "u-7");
        assert_eq!(spec["groups"], serde_json::json!(["devs", "system:authenticated"]));
        assert_eq!(spec["extra"], serde_json::json!({"scopes": ["a"]}));
        assert_eq!(
            spec["resourceAttributes"],
            serde_json::json!({"namespace": "shop", "verb": "get", "group": "", "resource": "secrets", "name": "site-creds"})
        );
    }

    #[test]
    fn a_refusal_names_the_user_the_secret_and_what_is_accepted() {
        let verdict = access().refusal("");
        assert!(!verdict.allowed);
        assert_eq!((verdict.result.code, verdict.result.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            verdict.result.message,
            "spec.credentials.secretName: user \"alice\" may not get Secret \"site-creds\" in namespace \"shop\", so \
             may not have its credentials sent to a git server; accepted: a Secret the user may get (ask for `get` on \
             it), or no credentials for a public repository"
        );
        let causes = verdict.result.details.expect("details").causes;
        assert_eq!(causes[0].field, "spec.credentials.secretName");
        assert!(access().refusal("no RBAC rule").result.message.contains("\"shop\" (no RBAC rule), so"));
    }

    /// A reviewer whose API server answers every SubjectAccessReview with `status` and `body`, after `delay`; and
    /// the reviews it received.
    fn reviewer_answering(
        status: u16,
        body: serde_json::Value,
        delay: Duration,
    ) -> (AccessReviewer, tokio::task::JoinHandle<Vec<serde_json::Value>>) {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                assert_eq!(request.method(), http::Method::POST);
                assert_eq!(request.uri().path(), "/apis/authorization.k8s.io/v1/subjectaccessreviews");
                let bytes = request.into_body().collect_bytes().await.expect("a body");
                seen.push(serde_json::from_slice(&bytes).expect("JSON"));
                tokio::time::sleep(delay).await;
                let response = Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
                    .expect("a response");
                send.send_response(response);
            }
            seen
        });
        let client = kube::Client::new(service, "default");
        (AccessReviewer::with_client(client, Duration::from_millis(500)), server)
    }

    fn answer(status: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}, "status": status})
    }

    #[tokio::test]
    async fn the_api_servers_answer_decides_and_the_review_carries_the_user() {
        let (reviewer, server) = reviewer_answering(201, answer(serde_json::json!({"allowed": true})), Duration::ZERO);
        let (verdict, outcome) = reviewer.conclude(Verdict::allow(), &access()).await;
        assert_eq!((outcome, verdict.allowed), (Outcome::Allowed, true));
        drop(reviewer);
        let sent = server.await.expect("the server ran");
        assert_eq!(sent[0]["spec"]["user"], "alice");
        assert_eq!(sent[0]["spec"]["resourceAttributes"]["name"], "site-creds");

        let denied = answer(serde_json::json!({"allowed": false, "reason": "no RBAC policy matched"}));
        let (reviewer, _) = reviewer_answering(201, denied, Duration::ZERO);
        let (verdict, outcome) = reviewer.conclude(Verdict::allow(), &access()).await;
        assert_eq!((outcome, verdict.allowed, verdict.result.code), (Outcome::Denied, false, 403));
        assert!(verdict.result.message.contains("(no RBAC policy matched)"), "{}", verdict.result.message);
        // An explicit deny wins over an allow (an authorizer chain may answer both).
        let both = answer(serde_json::json!({"allowed": true, "denied": true}));
        let (reviewer, _) = reviewer_answering(201, both, Duration::ZERO);
        assert_eq!(reviewer.conclude(Verdict::allow(), &access()).await.1, Outcome::Denied);
    }

    #[tokio::test]
    async fn every_failure_to_get_an_answer_refuses_saying_why() {
        let forbidden = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
            "reason": "Forbidden", "message": "subjectaccessreviews.authorization.k8s.io is forbidden: User \"system:serviceaccount:op:webhook\" cannot create resource"});
        let cases = [
            ("the webhook may not ask", reviewer_answering(403, forbidden, Duration::ZERO), "cannot create resource"),
            (
                "the authorizer failed",
                reviewer_answering(
                    201,
                    answer(serde_json::json!({"allowed": false, "evaluationError": "webhook authorizer down"})),
                    Duration::ZERO,
                ),
                "the authorizer failed: webhook authorizer down",
            ),
            (
                "no status",
                reviewer_answering(
                    201,
                    serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}}),
                    Duration::ZERO,
                ),
                "without a status",
            ),
            (
                "too slow",
                reviewer_answering(201, answer(serde_json::json!({"allowed": true})), Duration::from_secs(2)),
                "did not answer within 0.5 s",
            ),
        ];
        for (what, (reviewer, _server), why) in cases {
            let (verdict, outcome) = reviewer.conclude(Verdict::allow(), &access()).await;
            assert_eq!((outcome, verdict.allowed, verdict.result.code), (Outcome::Unanswered, false, 503), "{what}");
            assert!(verdict.result.message.contains(why), "{what}: {}", verdict.result.message);
            assert!(verdict.result.message.contains("so try again"), "{what}: {}", verdict.result.message);
        }
    }

    #[tokio::test]
    async fn without_an_api_server_every_question_is_refused() {
        let (verdict, outcome) = AccessReviewer::unavailable().conclude(Verdict::allow(), &access()).await;
        assert_eq!(outcome, Outcome::Unanswered);
        assert!(!verdict.allowed);
        assert_eq!(verdict.result.code, 503);
        assert!(verdict.result.message.contains("cannot check whether user \"alice\" may get Secret"), "{verdict:?}");
    }
}
