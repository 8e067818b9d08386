//! Kubernetes Events (`events.k8s.io/v1`) about Websites, deduplicated into series.
//!
//! kube-runtime's `Recorder` does the same, but keeps a copy of every event it published in the last 6 minutes (the
//! whole object, with its reference twice): at one `Created` event per new Website, that was 4 MiB with 1000
//! Websites. This recorder keeps, per event, only a 64-bit digest of what makes it the same event, its name and its
//! count: about 100 bytes.
//!
//! An event is the same as one published less than [`SERIES_WINDOW`] before when its type, action, reason, note
//! and object are: it is then counted into that event's series (a PATCH of `series`) instead of being created
//! again, so that a retry loop does not flood the API server with objects. A different note is a different event,
//! so that `kubectl describe` shows each child repaired, not only the last.
//!
//! Reconciles hand their events to an [`EventQueue`], which one background task publishes in order, as client-go's
//! event broadcaster does: a reconcile never waits for the API server to store an event, so an event costs the
//! API server a write but costs a Website no time to converge. When the queue is full (a burst of
//! [`QUEUE_CAPACITY`] events not yet published), further events are dropped, counted and logged, rather than
//! slowing reconciles down; events are informational, the status is the record.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// How long after an event the same event is counted into its series rather than created again.
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// Publishes events as `controller` (`reportingController`), from `instance` (`reportingInstance`).
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<HashMap<u64, Recent>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("controller", &self.controller).field("instance", &self.instance).finish()
    }
}

/// An event published within the window.
#[derive(Debug)]
struct Recent {
    name: String,
    count: i32,
    last: Timestamp,
}

impl Recorder {
    /// A recorder; `instance` defaults to `controller`.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            recent: Mutex::default(),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Recent>> {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes `event` about the object `regarding`, in its namespace: a new Event, or one more in the series of
    /// the same event published within [`SERIES_WINDOW`].
    ///
    /// # Errors
    /// When the API server refuses the Event.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = key(event, regarding);
        let repeat = {
            let mut recent = self.recent();
            recent.retain(|_, e| e.last + SERIES_WINDOW > now);
            recent.get(&key).map(|e| (e.name.clone(), e.count + 1))
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let (name, count) = match repeat {
            Some((name, count)) => {
                let series = EventSeries { count, last_observed_time: MicroTime(now) };
                let patch = serde_json::json!({"series": series});
                events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                (name, count)
            }
            None => {
                let created = events.create(&PostParams::default(), &self.generate(event, regarding, now)).await?;
                (created.metadata.name.unwrap_or_default(), 1)
            }
        };
        self.recent().insert(key, Recent { name, count, last: now });
        Ok(())
    }

    fn generate(&self, event: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(type_name(event.type_).to_owned()),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}

/// Events waiting for the background task at most; more are dropped.
pub const QUEUE_CAPACITY: usize = 1024;

/// Events to publish, in order, by one background task that owns the [`Recorder`].
#[derive(Debug)]
pub struct EventQueue {
    sender: mpsc::Sender<(Event, ObjectReference)>,
    dropped: AtomicU64,
    drained: Mutex<Option<oneshot::Receiver<()>>>,
}

impl EventQueue {
    /// Starts the task that publishes with `recorder`. Call it within a tokio runtime.
    pub fn start(recorder: Recorder) -> Self {
        let (sender, mut receiver) = mpsc::channel::<(Event, ObjectReference)>(QUEUE_CAPACITY);
        let (done, drained) = oneshot::channel();
        tokio::spawn(async move {
            while let Some((event, regarding)) = receiver.recv().await {
                if let Err(error) = recorder.publish(&event, &regarding).await {
                    warn!(%error, reason = %event.reason, name = regarding.name.as_deref(), "failed to publish an event");
                }
            }
            let _ = done.send(());
        });
        Self { sender, dropped: AtomicU64::new(0), drained: Mutex::new(Some(drained)) }
    }

    /// Queues `event` about `regarding`; returns at once. Returns false when it was dropped: the queue is full, or
    /// its task has stopped.
    pub fn send(&self, event: Event, regarding: ObjectReference) -> bool {
        match self.sender.try_send((event, regarding)) {
            Ok(()) => true,
            Err(error) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let (event, regarding) = match &error {
                    mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => item,
                };
                warn!(reason = %event.reason, name = regarding.name.as_deref(), dropped,
                    "event dropped: {QUEUE_CAPACITY} events are waiting to be published");
                false
            }
        }
    }

