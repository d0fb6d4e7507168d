//! Tenants, and the playback signing keys they own.

use std::collections::BTreeMap;

use frameworks_events::proto::v1::tenant::{
    SigningKeyCreated, SigningKeyRevoked, TenantCreated, TenantPreferredClusterSet,
    TenantReactivated, TenantSuspended,
};
use frameworks_events::{AggregateType, Event, EventPayload};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{Aggregate, CommandContext, Decision, HandleEnv};
use crate::aggregates::infrastructure::Cluster;
use crate::bus::CommandBus;
use crate::error::{CommandError, ExecuteError};
use crate::secrets::{random_bytes, random_id};
use crate::validate;

/// Active signing keys a tenant may hold at once.
pub const MAX_ACTIVE_SIGNING_KEYS: usize = 10;
pub const TIERS: [&str; 3] = ["free", "pro", "enterprise"];

#[derive(Debug, Default)]
pub struct Tenant {
    created: bool,
    suspended: bool,
    /// kid -> still active.
    signing_keys: BTreeMap<String, bool>,
    preferred_cluster: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TenantCommand {
    Create {
        name: String,
        tier: String,
        region: String,
    },
    Suspend {
        reason: String,
        note: String,
    },
    Reactivate {
        note: String,
    },
    CreateSigningKey {
        name: String,
    },
    RevokeSigningKey {
        kid: String,
        reason: String,
    },
    /// Use [`set_preferred_cluster`], which checks that the tenant may use
    /// the cluster before it gets here.
    SetPreferredCluster {
        cluster_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantOutcome {
    Done,
    /// The private key, PKCS#8 PEM: returned this once, never stored.
    SigningKey {
        kid: String,
        private_key_pem: String,
        public_key_pem: String,
    },
}

impl Aggregate for Tenant {
    const TYPE: AggregateType = AggregateType::Tenant;
    const RESOURCE: &'static str = "tenant";
    type Command = TenantCommand;
    type Outcome = TenantOutcome;

    fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::TenantCreated(_) => self.created = true,
            EventPayload::TenantSuspended(_) => self.suspended = true,
            EventPayload::TenantReactivated(_) => self.suspended = false,
            EventPayload::SigningKeyCreated(key) => {
                self.signing_keys.insert(key.kid.clone(), true);
            }
            EventPayload::SigningKeyRevoked(key) => {
                self.signing_keys.insert(key.kid.clone(), false);
            }
            EventPayload::TenantPreferredClusterSet(set) => {
                self.preferred_cluster = Some(set.cluster_id.clone());
            }
            _ => {}
        }
    }

    fn owner(&self, aggregate_id: &str) -> Option<Uuid> {
        aggregate_id.parse().ok()
    }

    fn handle(
        &self,
        command: &TenantCommand,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<TenantOutcome>, CommandError> {
        let id = env.aggregate_id;
        if let TenantCommand::Create { name, tier, region } = command {
            // Sign-up creates the caller's own tenant; operators may create any.
            env.ctx.ensure_owner(self.owner(id), Self::RESOURCE, id)?;
            Uuid::parse_str(id)
                .map_err(|_| CommandError::invalid("id", "a tenant id is a UUID"))?;
            if self.created {
                return Err(CommandError::Conflict(format!(
                    "tenant {id} already exists"
                )));
            }
            let name = validate::name("input.name", name, 100)?;
            if !TIERS.contains(&tier.as_str()) {
                return Err(CommandError::invalid(
                    "input.tier",
                    format!("must be one of {}", TIERS.join(", ")),
                ));
            }
            let region = validate::slug("input.region", region, 32)?;
            return Ok(Decision::new(TenantOutcome::Done).event(TenantCreated {
                name,
                tier: tier.clone(),
                region,
            }));
        }
        if !self.created {
            return Err(CommandError::not_found(Self::RESOURCE, id));
        }
        env.ctx.ensure_owner(self.owner(id), Self::RESOURCE, id)?;
        match command {
            TenantCommand::Create { .. } => unreachable!("handled above"),
            TenantCommand::Suspend { reason, note } => {
                env.ctx.require_operator()?;
                if self.suspended {
                    return Err(CommandError::Conflict(format!(
                        "tenant {id} is already suspended"
                    )));
                }
                let reason = validate::slug("input.reason", reason, 64)?;
                let note = validate::text("input.note", note, 1000)?;
                Ok(Decision::new(TenantOutcome::Done).event(TenantSuspended { reason, note }))
            }
            TenantCommand::Reactivate { note } => {
                env.ctx.require_operator()?;
                if !self.suspended {
                    return Err(CommandError::Conflict(format!(
                        "tenant {id} is not suspended"
                    )));
                }
                let note = validate::text("input.note", note, 1000)?;
                Ok(Decision::new(TenantOutcome::Done).event(TenantReactivated { note }))
            }
            TenantCommand::CreateSigningKey { name } => {
                let name = validate::name("input.name", name, 100)?;
                let active = self.signing_keys.values().filter(|&&active| active).count();
                if active >= MAX_ACTIVE_SIGNING_KEYS {
                    return Err(CommandError::invalid(
                        "input",
                        format!(
                            "a tenant may hold at most {MAX_ACTIVE_SIGNING_KEYS} active signing keys; revoke one first"
                        ),
                    ));
                }
                let secret = SigningKey::from_slice(&random_bytes::<32>()).map_err(|_| {
                    CommandError::Conflict(
                        "key generation produced an invalid scalar; retry".into(),
                    )
                })?;
                let private_key_pem = secret
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| {
                        CommandError::Conflict(format!("encoding the private key failed: {e}"))
                    })?
                    .to_string();
                let public = secret.verifying_key();
                let public_key_spki = public
                    .to_public_key_der()
                    .map_err(|e| {
                        CommandError::Conflict(format!("encoding the public key failed: {e}"))
                    })?
                    .into_vec();
                let public_key_pem = public.to_public_key_pem(LineEnding::LF).map_err(|e| {
                    CommandError::Conflict(format!("encoding the public key failed: {e}"))
                })?;
                let kid = random_id::<10>();
                Ok(Decision::new(TenantOutcome::SigningKey {
                    kid: kid.clone(),
                    private_key_pem,
                    public_key_pem,
                })
                .event(SigningKeyCreated {
                    kid,
                    name,
                    algorithm: "ES256".into(),
                    public_key_spki,
                }))
            }
            TenantCommand::SetPreferredCluster { cluster_id } => {
                let cluster_id = cluster_id.to_string();
                if self.preferred_cluster.as_ref() == Some(&cluster_id) {
                    return Ok(Decision::new(TenantOutcome::Done));
                }
                Ok(Decision::new(TenantOutcome::Done)
                    .event(TenantPreferredClusterSet { cluster_id }))
            }
            TenantCommand::RevokeSigningKey { kid, reason } => match self.signing_keys.get(kid) {
                None => Err(CommandError::not_found("signing key", kid.clone())),
                Some(false) => Err(CommandError::Conflict(format!(
                    "signing key {kid} is already revoked"
                ))),
                Some(true) => {
                    let reason = validate::text("input.reason", reason, 1000)?;
                    Ok(Decision::new(TenantOutcome::Done).event(SigningKeyRevoked {
                        kid: kid.clone(),
                        reason,
                    }))
                }
            },
        }
    }
}

/// Makes `cluster_id` the tenant's preferred cluster, if the tenant may use
/// it: the platform's shared clusters, its own, and those it holds an active
/// subscription to. Any other cluster reads as not found.
pub async fn set_preferred_cluster(
    bus: &CommandBus,
    tenant_id: Uuid,
    cluster_id: Uuid,
    ctx: &CommandContext,
) -> Result<(), ExecuteError> {
    let (cluster, _) = bus.load::<Cluster>(&cluster_id.to_string()).await?;
    if !cluster.usable_by(tenant_id) {
        return Err(CommandError::not_found(Cluster::RESOURCE, cluster_id.to_string()).into());
    }
    bus.execute::<Tenant>(
        &tenant_id.to_string(),
        &TenantCommand::SetPreferredCluster { cluster_id },
        ctx,
        None,
    )
    .await?;
    Ok(())
}
