//! Users: registration with an argon2id password hash, and login checks.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use frameworks_events::proto::v1::user::{
    UserLoginFailed, UserLoginSucceeded, UserPasswordChanged, UserRegistered, UserRole,
};
use frameworks_events::{AggregateType, Event, EventPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Decision, HandleEnv};
use crate::aggregates::claims;
use crate::error::CommandError;
use crate::secrets::SecretString;
use crate::store::Claim;
use crate::validate;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 256;
/// After this many consecutive failures, logins are refused for [`LOCKOUT`].
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT: Duration = Duration::minutes(15);

#[derive(Debug, Default)]
pub struct User {
    owner: Option<Uuid>,
    exists: bool,
    password_hash: String,
    consecutive_failures: u32,
    last_failure_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum UserCommand {
    Register {
        email: String,
        display_name: String,
        /// Left out of idempotency fingerprints: never stored in clear anywhere.
        #[serde(skip)]
        password: SecretString,
        role: Role,
    },
    VerifyLogin {
        #[serde(skip)]
        password: SecretString,
        client_ip: String,
    },
    ChangePassword {
        #[serde(skip)]
        current: SecretString,
        #[serde(skip)]
        new: SecretString,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserOutcome {
    Done,
    LoggedIn {
        user_id: String,
        tenant_id: Option<Uuid>,
    },
    LoginRefused {
        locked: bool,
    },
}

fn hash_password(password: &str) -> Result<String, CommandError> {
    let count = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&count) {
        return Err(CommandError::invalid(
            "input.password",
            format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    // Argon2id with a fresh random salt, in PHC string form.
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| CommandError::Conflict(format!("password hashing failed: {e}")))
}

impl User {
    fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.password_hash).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    }

    fn locked(&self, now: DateTime<Utc>) -> bool {
        self.consecutive_failures >= MAX_FAILURES
            && self.last_failure_at.is_some_and(|at| now - at < LOCKOUT)
    }
}

impl Aggregate for User {
    const TYPE: AggregateType = AggregateType::User;
    const RESOURCE: &'static str = "user";
    type Command = UserCommand;
    type Outcome = UserOutcome;

    fn apply(&mut self, event: &Event) {
        match &event.payload {
            EventPayload::UserRegistered(registered) => {
                self.exists = true;
                self.owner = event.tenant_id;
                self.password_hash = registered.password_hash.clone();
            }
            EventPayload::UserPasswordChanged(changed) => {
                self.password_hash = changed.password_hash.clone();
                self.consecutive_failures = 0;
            }
            EventPayload::UserLoginFailed(failed) => {
                self.consecutive_failures = failed.consecutive_failures;
                self.last_failure_at = Some(event.occurred_at);
            }
            EventPayload::UserLoginSucceeded(_) => self.consecutive_failures = 0,
            _ => {}
        }
    }

    fn owner(&self, _: &str) -> Option<Uuid> {
        self.owner
    }

    fn handle(
        &self,
        command: &UserCommand,
        env: &HandleEnv<'_>,
    ) -> Result<Decision<UserOutcome>, CommandError> {
        let id = env.aggregate_id;
        if let UserCommand::Register {
            email,
            display_name,
            password,
            role,
        } = command
        {
            env.ctx.require_tenant()?;
            if self.exists {
                return Err(CommandError::Conflict(format!("user {id} already exists")));
            }
            let email = validate::email("input.email", email)?;
            let display_name = validate::name("input.displayName", display_name, 100)?;
            let password_hash = hash_password(password.expose())?;
            let role = match role {
                Role::Owner => UserRole::Owner,
                Role::Admin => UserRole::Admin,
                Role::Member => UserRole::Member,
                Role::Viewer => UserRole::Viewer,
            };
            return Ok(Decision::new(UserOutcome::Done)
                .event(UserRegistered {
                    email: email.clone(),
                    display_name,
                    password_hash,
                    role: role as i32,
                })
                .claim(Claim::new(claims::USER_EMAIL, email)));
        }
        if !self.exists {
            return Err(CommandError::not_found(Self::RESOURCE, id));
        }
        match command {
            UserCommand::Register { .. } => unreachable!("handled above"),
            UserCommand::VerifyLogin {
                password,
                client_ip,
            } => {
                if self.locked(env.ctx.now) {
                    return Ok(Decision::new(UserOutcome::LoginRefused { locked: true }));
                }
                let client_ip = validate::text("input.clientIp", client_ip, 64)?;
                if self.verify(password.expose()) {
                    Ok(Decision::new(UserOutcome::LoggedIn {
                        user_id: id.to_owned(),
                        tenant_id: self.owner,
                    })
                    .event(UserLoginSucceeded { client_ip }))
                } else {
                    let consecutive_failures = self.consecutive_failures + 1;
                    Ok(Decision::new(UserOutcome::LoginRefused {
                        locked: consecutive_failures >= MAX_FAILURES,
                    })
                    .event(UserLoginFailed {
                        consecutive_failures,
                        client_ip,
                    }))
                }
            }
            UserCommand::ChangePassword { current, new } => {
                env.ctx.ensure_owner(self.owner, Self::RESOURCE, id)?;
                if !self.verify(current.expose()) {
                    return Err(CommandError::Unauthenticated(
                        "the current password is wrong".into(),
                    ));
                }
                let password_hash = hash_password(new.expose())?;
                Ok(Decision::new(UserOutcome::Done).event(UserPasswordChanged { password_hash }))
            }
        }
    }
}
