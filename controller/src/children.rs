//! Which children a Website may write: the objects it controls, and nothing else.
//!
//! A Website's children are named after it, so an object of the same name can exist before the Website does:
//! another user's Service, the API server's own `kubernetes` Service, or a child of an older Website of that name
//! still waiting for the garbage collector. The controller therefore:
//! - creates a child with a POST when it is absent, so that it never overwrites an object created in between;
//! - changes a child only while this Website controls it (a `controller: true` owner reference with the
//!   Website's uid), and puts the child's own `metadata.uid` into every apply, so that an object deleted and
//!   recreated by someone else in between makes the apply fail instead of rewriting that object;
//! - leaves every other object untouched and reports it as a [`Conflict`].
//!
//! Children the controller labelled are cached (reflector stores, without their managed fields), so a reconcile
//! with nothing to change reads nothing from the API server and writes nothing: a child is written only when what
//! is observed no longer [`covers`] what is declared (a hand edit of a Service's spec included, which changes no
//! generation).
//!
//! An object not in the cache is absent or someone else's. A Website that reports no conflict creates such a child
//! straight away and reads the object only when the create answers that the name is taken: a new Website costs
//! one request per child, not two. A Website that reports a conflict reads first, so that its retries write
//! nothing while the object is in the way. Either way a child is only ever created, never overwritten, and one
//! that a reconcile created before it met a conflict is deleted again (by uid), so a Website in conflict keeps no
//! children it did not already have.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::reconcile::FIELD_MANAGER;
use crate::{Error, Result};

/// An object with a child's name that the Website does not control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Kind of the object, e.g. `Service`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Who controls it, as `Kind/name`, if anyone does.
    pub controller: Option<String>,
    /// Whether it is being deleted (then the conflict resolves by itself).
    pub deleting: bool,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleting {
            return write!(f, "{} \"{}\" is being deleted; waiting for it to go", self.kind, self.name);
        }
        write!(f, "{} \"{}\" already exists and is not controlled by this Website", self.kind, self.name)?;
        if let Some(owner) = &self.controller {
            write!(f, " (it is controlled by {owner})")?;
        }
        write!(f, "; delete or rename that object, or rename the Website")
    }
}

/// Whether `object` has a `controller: true` owner reference with `uid`.
pub fn controlled_by<K: Resource>(object: &K, uid: &str) -> bool {
    object.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// What the API server holds under a child's name.
#[derive(Debug)]
pub enum Claim<K> {
    /// Nothing: the child may be created.
    Absent,
    /// The child, controlled by this Website, as read from the API server: it may be changed.
    Owned(K),
    /// The child, controlled by this Website, as the cache keeps it (without its spec): it may be changed.
    Cached(K),
    /// Someone else's object: hands off.
    Foreign(Conflict),
}

fn conflict<K: Resource<DynamicType = ()>>(object: &K) -> Conflict {
    Conflict {
        kind: kind_of::<K>(),
        name: object.name_any(),
        controller: object
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name)),
        deleting: object.meta().deletion_timestamp.is_some(),
    }
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // The kinds of the children are static strings in k8s-openapi.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

fn claim_of<K: Resource<DynamicType = ()> + Clone>(object: &K, uid: &str) -> Claim<K> {
    if controlled_by(object, uid) && object.meta().deletion_timestamp.is_none() {
        Claim::Owned(object.clone())
    } else {
        Claim::Foreign(conflict(object))
    }
}

/// What a cache keeps of a child of kind `K`, turned back into a `K` holding at least the child's metadata.
pub trait CachedChild<K> {
    /// The child as far as the cache knows it.
    fn child(&self) -> K;
}

impl<K: Resource<DynamicType = ()> + Default> CachedChild<K> for PartialObjectMeta<K> {
    fn child(&self) -> K {
        let mut child = K::default();
        *child.meta_mut() = self.metadata.clone();
        child
    }
}

impl CachedChild<Deployment> for Deployment {
    fn child(&self) -> Deployment {
        self.clone()
    }
}

