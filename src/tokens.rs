//! Bearer tokens (SPEC §4). The server alone decides each key's algorithm: a token's `alg`
//! header must match the key its `kid` selects, so `alg: none` and HMAC-with-a-public-key
//! confusion are refused before any signature is computed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{AuthSettings, ConfigError, KeySettings, PublicKeySettings};
use crate::domain::partners::PartnerToken;

/// The `kid` under which `auth.jwt_secret` is known; tokens without a `kid` use it too.
pub const DEFAULT_KID: &str = "default";

/// Why a token was refused. Partners only ever see the same 401; this goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no bearer token")]
    Missing,
    #[error("token header is not a JWT header")]
    Malformed,
    #[error("token names unknown key id {0:?}")]
    UnknownKey(String),
    #[error("token header marks extensions critical, and none is understood here")]
    CriticalExtension,
    #[error("token has no key id and several keys are configured")]
    NoKeyId,
    #[error("token failed verification: {0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
    #[error("token sub is not a UUID")]
    SubjectNotUuid,
    #[error("token iat is in the future or out of range")]
    IssuedInFuture,
    #[error("partner unknown, deleted, not a partner, or its tokens were revoked")]
    PartnerRejected,
}

/// What `token issue` signs.
#[derive(Debug, Serialize)]
struct IssuedClaims {
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// What a verified token is read for; `exp`, `nbf`, `iss` and `aud` (a string or, as RFC 7519
/// §4.1.3 allows, an array) are checked by `jsonwebtoken` itself.
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    sub: String,
    iat: i64,
}

struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
    /// Present when a private key (or the shared secret) is configured, for `token issue`.
    encoding: Option<EncodingKey>,
}

/// The configured keys by `kid`, and how tokens are validated.
pub struct KeyRing {
    keys: HashMap<String, Key>,
    signing_kid: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl KeyRing {
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let mut keys = HashMap::new();
        if let Some(secret) = &settings.jwt_secret {
            keys.insert(
                DEFAULT_KID.to_string(),
                hmac_key(secret.expose_secret().as_bytes()),
            );
        }
        for key in &settings.keys {
            if keys.insert(key.kid().to_string(), load_key(key)?).is_some() {
                return Err(ConfigError(format!(
                    "auth.keys in the settings file: kid {:?} is configured twice",
                    key.kid()
                )));
            }
        }
        if keys.is_empty() {
            return Err(ConfigError::about(
                "auth.jwt_secret",
                "is required (or public keys under [[auth.keys]] in the settings file)",
            ));
        }
        let signing_kid = match &settings.signing_kid {
            Some(kid) if !keys.contains_key(kid) => {
                return Err(ConfigError::about(
                    "auth.signing_kid",
                    &format!("{kid:?} names no configured key"),
                ));
            }
            Some(kid) => Some(kid.clone()),
            None if keys.contains_key(DEFAULT_KID) => Some(DEFAULT_KID.to_string()),
            None => None,
        };
        Ok(Self {
            keys,
            signing_kid,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway_seconds,
        })
    }

