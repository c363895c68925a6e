//! The workload: partners whose lines on each tenant fit on one page, one writer committing
//! what operators commit (renames, new lines, soft deletes, rolled-back writes, revocations
//! with new tokens after them, partners deleted and restored), and readers polling every page
//! on every instance with the partners' tokens, old and new.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_api::tokens::KeyRing;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::deployment::Deployment;
use super::history::{Clock, Lines, Outcome, Read, Scope, Standing, Version};
use super::random::Random;
use super::support::test_settings;

const PARTNERS: usize = 4;
const TENANTS: usize = 3;
const LINES_AT_FIRST: usize = 3;
/// A page holds at most this many of a partner's lines (the default `per_page` is 15).
const LINES_AT_MOST: usize = 12;
/// Between two of the writer's transactions.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Between two requests of one reader.
const READ_EVERY: Duration = Duration::from_millis(10);

/// The pages, the partners and their tokens: what the writer and the readers share.
pub struct Workload {
    pub scopes: Vec<Scope>,
    partners: Vec<Uuid>,
    /// Per partner, the tokens issued so far: (`iat`, token).
    tokens: Vec<Mutex<Vec<(i64, String)>>>,
    keys: KeyRing,
    pub stop: AtomicBool,
}

impl Workload {
    /// Partners, tenants and lines inserted through `writer`.
    pub async fn load(writer: &PgPool) -> Self {
        let mut partners = Vec::new();
        for n in 0..PARTNERS {
            partners.push(
                sqlx::query_scalar(
                    "insert into users (type, name, email) values ('partner', $1, $2) returning id",
                )
                .bind(format!("chaos partner {n}"))
                .bind(format!("partner{n}@chaos.example"))
                .fetch_one(writer)
                .await
                .unwrap(),
            );
        }
        let mut scopes = Vec::new();
        for n in 0..TENANTS {
            let tenant: Uuid =
                sqlx::query_scalar("insert into tenants (name) values ($1) returning id")
                    .bind(format!("云节点 {n}"))
                    .fetch_one(writer)
                    .await
                    .unwrap();
            for (partner, &partner_id) in partners.iter().enumerate() {
                let mut lines = Lines::new();
                for _ in 0..LINES_AT_FIRST {
                    let (id, name) = (Uuid::new_v4(), format!("line {}", Uuid::new_v4()));
                    insert_line(writer, id, tenant, partner_id, &name)
                        .await
                        .unwrap();
                    lines.insert(id, name);
                }
                scopes.push(Scope {
                    partner,
                    tenant,
                    versions: vec![Version {
                        value: lines,
                        sent: Duration::ZERO,
                        acked: Duration::ZERO,
                    }],
                });
            }
        }
        let keys = KeyRing::from_settings(&test_settings().auth).unwrap();
        let issued = Utc::now() - chrono::TimeDelta::seconds(60);
        let tokens = partners
            .iter()
            .map(|&partner| Mutex::new(vec![token(&keys, partner, issued)]))
            .collect();
        Self {
            scopes,
            partners,
            tokens,
            keys,
            stop: AtomicBool::new(false),
        }
    }