/// Says whether the Website with `uid` may write the object named `name` in `namespace`: from `cache` when it holds
/// the object, else, when `read_uncached`, by reading it from the API server. Without `read_uncached` an object
/// missing from the cache is taken to be [`Claim::Absent`], and [`write`] finds out whose it is if the create
/// answers that it exists.
///
/// # Errors
/// When the API server refuses the read.
pub async fn claim<K, C>(
    api: &Api<K>,
    cache: Option<&Store<C>>,
    (namespace, name): (&str, &str),
    uid: &str,
    read_uncached: bool,
) -> Result<Claim<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
    C: Resource<DynamicType = ()> + Clone + CachedChild<K>,
{
    if let Some(cached) = cache.and_then(|store| store.get(&ObjectRef::new(name).within(namespace))) {
        return Ok(match claim_of(&cached.child(), uid) {
            Claim::Owned(object) => Claim::Cached(object),
            other => other,
        });
    }
    if !read_uncached {
        return Ok(Claim::Absent);
    }
    let found = api.get_opt(name).await.map_err(|source| Error::Read { kind: kind_of::<K>(), source })?;
    Ok(match found {
        None => Claim::Absent,
        Some(object) => claim_of(&object, uid),
    })
}

/// Whether `observed` holds every field of `declared` with the same value: maps may have more keys (what the API
/// server defaults, what others add), lists must have the same length, and everything else must be equal. This is
/// what server-side apply of `declared` would leave unchanged.
pub fn covers(observed: &serde_json::Value, declared: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (observed, declared) {
        (Value::Object(o), Value::Object(d)) => d.iter().all(|(k, dv)| o.get(k).is_some_and(|ov| covers(ov, dv))),
        (Value::Array(o), Value::Array(d)) => o.len() == d.len() && o.iter().zip(d).all(|(ov, dv)| covers(ov, dv)),
        (o, d) => o == d,
    }
}

/// What the controller last saw of each child it wrote or checked: a digest of the object's uid and
/// resourceVersion and of what the controller declared, keyed by a digest of the child's kind, namespace and name
/// (16 bytes a child). A child whose digest is still that one is as declared without reading it again: any write by
/// anyone changes its resourceVersion.
#[derive(Debug, Default)]
pub struct Verified {
    seen: Mutex<HashMap<u64, u64>>,
}

impl Verified {
    fn key<K: Resource<DynamicType = ()>>(object: &K) -> u64 {
        digest_of(&(kind_of::<K>(), object.meta().namespace.as_deref(), object.meta().name.as_deref()))
    }

    fn seen<K: Resource<DynamicType = ()>>(object: &K, declared: u64) -> Option<u64> {
        let meta = object.meta();
        Some(digest_of(&(meta.uid.as_deref()?, meta.resource_version.as_deref()?, declared)))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unchanged<K: Resource<DynamicType = ()>>(&self, object: &K, declared: u64) -> bool {
        Self::seen(object, declared).is_some_and(|now| self.map().get(&Self::key(object)) == Some(&now))
    }

    fn record<K: Resource<DynamicType = ()>>(&self, object: &K, declared: u64) {
        if let Some(seen) = Self::seen(object, declared) {
            self.map().insert(Self::key(object), seen);
        }
    }

    /// Forgets what was seen of the child of kind `K` named `name` in `namespace`.
    pub fn forget<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        self.map().remove(&digest_of(&(kind_of::<K>(), Some(namespace), Some(name))));
    }
}

fn digest_of<T: std::hash::Hash>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

fn digest(value: &serde_json::Value) -> u64 {
    digest_of(&value.to_string())
}

/// What [`write`] did to a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Created it: it was absent.
    Created,
    /// Applied the declaration again: it had drifted (a hand edit, or another writer).
    Repaired,
    /// Nothing: it was as declared.
    None,
}

