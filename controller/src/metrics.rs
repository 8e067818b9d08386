//! Prometheus metrics of the controller, served in the text format at `/metrics` on the health listener.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `website_controller_reconciles_total` | counter | `result` | reconciles, by how they ended |
//! | `website_controller_reconcile_duration_seconds` | histogram | | time of one reconcile |
//! | `website_controller_child_conflicts_total` | counter | `kind` | children found taken by an object the Website does not control |
//! | `website_controller_watch_errors_total` | counter | `kind` | watch failures (the watch is retried with backoff) |
//! | `website_controller_websites` | gauge | `ready` | Websites in the cache by their `Ready` condition, counted at each scrape |
//! | `website_controller_leader` | gauge | | 1 while this replica holds the Lease and reconciles, 0 while it stands by |
//! | `website_controller_api_writes_total` | counter | `resource` | requests other than GET this process sent to the API server |

use std::sync::Mutex;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use website_crd::{Website, WebsiteStatus};

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lowercase")]
pub enum Outcome {
    /// Children and status as declared.
    success,
    /// A child's name is taken by an object the Website does not control; retried with backoff.
    conflict,
    /// The stored spec breaks the rules; nothing written but the status.
    invalid_spec,
    /// The Website is being deleted; garbage collection removes its children.
    deleted,
    /// The API server refused a read or a write; retried with backoff.
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
}

/// The controller's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    conflicts: Family<KindLabels, Counter>,
    watch_errors: Family<KindLabels, Counter>,
    websites: Family<ReadyLabels, Gauge>,
    website_cache: Mutex<Option<Store<Website>>>,
    leader: Gauge,
    writes: Family<ResourceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, with no sample yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("website_controller");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register("reconciles", "Reconciles of a Website, by how they ended", reconciles.clone());
        // From 1 ms to about 16 s.
        let duration = Histogram::new(exponential_buckets(0.001, 4.0, 8));
        registry.register_with_unit("reconcile_duration", "Time of one reconcile", Unit::Seconds, duration.clone());
        let conflicts = Family::<KindLabels, Counter>::default();
        registry.register(
            "child_conflicts",
            "Children found taken by an object the Website does not control, by kind",
            conflicts.clone(),
        );
        let watch_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Watch failures, by kind; each is retried with backoff",
            watch_errors.clone(),
        );
        let websites = Family::<ReadyLabels, Gauge>::default();
        registry.register("websites", "Websites by the status of their Ready condition", websites.clone());
        let writes = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Requests other than GET this process sent to the API server, by resource",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles, 0 while it stands by",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            duration,
            conflicts,
            watch_errors,
            websites,
            website_cache: Mutex::new(None),
            leader,
            writes,
        }
    }

    /// Counts a request to the API server, if it writes: any method but GET (and HEAD), by the resource of its
    /// path, e.g. `deployments`, `websites` for a status patch, `leases`.
    pub fn request(&self, method: &http::Method, path: &str) {
        if method == http::Method::GET || method == http::Method::HEAD {
            return;
        }
        self.writes.get_or_create(&ResourceLabels { resource: resource_of(path).to_owned() }).inc();
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Counts a reconcile that ended with `outcome`.
    pub fn reconciled(&self, outcome: Outcome) {
        self.reconciles.get_or_create(&OutcomeLabels { result: outcome }).inc();
    }

    /// Records how long a reconcile took.
    pub fn observe_duration(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Counts a child of `kind` whose name is taken.
    pub fn conflict(&self, kind: &str) {
        self.conflicts.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    /// Counts a failure of the watch of `kind`.
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors.get_or_create(&KindLabels { kind: kind.to_owned() }).inc();
    }

    /// The cache of Websites whose `Ready` conditions the `website_controller_websites` gauge counts.
    pub fn count_websites_of(&self, cache: Store<Website>) {
        *self.website_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cache);
    }

    /// The metrics in the Prometheus text format, the Websites counted now.
    pub fn encode(&self) -> String {
        let cache = self.website_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(cache) = cache {
            let (mut ready, mut not_ready, mut unknown) = (0, 0, 0);
            for website in cache.state() {
                match website.status.as_ref().and_then(WebsiteStatus::ready_condition).map(|c| c.status.as_str()) {
                    Some("True") => ready += 1,
                    Some("False") => not_ready += 1,
                    _ => unknown += 1,
                }
            }
            for (label, count) in [("True", ready), ("False", not_ready), ("Unknown", unknown)] {
                self.websites.get_or_create(&ReadyLabels { ready: label }).set(count);
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The resource a request path names: the segment after `namespaces/<namespace>`, or after the group version of a
/// cluster-wide path (`/api/v1/...`, `/apis/<group>/<version>/...`).
fn resource_of(path: &str) -> &str {
    let mut segments = path.trim_start_matches('/').split('/');
    let skip = match segments.next() {
        Some("api") => 1,
        Some("apis") => 2,
        _ => return "other",
    };
    let mut rest = segments.skip(skip);
    match rest.next() {
        Some("namespaces") => {
            let _namespace = rest.next();
            rest.next().unwrap_or("namespaces")
        }
        Some(resource) if !resource.is_empty() => resource,
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_counted_by_the_resource_of_their_path_and_reads_not_at_all() {
        let metrics = Metrics::new();
        metrics.request(&http::Method::POST, "/apis/apps/v1/namespaces/shop/deployments");
        metrics.request(&http::Method::PATCH, "/apis/apps/v1/namespaces/shop/deployments/kubia");
        metrics.request(&http::Method::PATCH, "/apis/extensions.example.com/v1/namespaces/shop/websites/kubia/status");
        metrics.request(&http::Method::POST, "/api/v1/namespaces/shop/services");
        metrics
            .request(&http::Method::PATCH, "/apis/coordination.k8s.io/v1/namespaces/default/leases/website-controller");
        metrics.request(&http::Method::GET, "/apis/apps/v1/namespaces/shop/deployments/kubia");
        let text = metrics.encode();
        for line in [
            r#"website_controller_api_writes_total{resource="deployments"} 2"#,
            r#"website_controller_api_writes_total{resource="websites"} 1"#,
            r#"website_controller_api_writes_total{resource="services"} 1"#,
            r#"website_controller_api_writes_total{resource="leases"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
        assert_eq!(resource_of("/api/v1/namespaces"), "namespaces");
        assert_eq!(resource_of("/apis/rbac.authorization.k8s.io/v1/clusterroles/x"), "clusterroles");
        assert_eq!(resource_of("/version"), "other");
    }
}
