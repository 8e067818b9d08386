//! May the user do this: delegated authorization, a SubjectAccessReview at the main API server for each request,
//! with the answers reused for a short while (as Kubernetes' own delegating authorizer does).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::PostParams;
use kube::{Api, Client};
use website_crd::GROUP;
use website_crd::v1alpha1::VERSION_V1ALPHA1;

use crate::authn::UserInfo;
use crate::status::ApiError;

/// Most answers kept; when full, expired ones are dropped, and if that is not enough, all.
const CACHE_CAPACITY: usize = 4096;

/// What a request does, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: &'static str,
    /// The namespace; `None` across all namespaces.
    pub namespace: Option<String>,
    /// The object's name; `None` for a collection.
    pub name: Option<String>,
}

impl Attributes {
    /// Why `user` is refused, as the API server says it.
    pub fn forbidden(&self, user: &UserInfo, reason: &str) -> ApiError {
        let object = match &self.name {
            Some(name) => format!("{} {name:?}", crate::status::GROUP_RESOURCE),
            None => crate::status::GROUP_RESOURCE.to_owned(),
        };
        let scope = match &self.namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_owned(),
        };
        let mut message = format!(
            "{object} is forbidden: User {:?} cannot {} resource \"websites\" in API group \"{GROUP}\" {scope}",
            user.username, self.verb
        );
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        ApiError::forbidden(message)
    }
}

/// The authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allowed,
    /// Not allowed, with the authorizer's reason (possibly empty).
    Denied(String),
}

type Key = (UserInfo, Attributes);

/// Asks the main API server whether a user may do something, and remembers the answer for `ttl`.
pub struct Authorizer {
    api: Api<SubjectAccessReview>,
    ttl: Duration,
    timeout: Duration,
    cache: Mutex<HashMap<Key, (Decision, Instant)>>,
}

impl Authorizer {
    /// An authorizer asking through `client`.
    pub fn new(client: Client, ttl: Duration, timeout: Duration) -> Self {
        Self { api: Api::all(client), ttl, timeout, cache: Mutex::new(HashMap::new()) }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Decision, Instant)>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `user` may do `attributes` to `v1alpha1` Websites.
    ///
    /// # Errors
    /// 503 when the API server does not answer within the timeout or refuses the review: never an allow.
    pub async fn authorize(&self, user: &UserInfo, attributes: &Attributes) -> Result<Decision, ApiError> {
        let key = (user.clone(), attributes.clone());
        if let Some((decision, at)) = self.cache().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(decision.clone());
        }
        let review = review(user, attributes);
        let answer = tokio::time::timeout(self.timeout, self.api.create(&PostParams::default(), &review))
            .await
            .map_err(|_| {
                ApiError::unavailable(format!(
                    "the API server did not answer the authorization check (a SubjectAccessReview) within {} s",
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| {
                ApiError::unavailable(format!("the authorization check (a SubjectAccessReview) failed: {e}"))
            })?;
        let status = answer.status.unwrap_or_default();
        let decision = decide(&status);
        if !self.ttl.is_zero() {
            let mut cache = self.cache();
            if cache.len() >= CACHE_CAPACITY {
                let ttl = self.ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key, (decision.clone(), Instant::now()));
        }
        Ok(decision)
    }
}

fn decide(status: &SubjectAccessReviewStatus) -> Decision {
    if status.allowed && status.denied != Some(true) {
        Decision::Allowed
    } else {
        let reason = status.reason.clone().unwrap_or_default();
        let reason = match &status.evaluation_error {
            Some(error) if !error.is_empty() => format!("{reason} ({error})"),
            _ => reason,
        };
        Decision::Denied(reason.trim().to_owned())
    }
}

/// The SubjectAccessReview for `user` doing `attributes`: the user's every attribute, the resource of this server.
pub fn review(user: &UserInfo, attributes: &Attributes) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.to_owned()),
                version: Some(VERSION_V1ALPHA1.to_owned()),
                resource: Some("websites".to_owned()),
                verb: Some(attributes.verb.to_owned()),
                namespace: attributes.namespace.clone(),
                name: attributes.name.clone(),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            username: "alice".into(),
            groups: vec!["dev".into()],
            extra: [("scopes".to_owned(), vec!["a".to_owned()])].into(),
        }
    }

    #[test]
    fn the_review_carries_every_attribute_of_the_user_and_the_v1alpha1_resource() {
        let attributes = Attributes { verb: "update", namespace: Some("shop".into()), name: Some("kubia".into()) };
        let review = serde_json::to_value(review(&alice(), &attributes)).expect("json");
        let spec = &review["spec"];
        assert_eq!(spec["user"], "alice");
        assert_eq!(spec["groups"], serde_json::json!(["dev"]));
        assert_eq!(spec["extra"]["scopes"], serde_json::json!(["a"]));
        let resource = &spec["resourceAttributes"];
        assert_eq!(resource["group"], "extensions.example.com");
        assert_eq!(resource["version"], "v1alpha1");
        assert_eq!(resource["resource"], "websites");
        assert_eq!(resource["verb"], "update");
        assert_eq!(resource["namespace"], "shop");
        assert_eq!(resource["name"], "kubia");
    }

    #[test]
    fn only_an_allow_without_a_deny_allows() {
        let allowed = SubjectAccessReviewStatus { allowed: true, ..Default::default() };
        assert_eq!(decide(&allowed), Decision::Allowed);
        let denied = SubjectAccessReviewStatus { allowed: true, denied: Some(true), ..Default::default() };
        assert!(matches!(decide(&denied), Decision::Denied(_)));
        let silent = SubjectAccessReviewStatus {
            allowed: false,
            evaluation_error: Some("webhook down".into()),
            ..Default::default()
        };
        assert_eq!(decide(&silent), Decision::Denied("(webhook down)".into()));
    }

    #[test]
    fn a_refusal_reads_like_the_api_servers() {
        let attributes = Attributes { verb: "get", namespace: Some("shop".into()), name: Some("kubia".into()) };
        let error = attributes.forbidden(&alice(), "");
        assert_eq!(error.code, 403);
        assert_eq!(
            error.message,
            "websites.extensions.example.com \"kubia\" is forbidden: User \"alice\" cannot get resource \"websites\" \
             in API group \"extensions.example.com\" in the namespace \"shop\""
        );
    }
}