    /// A reader's requests to `instance` until the run stops.
    pub async fn read(
        &self,
        deployment: &Deployment,
        instance: usize,
        seed: u64,
        clock: Clock,
    ) -> Vec<Read> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut random = Random::new(seed);
        let mut reads = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let scope = random.below(self.scopes.len());
            let partner = self.scopes[scope].partner;
            // Mostly the newest token; now and then an older one, which a revocation refuses.
            let (issued_at, token) = {
                let tokens = self.tokens[partner].lock().unwrap();
                match random.chance(0.75) {
                    true => tokens[tokens.len() - 1].clone(),
                    false => tokens[random.below(tokens.len())].clone(),
                }
            };
            let url = deployment.instances[instance].url(&format!(
                "/agent-api/tenant/{}/callerline",
                self.scopes[scope].tenant
            ));
            let start = clock.now();
            let outcome = match client.get(url).bearer_auth(token).send().await {
                Ok(response) => outcome(response).await,
                Err(error) => Outcome::NoAnswer(error.to_string()),
            };
            reads.push(Read {
                instance,
                scope,
                issued_at,
                start,
                end: clock.now(),
                outcome,
            });
            tokio::time::sleep(READ_EVERY).await;
        }
        reads
    }

    /// The writer's transactions until the run stops: each committed state of every page and
    /// standing, and the names only rolled-back transactions wrote.
    pub async fn write(
        &self,
        writer: &PgPool,
        seed: u64,
        clock: Clock,
    ) -> (Vec<Scope>, Vec<Vec<Version<Standing>>>, Vec<String>) {
        let mut random = Random::new(seed);
        let mut scopes = self.scopes.clone();
        let active = Standing {
            tokens_valid_after_ms: None,
            deleted: false,
        };
        let mut standings: Vec<Vec<Version<Standing>>> = (0..PARTNERS)
            .map(|_| {
                vec![Version {
                    value: active,
                    sent: Duration::ZERO,
                    acked: Duration::ZERO,
                }]
            })
            .collect();
        let mut rolled_back = Vec::new();
        let mut written = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(WRITE_EVERY).await;
            written += 1;
            let name = format!("name {written}");
            let scope = random.below(scopes.len());
            let partner = scopes[scope].partner;
            let lines = scopes[scope].versions.last().unwrap().value.clone();
            let standing = standings[partner].last().unwrap().value;
            let line = *random.pick(&lines.keys().collect::<Vec<_>>());
            let change = match random.below(100) {
                // A partner stays deleted for a few of its writes, not for good.
                _ if standing.deleted && random.chance(0.25) => Change::RestorePartner,
                0..40 => Change::Rename(line, name),
                40..52 if lines.len() < LINES_AT_MOST => Change::Insert(Uuid::new_v4(), name),
                52..64 if lines.len() > 1 => Change::Delete(line),
                64..76 => Change::RolledBack(line, name),
                76..84 => {
                    // Milliseconds: the precision the history keeps.
                    let now = Utc::now().timestamp_millis();
                    Change::Revoke(Utc.timestamp_millis_opt(now).unwrap())
                }
                84..88 if !standing.deleted => Change::DeletePartner,
                _ => Change::Rename(line, name),
            };
            if let Change::RolledBack(_, name) = &change {
                rolled_back.push(name.clone());
            }
            let (tenant, partner_id) = (scopes[scope].tenant, self.partners[partner]);
            let sent = clock.now();
            let applied = match change.apply(writer, tenant, partner_id).await {
                Ok(()) => !matches!(change, Change::RolledBack(..)),
                // Whether it committed is read back once the primary answers again.
                Err(_) => change.committed(writer, partner_id).await,
            };
            if !applied {
                continue;
            }
            let acked = clock.now();
            let deletes_partner = matches!(change, Change::DeletePartner);
            match change {
                Change::Rename(id, name) | Change::Insert(id, name) => {
                    let mut lines = lines;
                    lines.insert(id, name);
                    scopes[scope].versions.push(Version {
                        value: lines,
                        sent,
                        acked,
                    });
                }
                Change::Delete(id) => {
                    let mut lines = lines;
                    lines.remove(&id);
                    scopes[scope].versions.push(Version {
                        value: lines,
                        sent,
                        acked,
                    });
                }
                Change::Revoke(at) => {
                    let value = Standing {
                        tokens_valid_after_ms: Some(at.timestamp_millis()),
                        ..standing
                    };
                    standings[partner].push(Version { value, sent, acked });
                    // The partner's next token: issued after the revocation (to the second).
                    let issued = Utc.timestamp_opt(at.timestamp() + 1, 0).unwrap();
                    let token = token(&self.keys, partner_id, issued);
                    self.tokens[partner].lock().unwrap().push(token);
                }
                Change::DeletePartner | Change::RestorePartner => {
                    let value = Standing {
                        deleted: deletes_partner,
                        ..standing
                    };
                    standings[partner].push(Version { value, sent, acked });
                }
                Change::RolledBack(..) => unreachable!("never applied"),
            }
        }
        (scopes, standings, rolled_back)
    }
}

/// One of the writer's transactions.
enum Change {
    Rename(Uuid, String),
    Insert(Uuid, String),
    Delete(Uuid),
    /// A rename rolled back: the name must never be shown.
    RolledBack(Uuid, String),
    Revoke(DateTime<Utc>),
    DeletePartner,
    RestorePartner,
}

