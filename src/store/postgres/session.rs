//! How the service's statements run on a connection. On a session of its own (direct, or
//! through a session pooler) each statement is prepared under a name once and kept, and planned
//! once per connection. Behind a transaction pooler (PgBouncer with `pool_mode = transaction`,
//! `APP__DATABASE__POOL_MODE=transaction`) the server session a connection reaches changes from
//! one transaction to the next, and serves other clients in between: a named statement would
//! outlive its transaction there, and collide with another client's of the same name
//! (`prepared statement "sqlx_s_1" already exists`). There every statement a partner waits
//! for is sent in one message with its values written in (`literal`: the simple protocol, one
//! round trip), and the others are unnamed and run in a transaction of its own (`bounded`), so
//! a statement's parse and its execution reach the same server session. Statements made
//! outside a `Session` (health probes, the schema check, the heartbeat) use the simple
//! protocol, one message each.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{
    Connection, Describe, Either, Execute, Executor, FromRow, PgConnection, Postgres, SqlStr,
};

use super::lanes::Lease;
use super::literal::written;
use super::pool::timed;

/// How a session's statements reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Prepared under a name and kept: a server session of its own.
    Named,
    /// Unnamed, in a transaction of its own, so that a statement's parse and its execution
    /// reach one server session behind a transaction pooler.
    InTransaction,
    /// In one message with its values written in (`literal`), where the statement allows:
    /// behind a transaction pooler, one round trip and no transaction. The message carries
    /// what the pooled server session may lack: the statement timeout.
    OneMessage { statement_timeout_ms: u64 },
}

/// A connection, with how its statements are sent.
#[derive(Debug)]
pub struct Session<'c> {
    connection: &'c mut PgConnection,
    protocol: Protocol,
}

impl<'c> Session<'c> {
    pub fn new(connection: &'c mut PgConnection, protocol: Protocol) -> Self {
        Self {
            connection,
            protocol,
        }
    }

    /// Whether the statement should be sent in one message, its values written in
    /// (`fetch_written`).
    pub fn one_message(&self) -> bool {
        matches!(self.protocol, Protocol::OneMessage { .. })
    }

    /// `statement` with `values` written in (`literal::written`), in one message of the simple
    /// protocol; its rows, read by column name. The message first sets, for its own implicit
    /// transaction, what a pooled server session may not have: the statement timeout, and the
    /// ISO dates in UTC its rows' text is read as.
    pub async fn fetch_written<R>(
        self,
        statement: &str,
        values: &[String],
    ) -> Result<Vec<R>, sqlx::Error>
    where
        R: for<'r> FromRow<'r, PgRow>,
    {
        let Protocol::OneMessage {
            statement_timeout_ms,
        } = self.protocol
        else {
            unreachable!("fetch_written on a session that sends statements in two messages");
        };
        let message = format!(
            "set local statement_timeout = {statement_timeout_ms}; set local datestyle = iso; \
             set local timezone = utc;\n{}",
            written(statement, values)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(message))
            .fetch_all(self.connection)
            .await?
            .iter()
            .map(R::from_row)
            .collect()
    }

    /// The connection itself, for statements of its own (a standby's replay position).
    pub fn connection(&mut self) -> &mut PgConnection {
        self.connection
    }
}

/// A statement, named only if its session allows and it asks to be.
struct Statement<E> {
    query: E,
    named: bool,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Statement<E> {
    fn sql(self) -> SqlStr {
        self.query.sql()
    }

    fn statement(&self) -> Option<&PgStatement> {
        self.query.statement()
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<sqlx::postgres::PgArguments>, sqlx::error::BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.named && self.query.persistent()
    }
}

impl<'c> Executor<'c> for Session<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let named = self.protocol == Protocol::Named;
        self.connection.fetch_many(Statement { query, named })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let named = self.protocol == Protocol::Named;
        self.connection.fetch_optional(Statement { query, named })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.connection.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.connection.describe(sql)
    }
}

/// Runs `query` on `lease` (to `server`: `primary`, `standby`) within `deadline`; `None` when
/// it took longer: the statement is then left mid-way with a silent peer, and the lease closes
/// its connection.
pub(in crate::store) async fn bounded<T>(
    lease: &mut Lease<'_>,
    protocol: Protocol,
    deadline: Duration,
    statement: &'static str,
    server: &'static str,
    query: impl AsyncFnOnce(Session<'_>) -> Result<T, sqlx::Error>,
) -> Option<Result<T, sqlx::Error>> {
    let run = lease.run(async |connection| {
        if protocol != Protocol::InTransaction {
            return query(Session::new(connection, protocol)).await;
        }
        // Behind a transaction pooler the statement's messages (parse, then bind and execute,
        // each ending in a sync) must reach one server session: a transaction keeps it.
        let mut transaction = connection.begin().await?;
        let outcome = query(Session::new(&mut transaction, protocol)).await?;
        transaction.commit().await?;
        Ok(outcome)
    });
    tokio::time::timeout(deadline, timed(statement, server, run))
        .await
        .ok()
}

/// What a statement given up on here answers: a connection trouble, so partners get 503.
pub(in crate::store) fn silent(deadline: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {deadline:?}"),
    ))
}
