//! The cluster mutations' inputs and result unions.

use super::*;

#[derive(Debug, Clone, SimpleObject)]
pub struct CreateEnrollmentTokenResponse {
    pub bootstrap_token: BootstrapToken,
}

#[derive(Debug, Clone, Union)]
pub enum CreateEnrollmentTokenResult {
    CreateEnrollmentTokenResponse(CreateEnrollmentTokenResponse),
    ValidationError(ValidationError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, InputObject)]
pub struct SetNodeModeInput {
    /// The node's global id or its raw UUID.
    pub node_id: String,
    pub mode: NodeOperationalMode,
    /// Recorded with the change; defaults to who made it.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Union)]
pub enum SetNodeModeResult {
    InfrastructureNode(Box<InfrastructureNode>),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum SetPreferredClusterResult {
    Cluster(Box<Cluster>),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

refusal_members!(SetNodeModeResult, SetPreferredClusterResult);
