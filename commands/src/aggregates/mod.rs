//! The control plane's aggregates, one module each.

pub mod api_token;
pub mod infrastructure;
pub mod marketplace;
pub mod playback_policy;
pub mod stream;
pub mod tenant;
pub mod user;

/// Kinds of unique claims (see [`crate::store::Claim`]).
pub mod claims {
    /// Lowercased e-mail address -> user id.
    pub const USER_EMAIL: &str = "user-email";
    /// SHA-256 (hex) of an API token -> token id.
    pub const API_TOKEN_HASH: &str = "api-token-hash";
    /// SHA-256 (hex) of a stream key -> stream id.
    pub const STREAM_KEY_HASH: &str = "stream-key-hash";
    /// Playback id -> stream id.
    pub const PLAYBACK_ID: &str = "playback-id";
    /// SHA-256 (hex) of a node enrolment token -> cluster id.
    pub const ENROLMENT_TOKEN_HASH: &str = "enrolment-token-hash";
    /// Hardware fingerprint -> node id.
    pub const NODE_FINGERPRINT: &str = "node-fingerprint";
    /// SHA-256 (hex) of a cluster invite token -> cluster id.
    pub const CLUSTER_INVITE_TOKEN_HASH: &str = "cluster-invite-token-hash";
}