/// Makes the child as `desired`, given what [`claim`] found.
///
/// An absent child is created (never applied: an apply would also change an object created in between). An owned
/// one is left alone when it is as declared: unchanged since the controller last wrote or checked it (see
/// [`Verified`]), or, read again, still covering the declaration; otherwise it is applied with its uid as a
/// precondition. When the create answers that the name is taken, the object is read: someone else's gives a
/// [`Conflict`], which the caller reports like any other, and one this Website (with `uid`) controls, which the
/// cache had not seen yet, is treated as owned. Returns the child as last seen (possibly from the cache, without
/// the fields the cache drops), and what was done to it.
///
/// # Errors
/// When the API server refuses a read or the write, including an apply whose uid no longer matches.
pub async fn write<K>(
    api: &Api<K>,
    claim: Claim<K>,
    desired: &K,
    (uid, verified): (&str, &Verified),
) -> Result<Result<(K, Change), Conflict>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + fmt::Debug,
{
    let kind = kind_of::<K>();
    let declared_value = serde_json::to_value(desired).map_err(|e| Error::Encode { kind, reason: e.to_string() })?;
    let declared = digest(&declared_value);
    let existing = match claim {
        Claim::Foreign(conflict) => return Ok(Err(conflict)),
        Claim::Absent => {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            match api.create(&params, desired).await {
                Ok(created) => {
                    verified.record(&created, declared);
                    return Ok(Ok((created, Change::Created)));
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let name = desired.name_any();
                    let found = api.get_opt(&name).await.map_err(|source| Error::Read { kind, source })?;
                    match found.map(|object| claim_of(&object, uid)) {
                        Some(Claim::Owned(existing)) => existing,
                        Some(Claim::Foreign(conflict)) => return Ok(Err(conflict)),
                        // Deleted again in between: the next reconcile creates it.
                        Some(Claim::Absent | Claim::Cached(_)) | None => return Err(Error::Gone { kind, name }),
                    }
                }
                Err(source) => return Err(Error::Apply { kind, source }),
            }
        }
        Claim::Cached(cached) if verified.unchanged(&cached, declared) => return Ok(Ok((cached, Change::None))),
        // Changed since last seen, by anyone (a status update, a hand edit): read it whole.
        Claim::Cached(cached) => api
            .get_opt(&cached.name_any())
            .await
            .map_err(|source| Error::Read { kind, source })?
            .filter(|existing| existing.meta().uid == cached.meta().uid)
            .ok_or_else(|| Error::Gone { kind, name: cached.name_any() })?,
        Claim::Owned(existing) => existing,
    };
    if serde_json::to_value(&existing).is_ok_and(|observed| covers(&observed, &declared_value)) {
        verified.record(&existing, declared);
        return Ok(Ok((existing, Change::None)));
    }
    adopt_created_fields(api, &existing).await.map_err(|source| Error::Apply { kind, source })?;
    let mut body = desired.clone();
    body.meta_mut().uid = existing.meta().uid.clone();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&existing.name_any(), &params, &Patch::Apply(&body))
        .await
        .map_err(|source| Error::Apply { kind, source })?;
    verified.record(&applied, declared);
    Ok(Ok((applied, Change::Repaired)))
}

/// Deletes `created`, a child that this reconcile created before it met a conflict, on the condition that it is
/// still that object (its uid): a Website in conflict keeps no children it did not already have.
///
/// # Errors
/// When the API server refuses the delete; an object already gone is not an error.
pub async fn undo_create<K>(api: &Api<K>, created: &K, verified: &Verified) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let kind = kind_of::<K>();
    let name = created.name_any();
    verified.forget::<K>(created.meta().namespace.as_deref().unwrap_or_default(), &name);
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: created.meta().uid.clone(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Undo { kind, name, source }),
    }
}

/// Makes the fields the controller's own create set (a POST, recorded as an `Update` of [`FIELD_MANAGER`] in
/// `managedFields`) fields of its apply, before it applies to `existing` for the first time.
///
/// Server-side apply removes a field that the applier stops declaring only when no other entry of `managedFields`
/// owns it, and the create's `Update` entry is another entry: without this, a volume, a mount or an environment
/// variable dropped from the declaration (the Secret of a Website made public again) would stay in the child for
/// ever. The entries are changed by a JSON patch conditioned on the child's uid and resourceVersion, which changes
/// no field of the child (the approach of client-go's `csaupgrade`).
async fn adopt_created_fields<K>(api: &Api<K>, existing: &K) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + fmt::Debug,
{
    let meta = existing.meta();
    let Some(entries) = meta.managed_fields.as_deref().and_then(adopted) else {
        return Ok(());
    };
    let (Some(uid), Some(version)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) else {
        return Ok(());
    };
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/metadata/managedFields", "value": entries},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(&existing.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok(())
}

/// `entries` with the controller's create entry merged into its apply entry (or turned into one); `None` when there
/// is no create entry.
fn adopted(entries: &[ManagedFieldsEntry]) -> Option<Vec<ManagedFieldsEntry>> {
    let ours = |entry: &ManagedFieldsEntry, operation: &str| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some(operation)
            && entry.subresource.as_deref().unwrap_or_default().is_empty()
    };
    let created = entries.iter().position(|entry| ours(entry, "Update"))?;
    let mut entries = entries.to_vec();
    let mut created = entries.remove(created);
    match entries.iter_mut().find(|entry| ours(entry, "Apply")) {
        Some(applied) => {
            let mut fields = applied.fields_v1.take().map(|f| f.0).unwrap_or_else(|| serde_json::json!({}));
            union(&mut fields, created.fields_v1.map(|f| f.0).unwrap_or_default());
            applied.fields_v1 = Some(FieldsV1(fields));
        }
        None => {
            created.operation = Some("Apply".into());
            entries.push(created);
        }
    }
    Some(entries)
}

