//! Where a server stands: whether it is a standby (and whose: its system identifier), the
//! primary's WAL insert position, and how far a standby has replayed. The simple protocol
//! where the primary may be reached through a transaction pooler.

use sqlx::PgConnection;

use crate::config::ConfigError;

/// Refuses a standby as the primary: the change feed cannot `LISTEN` on one, and the heartbeat
/// cannot be sent through one (Postgres: `cannot execute LISTEN during recovery`).
pub async fn refuse_standby(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use sqlx::Row;
    let in_recovery: bool = sqlx::raw_sql("select pg_is_in_recovery()")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    if in_recovery {
        return Err(ConfigError(
            "DATABASE_URL names a standby: it must name the primary (standbys go in DATABASE_REPLICA_URLS)"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// The server's system identifier: a standby's is its primary's. The simple protocol: the
/// primary may be reached through a transaction pooler.
pub(in crate::store) async fn system_identifier<'c>(
    executor: impl sqlx::PgExecutor<'c>,
) -> Result<u64, sqlx::Error> {
    use sqlx::Row;
    let system: i64 = sqlx::raw_sql("select system_identifier from pg_control_system()")
        .fetch_one(executor)
        .await?
        .try_get(0)?;
    Ok(system as u64)
}

/// The primary's WAL insert position, in bytes: what a standby must replay to show every
/// commit made so far. The simple protocol, as for `system_identifier`.
pub async fn insert_position<'c>(executor: impl sqlx::PgExecutor<'c>) -> Result<u64, sqlx::Error> {
    use sqlx::Row;
    let position: i64 = sqlx::raw_sql("select (pg_current_wal_insert_lsn() - '0/0')::bigint")
        .fetch_one(executor)
        .await?
        .try_get(0)?;
    Ok(position as u64)
}

/// How far a standby has replayed, in WAL bytes; `None` for a server not in recovery (a
/// primary, a promoted standby), which is no standby at all.
pub(in crate::store) async fn replayed(
    connection: &mut PgConnection,
) -> Result<Option<u64>, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("select (pg_last_wal_replay_lsn() - '0/0')::bigint")
            .fetch_one(connection)
            .await?;
    Ok(position.map(|position| position as u64))
}