    /// How many events were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A future that completes once every sender is gone and the queued events are published (or `timeout` has
    /// passed): call it before dropping the queue, and await it after, at shutdown. Only the first call waits.
    pub fn drained(&self, timeout: Duration) -> impl std::future::Future<Output = ()> + use<> {
        let receiver = self.drained.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        async move {
            if let Some(receiver) = receiver {
                let _ = tokio::time::timeout(timeout, receiver).await;
            }
        }
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// What makes two events the same: type, action, reason, note and object.
fn key(event: &Event, regarding: &ObjectReference) -> u64 {
    let mut hasher = DefaultHasher::new();
    (type_name(event.type_), &event.action, &event.reason, &event.note).hash(&mut hasher);
    (&regarding.api_version, &regarding.kind, &regarding.namespace, &regarding.name, &regarding.uid).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    fn reference() -> ObjectReference {
        ObjectReference {
            api_version: Some("extensions.example.com/v1".into()),
            kind: Some("Website".into()),
            namespace: Some("shop".into()),
            name: Some("kubia".into()),
            uid: Some("w-uid".into()),
            ..ObjectReference::default()
        }
    }

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn the_same_event_again_is_counted_into_its_series_and_another_note_is_another_event() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let recorder = Recorder::new(Client::new(service, "default"), "website-controller", Some("pod-1".into()));
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (request, send) = handle.next_request().await.expect("a request");
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                let body = request.into_body().collect_bytes().await.expect("a body");
                let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                let mut reply = body.clone();
                if method == Method::POST {
                    reply["metadata"]["name"] = body["metadata"]["name"].clone();
                }
                send.send_response(Response::new(Body::from(serde_json::to_vec(&reply).expect("JSON"))));
                seen.push((method, path, body));
            }
            seen
        });
        let regarding = reference();
        recorder.publish(&event("ChildConflict", "Service taken"), &regarding).await.expect("published");
        recorder.publish(&event("ChildConflict", "Service taken"), &regarding).await.expect("published");
        recorder.publish(&event("ChildConflict", "Deployment taken"), &regarding).await.expect("published");
        let seen = server.await.expect("three requests");

        let (method, path, created) = &seen[0];
        assert_eq!((method, path.as_str()), (&Method::POST, "/apis/events.k8s.io/v1/namespaces/shop/events"));
        assert_eq!(created["reason"], "ChildConflict");
        assert_eq!(created["type"], "Warning");
        assert_eq!(created["reportingController"], "website-controller");
        assert_eq!(created["reportingInstance"], "pod-1");
        assert_eq!(created["regarding"]["uid"], "w-uid");
        let name = created["metadata"]["name"].as_str().expect("a name");
        assert!(name.starts_with("kubia."), "{name}");

        let (method, path, patch) = &seen[1];
        assert_eq!(method, Method::PATCH);
        assert_eq!(path, &format!("/apis/events.k8s.io/v1/namespaces/shop/events/{name}"));
        assert_eq!(patch["series"]["count"], 2);
        assert!(patch.get("note").is_none(), "{patch}");

        // Another note is another event.
        assert_eq!(seen[2].0, Method::POST);
        assert_eq!(seen[2].2["note"], "Deployment taken");
        assert_eq!(recorder.recent().len(), 2);
    }

    #[tokio::test]
    async fn queued_events_are_published_in_order_without_the_sender_waiting_and_drained_at_the_end() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let queue = EventQueue::start(Recorder::new(Client::new(service, "default"), "website-controller", None));
        let drained = queue.drained(std::time::Duration::from_secs(10));
        // Nothing answers yet: sending does not wait for the API server.
        for note in ["first", "second", "third"] {
            assert!(queue.send(event("Created", note), reference()));
        }
        drop(queue);
        let mut notes = Vec::new();
        for _ in 0..3 {
            let (request, send) = handle.next_request().await.expect("a request");
            let body = request.into_body().collect_bytes().await.expect("a body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            notes.push(body["note"].as_str().unwrap_or_default().to_owned());
            send.send_response(Response::new(Body::from(serde_json::to_vec(&body).expect("JSON"))));
        }
        assert_eq!(notes, ["first", "second", "third"]);
        tokio::time::timeout(std::time::Duration::from_secs(5), drained).await.expect("drained once published");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (service, _handle) = mock::pair::<Request<Body>, Response<Body>>();
        let queue = EventQueue::start(Recorder::new(Client::new(service, "default"), "website-controller", None));
        // The task takes one event and waits on the API server, which never answers; the queue then fills.
        let sent =
            (0..QUEUE_CAPACITY + 10).filter(|i| queue.send(event("Created", &i.to_string()), reference())).count();
        assert!((QUEUE_CAPACITY..=QUEUE_CAPACITY + 1).contains(&sent), "{sent}");
        assert_eq!(queue.dropped(), (QUEUE_CAPACITY + 10 - sent) as u64);
    }
}