/// Adds every field of the `FieldsV1` set `other` to `fields`.
fn union(fields: &mut serde_json::Value, other: serde_json::Value) {
    use serde_json::Value;
    match (fields, other) {
        (Value::Object(fields), Value::Object(other)) => {
            for (key, value) in other {
                match fields.get_mut(&key) {
                    Some(existing) => union(existing, value),
                    None => {
                        fields.insert(key, value);
                    }
                }
            }
        }
        (fields, other) if fields.is_null() => *fields = other,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    fn service(owners: Vec<OwnerReference>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("kubia".into()),
                owner_references: Some(owners),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    fn owner(kind: &str, name: &str, uid: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        }
    }

    #[test]
    fn only_a_controller_reference_with_the_websites_uid_counts() {
        assert!(controlled_by(&service(vec![owner("Website", "kubia", "u1", Some(true))]), "u1"));
        assert!(!controlled_by(&service(vec![owner("Website", "kubia", "u0", Some(true))]), "u1"), "older Website");
        assert!(!controlled_by(&service(vec![owner("Website", "kubia", "u1", None)]), "u1"), "not its controller");
        assert!(!controlled_by(&service(vec![owner("Website", "kubia", "u1", Some(false))]), "u1"));
        assert!(!controlled_by(&service(vec![]), "u1"));
    }

    #[test]
    fn an_observed_object_covers_what_was_declared_despite_defaults_but_not_after_an_edit() {
        use serde_json::json;
        let declared = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]},
            "metadata": {"labels": {"a": "1"}}});
        let defaulted = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.7", "sessionAffinity": "None",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
            "metadata": {"labels": {"a": "1", "added-by": "someone"}, "uid": "u"}});
        assert!(covers(&defaulted, &declared));
        let edited = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]},
            "metadata": {"labels": {"a": "1"}}});
        assert!(!covers(&edited, &declared), "a changed value");
        let more_ports = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81}]},
            "metadata": {"labels": {"a": "1"}}});
        assert!(!covers(&more_ports, &declared), "a list of another length");
        let label_gone = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]},
            "metadata": {"labels": {}}});
        assert!(!covers(&label_gone, &declared), "a removed field");
    }

    fn entry(
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            api_version: Some("apps/v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: subresource.map(Into::into),
            time: None,
        }
    }

    #[test]
    fn the_fields_of_the_controllers_create_become_fields_of_its_apply() {
        let created = serde_json::json!({"f:spec": {"f:volumes": {"k:{\"name\":\"git-credentials\"}": {".": {}}}, "f:replicas": {}}});
        let others = entry("kubectl-edit", "Update", None, serde_json::json!({"f:metadata": {"f:labels": {}}}));
        let status = entry(FIELD_MANAGER, "Update", Some("status"), serde_json::json!({"f:status": {}}));
        // Only a create entry: it becomes the apply entry.
        let entries = vec![entry(FIELD_MANAGER, "Update", None, created.clone()), others.clone(), status.clone()];
        let converted = adopted(&entries).expect("a create entry");
        assert_eq!(
            converted,
            vec![others.clone(), status.clone(), entry(FIELD_MANAGER, "Apply", None, created.clone())]
        );
        // Both: merged into the apply entry.
        let applied = serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {}}});
        let entries = vec![entry(FIELD_MANAGER, "Update", None, created), entry(FIELD_MANAGER, "Apply", None, applied)];
        let merged = adopted(&entries).expect("a create entry");
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].fields_v1.as_ref().expect("fields").0,
            serde_json::json!({"f:spec": {"f:replicas": {}, "f:template": {},
                "f:volumes": {"k:{\"name\":\"git-credentials\"}": {".": {}}}}})
        );
        assert_eq!(merged[0].operation.as_deref(), Some("Apply"));
        // Nothing to adopt: other managers' entries and the status subresource's are left alone.
        assert_eq!(adopted(&[others, status]), None);
    }

    #[test]
    fn conflicts_name_the_object_and_its_controller() {
        let foreign = conflict(&service(vec![owner("Deployment", "shop", "x", Some(true))]));
        assert_eq!(
            foreign.to_string(),
            "Service \"kubia\" already exists and is not controlled by this Website (it is controlled by \
             Deployment/shop); delete or rename that object, or rename the Website"
        );
        let orphan = conflict(&service(vec![]));
        assert_eq!(
            orphan.to_string(),
            "Service \"kubia\" already exists and is not controlled by this Website; delete or rename that object, \
             or rename the Website"
        );
        let mut going = service(vec![owner("Website", "kubia", "old", Some(true))]);
        going.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(conflict(&going).to_string(), "Service \"kubia\" is being deleted; waiting for it to go");
    }
}
