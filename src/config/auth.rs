//! How tokens are checked and signed: the HS256 secret, the keys by `kid`, issuer and audience.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::sections::check;
use super::{ConfigError, secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret (at least 32 bytes); its tokens carry no `kid` or `kid = "default"`.
    #[serde(serialize_with = "secret::serialize")]
    pub jwt_secret: Option<SecretString>,
    /// Further keys, selected by a token's `kid` (rotation without downtime): the settings
    /// file only, since a list of keys has no environment form.
    #[serde(skip_serializing)]
    pub keys: Vec<KeySettings>,
    /// The `kid` that `token issue` signs with when none is given.
    pub signing_kid: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
    /// Lifetime of tokens from `token issue` when `--ttl` is not given (e.g. `30d`).
    pub default_ttl: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            keys: Vec::new(),
            signing_kid: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            default_ttl: "30d".into(),
        }
    }
}

/// Secrets printed in this project's own documents: whoever copies one has no secret at all.
pub const PUBLISHED_SECRETS: [&str; 1] = ["change-me-to-at-least-32-random-bytes"];

impl AuthSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            let secret = secret.expose_secret();
            check(
                secret.len() >= 32,
                "auth.jwt_secret",
                "must be at least 32 bytes",
            )?;
            check(
                !PUBLISHED_SECRETS.contains(&secret),
                "auth.jwt_secret",
                "is the example from .env.example: set 32 random bytes or more \
                 (e.g. openssl rand -hex 32)",
            )?;
        }
        self.default_ttl().map(drop)
    }

    pub fn default_ttl(&self) -> Result<Duration, ConfigError> {
        humantime::parse_duration(&self.default_ttl).map_err(|error| {
            ConfigError::about(
                "auth.default_ttl",
                &format!(
                    "{:?} is not a duration such as 1h or 30d: {error}",
                    self.default_ttl
                ),
            )
        })
    }
}

/// A verification key, selected by a token's `kid`; its algorithm is fixed here, never taken
/// from the token. A private key (or the shared secret) also lets `token issue` sign with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "algorithm", deny_unknown_fields)]
pub enum KeySettings {
    HS256 { kid: String, secret: SecretString },
    RS256(PublicKeySettings),
    ES256(PublicKeySettings),
    EdDSA(PublicKeySettings),
}

impl KeySettings {
    pub fn kid(&self) -> &str {
        match self {
            Self::HS256 { kid, .. } => kid,
            Self::RS256(key) | Self::ES256(key) | Self::EdDSA(key) => &key.kid,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeySettings {
    pub kid: String,
    /// Inline PEM, or the path of a PEM file.
    pub public_key: String,
    /// Inline PEM, or a path: where tokens are issued with this key.
    pub private_key: Option<SecretString>,
}
