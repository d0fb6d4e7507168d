//! REST sign-up and sign-in: `POST /auth/register` creates a tenant with its
//! owner and `POST /auth/login` checks a password; both answer a session token.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use frameworks_commands::aggregates::tenant::{Tenant, TenantCommand};
use frameworks_commands::aggregates::user::{Role, User, UserCommand, UserOutcome};
use frameworks_commands::secrets::SecretString;
use frameworks_commands::validate;
use frameworks_commands::{CommandContext, ExecuteError};
use frameworks_events::AggregateType;
use frameworks_projections::queries::accounts::{self, SignInRow};
use serde::{Deserialize, Serialize};
use tracing::warn;
use uuid::Uuid;

use crate::state::BridgeState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
    /// The new tenant's name; defaults to the e-mail address.
    #[serde(default)]
    tenant_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    token: String,
    expires_at: DateTime<Utc>,
    user_id: Uuid,
    tenant_id: Uuid,
    role: String,
}

/// A REST error: `{"code", "message", "field"?}` with its HTTP status.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl RestError {
    fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "UNAUTHORIZED",
            message: message.into(),
            field: None,
        }
    }

    fn internal(error: &dyn std::fmt::Display) -> Self {
        warn!(%error, "auth request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL",
            message: "the request could not be completed; try again".into(),
            field: None,
        }
    }
}

/// A refusal answers 4xx with the error table's status and code
/// ([`frameworks_commands::RefusalCode`]); anything else is a 500.
impl From<ExecuteError> for RestError {
    fn from(error: ExecuteError) -> Self {
        match error {
            ExecuteError::Rejected(refusal) => {
                let code = refusal.code();
                Self {
                    status: StatusCode::from_u16(code.http_status)
                        .unwrap_or(StatusCode::BAD_REQUEST),
                    code: code.code,
                    message: refusal.to_string(),
                    field: refusal.field().map(str::to_owned),
                }
            }
            other => Self::internal(&other),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        (self.status, Json(body)).into_response()
    }
}

/// `POST /auth/register`: a new tenant and its owner, signed in.
pub async fn register(
    State(state): State<Arc<BridgeState>>,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), RestError> {
    let tenant = Uuid::now_v7();
    let user = Uuid::now_v7();
    let ctx = CommandContext::for_tenant(tenant, format!("signup:{user}"));
    let email = request.email.trim().to_owned();
    // The tenant and its owner are created in one transaction: a refusal of
    // either, a taken e-mail or a crash at any moment leaves neither. The
    // tenant's name is checked here to name the REST field.
    let tenant_name = request.tenant_name.unwrap_or_else(|| email.clone());
    validate::name("input.tenantName", &tenant_name, 100)
        .map_err(|e| RestError::from(ExecuteError::Rejected(e)))?;
    let register = UserCommand::Register {
        email: email.clone(),
        display_name: request
            .display_name
            .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned()),
        password: SecretString::from(request.password),
        role: Role::Owner,
    };
    let create = TenantCommand::Create {
        name: tenant_name,
        tier: "free".into(),
        region: "default".into(),
    };
    state
        .bus
        .execute_together::<User, Tenant>(
            (&user.to_string(), &register),
            (&tenant.to_string(), &create),
            &ctx,
        )
        .await?;
    // Answer once the user can sign in (the login reads the read model).
    state
        .wait_until_projected(AggregateType::User, &user.to_string())
        .await
        .map_err(|e| RestError::internal(&e))?;
    let (token, expires_at) = state.auth.sessions().issue(user, tenant, "owner");
    Ok((
        StatusCode::CREATED,
        Json(SessionResponse {
            token,
            expires_at,
            user_id: user,
            tenant_id: tenant,
            role: "owner".into(),
        }),
    ))
}

/// `POST /auth/login`: a session for a known e-mail and its password.
pub async fn login(
    State(state): State<Arc<BridgeState>>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<SessionResponse>, RestError> {
    const REFUSED: &str = "unknown e-mail address or wrong password";
    let found = accounts::user_by_email(&state.pool, request.email.trim())
        .await
        .map_err(|e| RestError::internal(&e))?;
    let Some(SignInRow {
        id: user,
        tenant_id: Some(tenant),
        role,
    }) = found
    else {
        return Err(RestError::unauthorized(REFUSED));
    };
    let ctx = CommandContext::for_tenant(tenant, format!("login:{user}"));
    let verify = UserCommand::VerifyLogin {
        password: SecretString::from(request.password),
        client_ip: "bridge".into(),
    };
    match state
        .bus
        .execute::<User>(&user.to_string(), &verify, &ctx, None)
        .await?
    {
        UserOutcome::LoggedIn { .. } => {
            let role = role.trim_start_matches("USER_ROLE_").to_ascii_lowercase();
            let (token, expires_at) = state.auth.sessions().issue(user, tenant, &role);
            Ok(Json(SessionResponse {
                token,
                expires_at,
                user_id: user,
                tenant_id: tenant,
                role,
            }))
        }
        UserOutcome::LoginRefused { locked: true } => Err(RestError::unauthorized(
            "too many failed attempts: sign-in is locked for a while",
        )),
        _ => Err(RestError::unauthorized(REFUSED)),
    }
}