impl Change {
    /// The statements of docs/operations.md's Daily SQL, as the writer role.
    async fn apply(&self, writer: &PgPool, tenant: Uuid, partner: Uuid) -> Result<(), sqlx::Error> {
        let statement = match self {
            Self::Rename(id, name) => {
                sqlx::query("update caller_lines set name = $2 where id = $1")
                    .bind(id)
                    .bind(name)
            }
            Self::Insert(id, name) => return insert_line(writer, *id, tenant, partner, name).await,
            Self::Delete(id) => {
                sqlx::query("update caller_lines set deleted_at = now() where id = $1").bind(id)
            }
            Self::RolledBack(id, name) => {
                let mut transaction = writer.begin().await?;
                sqlx::query("update caller_lines set name = $2 where id = $1")
                    .bind(id)
                    .bind(name)
                    .execute(&mut *transaction)
                    .await?;
                return transaction.rollback().await;
            }
            Self::Revoke(at) => {
                sqlx::query("update users set tokens_valid_after = $2 where id = $1")
                    .bind(partner)
                    .bind(at)
            }
            Self::DeletePartner => {
                sqlx::query("update users set deleted_at = now() where id = $1").bind(partner)
            }
            Self::RestorePartner => {
                sqlx::query("update users set deleted_at = null where id = $1").bind(partner)
            }
        };
        statement.execute(writer).await.map(drop)
    }

    /// Whether a transaction whose outcome was lost (the primary restarted under it)
    /// committed: asked until the primary answers.
    async fn committed(&self, writer: &PgPool, partner: Uuid) -> bool {
        if matches!(self, Self::RolledBack(..)) {
            return false;
        }
        for _ in 0..300 {
            if let Ok(committed) = self.visible(writer, partner).await {
                return committed;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the primary did not answer for a minute");
    }

    /// Whether the primary shows this change.
    async fn visible(&self, writer: &PgPool, partner: Uuid) -> Result<bool, sqlx::Error> {
        let question = match self {
            Self::Rename(id, name) | Self::Insert(id, name) | Self::RolledBack(id, name) => {
                sqlx::query_scalar(
                    "select exists (select from caller_lines where id = $1 and name = $2)",
                )
                .bind(id)
                .bind(name)
            }
            Self::Delete(id) => sqlx::query_scalar(
                "select exists (select from caller_lines where id = $1 and deleted_at is not null)",
            )
            .bind(id),
            Self::Revoke(at) => sqlx::query_scalar(
                "select exists (select from users where id = $1 and tokens_valid_after = $2)",
            )
            .bind(partner)
            .bind(at),
            Self::DeletePartner | Self::RestorePartner => sqlx::query_scalar(
                "select exists (select from users where id = $1 and (deleted_at is not null) = $2)",
            )
            .bind(partner)
            .bind(matches!(self, Self::DeletePartner)),
        };
        question.fetch_one(writer).await
    }
}

async fn insert_line(
    writer: &PgPool,
    id: Uuid,
    tenant: Uuid,
    partner: Uuid,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into caller_lines (id, tenant_id, partner_id, name, caller_number, call_line) \
         values ($1, $2, $3, $4, $4, 1)",
    )
    .bind(id)
    .bind(tenant)
    .bind(partner)
    .bind(name)
    .execute(writer)
    .await
    .map(drop)
}

fn token(keys: &KeyRing, partner: Uuid, issued: DateTime<Utc>) -> (i64, String) {
    let token = keys
        .issue(partner, Duration::from_secs(6 * 3600), None, issued)
        .unwrap();
    (issued.timestamp(), token)
}

/// What a response says, as the checker judges it.
async fn outcome(response: reqwest::Response) -> Outcome {
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = match response.text().await {
        Ok(body) => body,
        Err(error) => return Outcome::NoAnswer(format!("the body broke off: {error}")),
    };
    let Ok(envelope) = serde_json::from_str::<Value>(&body) else {
        return Outcome::NotEnvelope { status, body };
    };
    let well_formed = envelope["code"].is_i64()
        && envelope["status"].is_string()
        && envelope["message"].is_string()
        && envelope.get("data").is_some();
    match (well_formed, status) {
        (false, _) => Outcome::NotEnvelope { status, body },
        (true, 200) => match page(&envelope) {
            Some((lines, total)) => Outcome::Page { lines, total },
            None => Outcome::NotEnvelope { status, body },
        },
        (true, _) => Outcome::Error {
            status,
            code: envelope["code"].as_i64().unwrap(),
            retry_after,
        },
    }
}

/// A list envelope's lines (id, name) and `meta.total`.
fn page(envelope: &Value) -> Option<(Vec<(Uuid, String)>, u64)> {
    let lines = envelope["data"]
        .as_array()?
        .iter()
        .map(|line| {
            Some((
                line["id"].as_str()?.parse().ok()?,
                line["name"].as_str()?.to_string(),
            ))
        })
        .collect::<Option<_>>()?;
    Some((lines, envelope["meta"]["total"].as_u64()?))
}
