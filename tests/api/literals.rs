//! Values written into a statement's text (behind a transaction pooler a miss is one message
//! of the simple protocol, `store::postgres::literal`) read back as themselves: for random and
//! extreme uuids, instants, integers and booleans, Postgres parses each literal into the very
//! value it was written from, and a null stays a null of its type.

use agent_api::store::postgres::literal::{Literal, value};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::support::MIGRATOR;

/// `samples` values of `strategy` (seeded: the same every run), and `extremes`.
fn values<T: std::fmt::Debug>(strategy: impl Strategy<Value = T>, extremes: Vec<T>) -> Vec<T> {
    let mut runner = TestRunner::deterministic();
    let mut all = extremes;
    all.extend((0..200).map(|_| strategy.new_tree(&mut runner).unwrap().current()));
    all
}

/// Each literal, selected in the simple protocol, decodes to the value it was written from;
/// its null, to none.
async fn read_back<T>(pool: &PgPool, samples: Vec<T>)
where
    T: Literal + PartialEq + std::fmt::Debug,
    for<'r> T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    for sample in samples {
        let statement = format!("select {}, {}", value(Some(&sample)), value::<T>(None));
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
        assert_eq!(row.get::<T, _>(0), sample, "{statement}");
        assert_eq!(row.get::<Option<T>, _>(1), None, "{statement}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_literal_reads_back_as_the_value_it_was_written_from(pool: PgPool) {
    let uuids = values(
        any::<u128>().prop_map(Uuid::from_u128),
        vec![Uuid::nil(), Uuid::max()],
    );
    read_back(&pool, uuids).await;
    let integers = values(any::<i64>(), vec![i64::MIN, -1, 0, i64::MAX]);
    read_back(&pool, integers).await;
    read_back(&pool, vec![true, false]).await;
    // The instants the schema keeps (migration 1000): 1970 to 9000, to the microsecond.
    let micros = 0..221_845_392_000_000_000i64;
    let instants = values(
        micros.prop_map(DateTime::<Utc>::from_timestamp_micros),
        vec![
            DateTime::from_timestamp_micros(0),
            DateTime::from_timestamp_micros(1),
            DateTime::from_timestamp_micros(221_845_391_999_999_999),
        ],
    );
    read_back(&pool, instants.into_iter().map(Option::unwrap).collect()).await;
}
