//! The group service: a container group's lifecycle (create, update, tags, start, stop, restart,
//! delete) over the store, with typed errors and the after-commit effects in [`effects`].
//!
//! Front ends (the ARM routes in `http/groups.rs`, later a console) parse and validate a request,
//! call the service and render what it returns. The service seals secrets, builds operation
//! records, checks that some node could ever hold a group, turns the store's conflicts into
//! [`GroupError`]s and, once a change is committed, has its effects carried out with the node the
//! change's own transaction saw.
//!
//! # Layout
//! - [`errors`]: `GroupError`, why an operation was refused or failed.
//! - [`effects`]: `Effects`, what follows a commit (DNS zone, node gateway, scheduler).
//! - [`store`]: `ServiceStore`, the part of the store the service uses.
//! - `fqdn`: a group's FQDN from its label and reuse scope; `records`: operation and group records,
//!   the PUT-on-existing decision.

pub mod effects;
pub mod errors;
pub mod store;

mod fqdn;
mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use effects::{Committed, Effects};
pub use errors::GroupError;
pub use store::ServiceStore;

use crate::model::GroupSpec;
use crate::nodes::NodeGateway;
use crate::secrets::SecretBox;
use crate::store::{
    Change, Conflict, Desired, GroupKey, GroupRecord, NewGroup, OperationKind, OperationRecord,
    StoreError,
};
use crate::validate::{self, ValidGroup};
use crate::{Quota, now_ms};

/// A group as its caller named it (the resource group as written; lookups ignore its case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

impl GroupName {
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn key(&self) -> GroupKey {
        GroupKey::new(&self.subscription, &self.resource_group, &self.name)
    }

    fn not_found(&self) -> GroupError {
        GroupError::NotFound {
            resource_group: self.resource_group.clone(),
            name: self.name.clone(),
        }
    }
}

/// A committed change: the group as it is now and the operation that follows it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub group: GroupRecord,
    pub operation_id: String,
}

/// What a PUT did.
#[derive(Debug, Clone)]
pub enum Put {
    Created(Applied),
    /// The name existed: updated in place, or unchanged (same spec).
    Updated(Applied),
}

/// The group service: cheap to clone.
#[derive(Clone)]
pub struct GroupService {
    store: Arc<dyn ServiceStore>,
    effects: Effects,
    /// Asked whether some joined node could ever hold a group.
    gateway: NodeGateway,
    secrets: Arc<SecretBox>,
    region: String,
    /// `<region>.<zone>`: what FQDNs end in.
    dns_suffix: String,
    quota: Quota,
}

impl GroupService {
    pub fn new(
        store: Arc<dyn ServiceStore>,
        effects: Effects,
        gateway: NodeGateway,
        secrets: Arc<SecretBox>,
        (region, dns_zone): (&str, &str),
        quota: Quota,
    ) -> Self {
        Self {
            store,
            effects,
            gateway,
            secrets,
            region: region.to_owned(),
            dns_suffix: format!("{region}.{dns_zone}"),
            quota,
        }
    }

    /// The same service over another store (a test's store that injects a race in front of the
    /// real one).
    pub fn with_store(&self, store: Arc<dyn ServiceStore>) -> Self {
        Self {
            store,
            ..self.clone()
        }
    }

    // ---- reads ----

    pub async fn get(&self, name: &GroupName) -> Result<GroupRecord, GroupError> {
        self.store
            .group(&name.key())
            .await?
            .ok_or_else(|| name.not_found())
    }