    /// Checks signature and claims; the partner's standing is the database's to check.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<PartnerToken, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
        // RFC 7515 §4.1.11: a `crit` extension the recipient does not understand is fatal.
        if header.crit.is_some() {
            return Err(Rejection::CriticalExtension);
        }
        let key = self.key_for(header.kid.as_deref())?;
        let claims =
            jsonwebtoken::decode::<VerifiedClaims>(token, &key.decoding, &self.validation(key))
                .map_err(|error| Rejection::Invalid(error.into_kind()))?
                .claims;
        let partner_id = Uuid::try_parse(&claims.sub).map_err(|_| Rejection::SubjectNotUuid)?;
        let issued_at = Utc
            .timestamp_opt(claims.iat, 0)
            .single()
            .filter(|iat| *iat <= now + chrono::TimeDelta::seconds(self.leeway as i64))
            .ok_or(Rejection::IssuedInFuture)?;
        Ok(PartnerToken {
            partner_id,
            issued_at,
        })
    }

    /// A signed token for `partner`, valid from `now` for `ttl`.
    pub fn issue(
        &self,
        partner: Uuid,
        ttl: Duration,
        kid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, ConfigError> {
        let kid = kid.or(self.signing_kid.as_deref()).ok_or_else(|| {
            ConfigError("no signing key: pass --kid or set auth.signing_kid".into())
        })?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| ConfigError(format!("no key with kid {kid:?} is configured")))?;
        let encoding = key.encoding.as_ref().ok_or_else(|| {
            ConfigError(format!(
                "key {kid:?} has no private_key configured to sign with"
            ))
        })?;
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = IssuedClaims {
            sub: partner.to_string(),
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(key.algorithm);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, &claims, encoding)
            .map_err(|error| ConfigError(format!("cannot sign with key {kid:?}: {error}")))
    }

    fn key_for(&self, kid: Option<&str>) -> Result<&Key, Rejection> {
        match kid {
            Some(kid) => self
                .keys
                .get(kid)
                .ok_or_else(|| Rejection::UnknownKey(untrusted(kid))),
            None if self.keys.len() == 1 => Ok(self.keys.values().next().expect("one key")),
            None => self.keys.get(DEFAULT_KID).ok_or(Rejection::NoKeyId),
        }
    }

    fn validation(&self, key: &Key) -> Validation {
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        // `iat` is required too: `Claims` does not deserialize without it.
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// An attacker-chosen value, cut short for the log line that names it.
fn untrusted(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

fn hmac_key(secret: &[u8]) -> Key {
    Key {
        algorithm: Algorithm::HS256,
        decoding: DecodingKey::from_secret(secret),
        encoding: Some(EncodingKey::from_secret(secret)),
    }
}

/// The key `settings` describes, its algorithm fixed by the kind of key it is.
fn load_key(settings: &KeySettings) -> Result<Key, ConfigError> {
    type Decode = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
    type Encode = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
    let named = |what: &str| {
        ConfigError(format!(
            "auth.keys in the settings file, kid {:?}: {what}",
            settings.kid()
        ))
    };
    let (algorithm, public, decode, encode): (_, &PublicKeySettings, Decode, Encode) =
        match settings {
            KeySettings::HS256 { secret, .. } => {
                if secret.expose_secret().len() < 32 {
                    return Err(named("secret must be at least 32 bytes"));
                }
                return Ok(hmac_key(secret.expose_secret().as_bytes()));
            }
            KeySettings::RS256(key) => (
                Algorithm::RS256,
                key,
                DecodingKey::from_rsa_pem,
                EncodingKey::from_rsa_pem,
            ),
            KeySettings::ES256(key) => (
                Algorithm::ES256,
                key,
                DecodingKey::from_ec_pem,
                EncodingKey::from_ec_pem,
            ),
            KeySettings::EdDSA(key) => (
                Algorithm::EdDSA,
                key,
                DecodingKey::from_ed_pem,
                EncodingKey::from_ed_pem,
            ),
        };
    let pem = pem_text(&public.public_key).map_err(|e| named(&e))?;
    let decoding = decode(pem.as_bytes())
        .map_err(|e| named(&format!("public_key is not a usable PEM key: {e}")))?;
    let encoding = public
        .private_key
        .as_ref()
        .map(|private| {
            let pem = pem_text(private.expose_secret()).map_err(|e| named(&e))?;
            encode(pem.as_bytes())
                .map_err(|e| named(&format!("private_key is not a usable PEM key: {e}")))
        })
        .transpose()?;
    Ok(Key {
        algorithm,
        decoding,
        encoding,
    })
}

/// A key given inline (`-----BEGIN …`) or as the path of a PEM file.
fn pem_text(value: &str) -> Result<String, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.to_string());
    }
    std::fs::read_to_string(value).map_err(|e| format!("cannot read key file {value:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use secrecy::SecretString;

    use super::*;

    fn settings(secret: Option<&str>) -> AuthSettings {
        AuthSettings {
            jwt_secret: secret.map(SecretString::from),
            keys: Vec::new(),
            signing_kid: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            default_ttl: "1h".into(),
        }
    }

    fn ring(secret: &str) -> KeyRing {
        KeyRing::from_settings(&settings(Some(secret))).unwrap()
    }

    // jsonwebtoken compiles without a crypto backend and panics on first use: keep this.
    #[test]
    fn an_issued_token_verifies_with_the_same_secret_only() {
        let now = Utc::now();
        let partner = Uuid::new_v4();
        let token = ring(&"s".repeat(32))
            .issue(partner, Duration::from_secs(60), None, now)
            .unwrap();
        let verified = ring(&"s".repeat(32)).verify(&token, now).unwrap();
        assert_eq!(verified.partner_id, partner);
        assert_eq!(verified.issued_at.timestamp(), now.timestamp());
        assert!(matches!(
            ring(&"t".repeat(32)).verify(&token, now),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn a_key_ring_needs_a_key() {
        let error = KeyRing::from_settings(&settings(None)).err().unwrap();
        assert!(
            error.to_string().contains("APP__AUTH__JWT_SECRET"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_key_id_is_logged_cut_short() {
        let kid = "k".repeat(60_000);
        let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#);
        let token = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header));
        let rejection = ring(&"s".repeat(32))
            .verify(&token, Utc::now())
            .unwrap_err();
        assert!(rejection.to_string().len() < 120, "{rejection}");
    }
}
