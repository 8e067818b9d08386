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

use std::fmt;

use kube::api::{Patch, PatchParams, PostParams};
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
    /// The child, controlled by this Website: it may be changed.
    Owned(K),
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

/// Reads the object named `name` and says whether the Website with `uid` may write it.
///
/// # Errors
/// When the API server refuses the read.
pub async fn claim<K>(api: &Api<K>, name: &str, uid: &str) -> Result<Claim<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let found = api.get_opt(name).await.map_err(|source| Error::Read { kind: kind_of::<K>(), source })?;
    Ok(match found {
        None => Claim::Absent,
        Some(object) if controlled_by(&object, uid) && object.meta().deletion_timestamp.is_none() => {
            Claim::Owned(object)
        }
        Some(object) => Claim::Foreign(conflict(&object)),
    })
}

/// Makes the child as `desired`, given what [`claim`] found.
///
/// An absent child is created (never applied: an apply would also change an object created in between), an owned
/// one is applied with its uid as a precondition. A creation that loses the race to someone else's object gives a
/// [`Conflict`], which the caller reports like any other.
///
/// # Errors
/// When the API server refuses the write, including an apply whose uid no longer matches.
pub async fn write<K>(api: &Api<K>, claim: Claim<K>, desired: &K) -> Result<Result<K, Conflict>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + fmt::Debug,
{
    let kind = kind_of::<K>();
    match claim {
        Claim::Foreign(conflict) => Ok(Err(conflict)),
        Claim::Absent => {
            let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
            match api.create(&params, desired).await {
                Ok(created) => Ok(Ok(created)),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let name = desired.name_any();
                    Ok(Err(Conflict { kind, name, controller: None, deleting: false }))
                }
                Err(source) => Err(Error::Apply { kind, source }),
            }
        }
        Claim::Owned(existing) => {
            let mut body = desired.clone();
            body.meta_mut().uid = existing.meta().uid.clone();
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let applied = api
                .patch(&existing.name_any(), &params, &Patch::Apply(&body))
                .await
                .map_err(|source| Error::Apply { kind, source })?;
            Ok(Ok(applied))
        }
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