    /// Groups of a subscription (optionally one resource group) with `seq > after`, in `seq` order.
    pub async fn list(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<GroupRecord>, GroupError> {
        Ok(self
            .store
            .list_groups(subscription, resource_group, after, limit)
            .await?)
    }

    // ---- changes ----

    /// PUT: creates the group, or updates it if the name exists (creates are the common case, so
    /// the insert is tried first).
    pub async fn create(&self, name: &GroupName, valid: ValidGroup) -> Result<Put, GroupError> {
        let requests = valid.spec.requests();
        self.could_ever_fit(&valid.spec).await?;
        let (sub, rg) = (&name.subscription, &name.resource_group);
        let new = NewGroup {
            id: uuid::Uuid::new_v4().to_string(),
            key: name.key(),
            resource_group_as: rg.clone(),
            location: valid.location,
            tags: valid.tags,
            sealed_spec: self.seal(&valid.spec),
            fqdn: fqdn::fqdn(&valid.spec, sub, rg, &self.dns_suffix),
            spec: valid.spec,
            now_ms: now_ms(),
            operation_id: uuid::Uuid::new_v4().to_string(),
            resource_id: crate::render::resource_id(sub, rg, &name.name),
            quota: (self.quota.groups, self.quota.cpu_millis),
        };
        match self.store.create_group(&new).await {
            Ok(()) => {}
            Err(StoreError::Conflict(Conflict::DnsLabel)) => {
                return Err(label_taken(&new.spec, &name.name));
            }
            Err(StoreError::QuotaExceeded { groups, cpu_millis }) => {
                return Err(GroupError::QuotaExceeded {
                    region: self.region.clone(),
                    quota: self.quota,
                    used_groups: groups,
                    used_cpu_millis: cpu_millis,
                    requested_cpu_millis: requests.cpu_millis,
                });
            }
            Err(StoreError::Conflict(Conflict::GroupName)) => {
                let existing =
                    self.store
                        .group(&new.key)
                        .await?
                        .ok_or_else(|| GroupError::Busy {
                            name: name.name.clone(),
                        })?;
                let valid = ValidGroup {
                    location: new.location,
                    tags: new.tags,
                    spec: new.spec,
                };
                return self.apply_update(existing, valid).await.map(Put::Updated);
            }
            Err(err) => return Err(err.into()),
        }
        self.effects.after(&new.id, Committed::Created).await;
        Ok(Put::Created(Applied {
            group: records::created(&new, rg),
            operation_id: new.operation_id,
        }))
    }

    /// PUT on a group that exists.
    pub async fn update(&self, name: &GroupName, valid: ValidGroup) -> Result<Applied, GroupError> {
        let existing = self.get(name).await?;
        self.apply_update(existing, valid).await
    }

    /// The same spec is a no-op (tags aside); an allowed change restarts the group in place; a
    /// change of OS, sizes, restart policy or network needs delete and re-create (ACI's rule).
    async fn apply_update(
        &self,
        existing: GroupRecord,
        valid: ValidGroup,
    ) -> Result<Applied, GroupError> {
        validate::update(&existing.spec, &valid.spec, &existing.name)
            .map_err(GroupError::Refused)?;
        let not_found = || GroupError::NotFound {
            resource_group: existing.resource_group.clone(),
            name: existing.name.clone(),
        };
        let sealed = self
            .store
            .sealed_spec(&existing.id)
            .await?
            .ok_or_else(not_found)?;
        let current = self.open(&sealed)?;
        let now = now_ms();
        let op = records::operation(&existing, OperationKind::Update, now);
        let changed = match records::put_plan(&current, &valid.spec, existing.provisioning_state) {
            records::PutPlan::Unchanged { status } => {
                let op = OperationRecord {
                    status,
                    ended_ms: status.is_done().then_some(now),
                    ..op.clone()
                };
                self.store.insert_operation(&op).await?;
                if existing.tags != valid.tags {
                    self.store.set_tags(&existing.id, &valid.tags, now).await?;
                }
                false
            }
            records::PutPlan::Change => {
                let sealed = self.seal(&valid.spec);
                // A new label or reuse scope is a new name, as unique as at create; the same ones
                // keep the name they gave (a `Noreuse` name is random, so is never recomputed).
                let fqdn = if label_and_scope(&current) == label_and_scope(&valid.spec) {
                    existing.fqdn.clone()
                } else {
                    fqdn::fqdn(
                        &valid.spec,
                        &existing.subscription,
                        &existing.resource_group,
                        &self.dns_suffix,
                    )
                };
                let change = self
                    .store
                    .update_group(
                        &existing.id,
                        existing.generation,
                        &valid.spec,
                        &sealed,
                        &valid.tags,
                        fqdn.as_deref(),
                        &op,
                        now,
                    )
                    .await;
                let change = match change {
                    Err(StoreError::Conflict(Conflict::DnsLabel)) => {
                        return Err(label_taken(&valid.spec, &existing.name));
                    }
                    other => other?,
                };
                match change {
                    Change::Applied { .. } => true,
                    Change::Moved => {
                        return Err(GroupError::Busy {
                            name: existing.name.clone(),
                        });
                    }
                    Change::NotFound => return Err(not_found()),
                }
            }
        };
        let group = self
            .store
            .group_by_id(&existing.id)
            .await?
            .ok_or_else(not_found)?;
        if changed {
            // The node to tell is the one the group is on after the commit (read just now), not
            // the one read before it: the group may have been placed in between.
            let node = group.node_id.as_deref();
            self.effects
                .after(&existing.id, Committed::NewGeneration { node })
                .await;
        }
        Ok(Applied {
            group,
            operation_id: op.id,
        })
    }

    /// PATCH: replaces the tags; returns the group as it is now.
    pub async fn set_tags(
        &self,
        name: &GroupName,
        tags: &BTreeMap<String, String>,
    ) -> Result<GroupRecord, GroupError> {
        let group = self.get(name).await?;
        self.store.set_tags(&group.id, tags, now_ms()).await?;
        self.store
            .group_by_id(&group.id)
            .await?
            .ok_or_else(|| name.not_found())
    }

    /// Starts a stopped group; `None` if it runs already (nothing to wait for).
    pub async fn start(&self, name: &GroupName) -> Result<Option<String>, GroupError> {
        let group = self.get(name).await?;
        if group.desired == Desired::Running {
            return Ok(None);
        }
        self.could_ever_fit(&group.spec).await?;
        let now = now_ms();
        let op = records::operation(&group, OperationKind::Start, now);
        match self.store.start_group(&group.id, &op, now).await? {
            Change::Applied { .. } => {}
            // Started by a concurrent request meanwhile: nothing left for this one to do.
            Change::Moved => return Ok(None),
            Change::NotFound => return Err(name.not_found()),
        }
        self.effects.after(&group.id, Committed::Started).await;
        Ok(Some(op.id))
    }

    /// Stops a running group (a stopped one stays as it is).
    pub async fn stop(&self, name: &GroupName) -> Result<(), GroupError> {
        let group = self.get(name).await?;
        if group.desired == Desired::Running {
            // The node to tell is the one the stop's transaction released, not the one read
            // above: the group may have been placed in between.
            let stopped = self.store.stop_group(&group.id, now_ms()).await?;
            let node = stopped.as_ref().and_then(|g| g.node_id.as_deref());
            self.effects
                .after(&group.id, Committed::Released { node })
                .await;
        }
        Ok(())
    }

    /// Restarts a running group in place; returns the operation's id.
    pub async fn restart(&self, name: &GroupName) -> Result<String, GroupError> {
        let group = self.get(name).await?;
        if group.desired == Desired::Stopped {
            return Err(GroupError::Stopped {
                resource_group: group.resource_group,
                name: group.name,
            });
        }
        let now = now_ms();
        let op = records::operation(&group, OperationKind::Restart, now);
        // As for stop: the node the restart's transaction found the group on.
        let node = self.store.restart_group(&group.id, &op, now).await?;
        let node = node.as_deref();
        self.effects
            .after(&group.id, Committed::NewGeneration { node })
            .await;
        Ok(op.id)
    }

    /// Deletes a group; returns it as it was, `None` if there was none.
    pub async fn delete(&self, name: &GroupName) -> Result<Option<GroupRecord>, GroupError> {
        match self.store.group(&name.key()).await? {
            Some(group) => self.delete_by_id(&group.id).await,
            None => Ok(None),
        }
    }

    /// Deletes a group by id: its capacity released, its billing ended, its node told, its DNS
    /// record gone. Returns the group as it was, `None` if it was gone already.
    pub async fn delete_by_id(&self, id: &str) -> Result<Option<GroupRecord>, GroupError> {
        let deleted = self.store.delete_group(id, now_ms()).await?;
        let node = deleted.as_ref().and_then(|d| d.node_id.as_deref());
        self.effects.after(id, Committed::Released { node }).await;
        Ok(deleted)
    }

    // ---- helpers ----

    async fn could_ever_fit(&self, spec: &GroupSpec) -> Result<(), GroupError> {
        let requests = spec.requests();
        if self.gateway.could_ever_fit(spec.os_type, &requests).await? {
            Ok(())
        } else {
            Err(GroupError::NoCapacity {
                region: self.region.clone(),
                os_type: spec.os_type,
                requests,
            })
        }
    }

    fn seal(&self, spec: &GroupSpec) -> Vec<u8> {
        self.secrets
            .seal(&serde_json::to_vec(spec).expect("plain data types always serialise to JSON"))
    }

    fn open(&self, sealed: &[u8]) -> Result<GroupSpec, GroupError> {
        let plain = self
            .secrets
            .open(sealed)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    }
}

/// The DNS name label and its reuse scope: what a group's FQDN is made of.
fn label_and_scope(spec: &GroupSpec) -> Option<(Option<&str>, &str)> {
    spec.ip_address
        .as_ref()
        .map(|ip| (ip.dns_name_label.as_deref(), ip.label_scope.as_str()))
}

/// `spec`'s label is taken (by another group) for group `name`.
fn label_taken(spec: &GroupSpec, name: &str) -> GroupError {
    GroupError::DnsLabelTaken {
        label: spec
            .ip_address
            .as_ref()
            .and_then(|ip| ip.dns_name_label.clone())
            .unwrap_or_default(),
        name: name.to_owned(),
    }
}
