//! The chaos check (issue 29; docs/development.md, "Chaos"): the documented deployment, every
//! part real, under continuous writes and reads while a nemesis breaks one or two parts at a
//! time; then every answer is judged against the history (`checker`). It fails on any stale
//! page, revoked or deleted partner served past the staleness bound, value never committed,
//! wrong total, 5xx but a 503 while the primary is down, or live instance that did not answer.
//!
//! `scripts/test` runs it for `CHAOS_SECONDS` (100) with seed `CHAOS_SEED` (29), which gives
//! every kind of fault at least once; `bench/run chaos --seconds 600 --seed N` runs it longer.
//! `CHAOS_INSTANCE_STALENESS_MS` mis-sets the instances' bound (the checker keeps the
//! default), to watch the check fail.

#[path = "../support/mod.rs"]
#[allow(unused_imports)]
mod support;

mod checker;
mod deployment;
mod history;
mod nemesis;
mod random;
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deployment::Deployment;
use history::{Clock, History};
use workload::Workload;

const INSTANCES: usize = 2;
const READERS_PER_INSTANCE: usize = 3;

fn option(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a whole number, not {value:?}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_combined_faults_every_answer_keeps_the_promises() {
    let seconds = option("CHAOS_SECONDS", 100);
    let seed = option("CHAOS_SEED", 29);
    let bound = support::test_settings().listing_cache.max_staleness();
    let trusted = Duration::from_millis(option(
        "CHAOS_INSTANCE_STALENESS_MS",
        bound.as_millis() as u64,
    ));
    let schedule = nemesis::schedule(seed, seconds, INSTANCES);
    let deployment = Arc::new(Deployment::start(INSTANCES, trusted).await);
    let workload = Arc::new(Workload::load(&deployment.writer_pool()).await);

    let clock = Clock::start();
    let mut readers = Vec::new();
    for instance in 0..INSTANCES {
        for n in 0..READERS_PER_INSTANCE {
            let (workload, deployment) = (workload.clone(), deployment.clone());
            let seed = seed ^ (((instance * READERS_PER_INSTANCE + n) as u64 + 1) << 32);
            readers.push(tokio::spawn(async move {
                workload.read(&deployment, instance, seed, clock).await
            }));
        }
    }
    let writer = {
        let (workload, pool) = (workload.clone(), deployment.writer_pool());
        tokio::spawn(async move { workload.write(&pool, seed, clock).await })
    };
    let faults = nemesis::run(&deployment, &schedule, clock).await;
    workload.stop.store(true, Ordering::SeqCst);
    let (scopes, standings, rolled_back) = writer.await.unwrap();
    let mut reads = Vec::new();
    for reader in readers {
        reads.extend(reader.await.unwrap());
    }

    let history = History {
        scopes,
        standings,
        rolled_back: rolled_back.into_iter().collect(),
        reads,
        faults,
    };
    let violations = checker::check(&history, bound);
    let writes: usize = history
        .scopes
        .iter()
        .map(|s| s.versions.len() - 1)
        .sum::<usize>()
        + history.standings.iter().map(|s| s.len() - 1).sum::<usize>();
    println!(
        "chaos: seed {seed}, {} s, {} faults, {writes} commits, {} requests, {} violations \
         (bound {} ms, instances trusting memory {} ms)\n\n{}",
        clock.now().as_secs(),
        history.faults.len(),
        history.reads.len(),
        violations.len(),
        bound.as_millis(),
        trusted.as_millis(),
        checker::table(&history, &violations)
    );
    assert!(violations.is_empty(), "{} violations", violations.len());
}
