//! Builders for the rows a test needs, written as an operator would write them: plain SQL.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A `+08:00` wall-clock time, as the vendor's documents write them.
pub fn beijing(text: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&naive)
        .unwrap()
        .with_timezone(&Utc)
}

pub async fn tenant(pool: &PgPool, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("insert into tenants (id, name) values ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
    id
}

pub async fn default_tenant(pool: &PgPool, name: &str) -> Uuid {
    let id = tenant(pool, name).await;
    sqlx::query("update tenants set is_default = true where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    id
}

/// Runs `statement` with triggers off (`session_replication_role = replica`), so the change is
/// not announced: a probe for pages the service answers from memory.
pub async fn execute_unannounced(pool: &PgPool, statement: &str, bind: &str) {
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *transaction)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(bind)
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
}

pub async fn soft_delete_user(pool: &PgPool, id: Uuid) {
    sqlx::query("update users set deleted_at = now() where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

pub async fn soft_delete_tenant(pool: &PgPool, id: Uuid) {
    sqlx::query("update tenants set deleted_at = now() where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

pub async fn partner(pool: &PgPool) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("insert into users (id, type, name) values ($1, 'partner', '伙伴')")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    id
}

/// A customer or sub-account of `partner`.
pub async fn user(pool: &PgPool, partner: Uuid, user_type: &str, name: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into users (id, type, partner_id, name, email, phone) \
         values ($1, $2, $3, $4, $5, '13800000000')",
    )
    .bind(id)
    .bind(user_type)
    .bind(partner)
    .bind(name)
    .bind(format!("{name}@example.com"))
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A caller line with plain defaults; chain the setters for what a test is about.
pub struct NewLine {
    tenant: Uuid,
    partner: Uuid,
    user: Option<Uuid>,
    parent: Option<Uuid>,
    name: String,
    created_at: DateTime<Utc>,
    begin_at: Option<DateTime<Utc>>,
    deadline_at: Option<DateTime<Utc>>,
    available_time: i64,
    call_number: Option<String>,
    deleted: bool,
}

pub fn line(tenant: Uuid, partner: Uuid) -> NewLine {
    NewLine {
        tenant,
        partner,
        user: None,
        parent: None,
        name: "线路".into(),
        created_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        begin_at: None,
        deadline_at: None,
        available_time: 0,
        call_number: Some("100".into()),
        deleted: false,
    }
}

impl NewLine {
    pub fn user(mut self, user: Uuid) -> Self {
        self.user = Some(user);
        self
    }
    pub fn split_from(mut self, parent: Uuid) -> Self {
        self.parent = Some(parent);
        self
    }
    pub fn created(mut self, at: DateTime<Utc>) -> Self {
        self.created_at = at;
        self
    }
    /// Created `seconds` after the default creation time: lines listed in this order.
    pub fn nth(self, seconds: i64) -> Self {
        let at = self.created_at + chrono::TimeDelta::seconds(seconds);
        self.created(at)
    }
    pub fn began(mut self, at: DateTime<Utc>, available_time: i64) -> Self {
        self.begin_at = Some(at);
        self.available_time = available_time;
        self
    }
    pub fn deadline(mut self, at: DateTime<Utc>) -> Self {
        self.deadline_at = Some(at);
        self
    }
    pub fn no_call_number(mut self) -> Self {
        self.call_number = None;
        self
    }
    pub fn deleted(mut self) -> Self {
        self.deleted = true;
        self
    }

    pub async fn insert(self, pool: &PgPool) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into caller_lines (id, tenant_id, partner_id, user_id, parent_id, name, \
             caller_number, call_number, call_line, available_time, begin_at, deadline_at, \
             deleted_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $6, $7, 1, $8, $9, $10, \
             case when $11 then now() end, $12, $12)",
        )
        .bind(id)
        .bind(self.tenant)
        .bind(self.partner)
        .bind(self.user)
        .bind(self.parent)
        .bind(&self.name)
        .bind(&self.call_number)
        .bind(self.available_time)
        .bind(self.begin_at)
        .bind(self.deadline_at)
        .bind(self.deleted)
        .bind(self.created_at)
        .execute(pool)
        .await
        .unwrap();
        id
    }
}

/// A role name of the test's own: roles are the whole cluster's, shared by parallel tests.
/// `count` lines of `partner` on `tenant`, each inserted by a statement of its own on a session
/// at repeatable read (an ORM's default, say), where a writer cannot fold count rows another
/// may have folded since its snapshot.
pub async fn insert_at_repeatable_read(pool: &PgPool, tenant: Uuid, partner: Uuid, count: u32) {
    let mut connection = pool.acquire().await.unwrap();
    sqlx::raw_sql("set session characteristics as transaction isolation level repeatable read")
        .execute(&mut *connection)
        .await
        .unwrap();
    for _ in 0..count {
        sqlx::query(
            "insert into caller_lines (tenant_id, partner_id, name, caller_number, call_line) \
             values ($1, $2, 'l', 'c', 1)",
        )
        .bind(tenant)
        .bind(partner)
        .execute(&mut *connection)
        .await
        .unwrap();
    }
    // Not back to the pool: its session characteristics stay with it.
    connection.detach();
}

/// The name of the database behind `pool`.
pub fn database_name(pool: &PgPool) -> String {
    pool.connect_options()
        .get_database()
        .expect("a test pool names its database")
        .to_string()
}
