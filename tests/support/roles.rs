//! The database roles docs/operations.md tells operators to make, made by its own SQL blocks (so
//! the documents cannot drift from what the tests run): the service's read-only role, which
//! every test's `serve` runs as, and the operators' writer role.
//!
//! Roles belong to the cluster, not to a test's database: each is made once per test run (named
//! after the run's own database, so `scripts/test` drops them at its end), and granted its
//! rights in every database a test asks for it in.

use sqlx::PgPool;

use super::app::database_url;
use super::docs::documented_sql;

/// A role of the documents, and how to connect as it.
#[derive(Clone, Debug)]
pub struct Role {
    pub name: String,
    pub password: String,
}

/// What the roles are for, by the name the documents give their psql variable.
#[derive(Clone, Copy)]
enum Kind {
    Reader,
    Writer,
}

impl Kind {
    fn variable(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Writer => "writer",
        }
    }
}

/// The service's role on `pool`'s database, as docs/operations.md makes it.
pub async fn reader(pool: &PgPool) -> Role {
    documented_role(pool, Kind::Reader).await
}

/// The operators' writer role on `pool`'s database, as docs/operations.md makes it.
pub async fn writer(pool: &PgPool) -> Role {
    documented_role(pool, Kind::Writer).await
}

/// `pool`'s database as the service's role: the `DATABASE_URL` a test gives `serve`.
pub async fn reader_url(pool: &PgPool) -> String {
    url_as(pool, &reader(pool).await)
}

/// `pool`'s database as `role`: a URL for the binary, a pool for the test. (The server `pool`
/// reaches, a throwaway cluster's included, with the run's URL parameters.)
pub fn url_as(pool: &PgPool, role: &Role) -> String {
    let options = pool.connect_options();
    let url = database_url(pool);
    let query = url
        .split_once('?')
        .map_or(String::new(), |(_, query)| format!("?{query}"));
    format!(
        "postgres://{}:{}@{}:{}/{}{query}",
        role.name,
        role.password,
        options.get_host(),
        options.get_port(),
        super::rows::database_name(pool)
    )
}

pub async fn pool_as(pool: &PgPool, role: &Role) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url_as(pool, role))
        .await
        .unwrap_or_else(|error| panic!("connect as {}: {error}", role.name))
}

/// `url` with `role`'s name and password in place of its own.
pub fn with_credentials(url: &str, role: &Role) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{}:{}@{host}", role.name, role.password)
}

async fn documented_role(pool: &PgPool, kind: Kind) -> Role {
    let role = Role {
        name: run_role_name(kind),
        password: format!("{}-test-password", kind.variable()),
    };
    let variable = kind.variable();
    let values = [
        (variable, role.name.clone()),
        ("password", role.password.clone()),
        ("database", super::rows::database_name(pool)),
    ];
    let create = documented_sql(&format!("create role :\"{variable}\""), &values);
    // Made by the first test of the run to ask; tests in parallel may race to make it, and
    // whoever loses finds it made. (The simple protocol only: `pool` may be a pooler's.)
    if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(pool)
        .await
    {
        let code = error
            .as_database_error()
            .and_then(|error| error.code())
            .map(|code| code.to_string());
        // duplicate_object, or the catalog's unique index when two made it at once.
        assert!(
            matches!(code.as_deref(), Some("42710" | "23505")),
            "create role {}: {error}",
            role.name
        );
    }
    let grants = documented_sql(&format!("to :\"{variable}\";"), &values);
    sqlx::raw_sql(sqlx::AssertSqlSafe(grants))
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("the documented grants to {}: {error}", role.name));
    role
}

/// The names of the run's documented roles (for an auth file that lists who may connect).
pub fn run_role_names() -> [String; 2] {
    [run_role_name(Kind::Reader), run_role_name(Kind::Writer)]
}

/// `agent_api_<kind>_<the run's database>`: one per run, dropped by `scripts/test` with it.
fn run_role_name(kind: Kind) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let without_query = base.split('?').next().unwrap_or_default();
    let run = without_query.rsplit('/').next().unwrap_or_default();
    let mut name = format!("agent_api_{}_{run}", kind.variable());
    name.truncate(63);
    name
}
