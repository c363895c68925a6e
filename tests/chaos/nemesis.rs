//! The nemesis: a fault schedule drawn from a seed, and its execution. The schedule first gives
//! every kind of fault once on its own, in an order drawn from the seed, then one or two at a
//! time at random; two at once always strike different parts (a standby cannot be frozen and
//! restarted at once). Each fault lasts longer than the staleness bound, so a page trusted past
//! it would be seen.

use std::time::Duration;

use super::deployment::Deployment;
use super::history::{Clock, Fault, FaultKind};
use super::random::Random;

/// Quiet before the first fault (the instances' memory warm) and after the last (the
/// readers see every part healed).
pub const QUIET: Duration = Duration::from_secs(5);

/// Faults injected together, and for how long.
#[derive(Debug, Clone)]
pub struct Planned {
    pub faults: Vec<(FaultKind, usize)>,
    pub lasts: Duration,
    /// Quiet after it heals.
    pub then: Duration,
}

/// The part a fault strikes: two faults at once never strike the same.
fn part(kind: FaultKind, instance: usize) -> usize {
    match kind {
        FaultKind::StandbyFrozen | FaultKind::ReplayPaused | FaultKind::StandbyRestarted => 0,
        FaultKind::PrimaryRestarted | FaultKind::SessionsTerminated => 1,
        FaultKind::RedisStopped => 2,
        _ => 3 + instance,
    }
}

/// Faults filling `seconds` (less the quiet at either end) for `instances` instances.
pub fn schedule(seed: u64, seconds: u64, instances: usize) -> Vec<Planned> {
    let mut random = Random::new(seed);
    let mut first_pass = FaultKind::ALL.to_vec();
    random.shuffle(&mut first_pass);
    let budget = Duration::from_secs(seconds).saturating_sub(QUIET * 2);
    let mut planned = Vec::new();
    let mut used = Duration::ZERO;
    loop {
        let mut faults = vec![match first_pass.pop() {
            Some(kind) => (kind, random.below(instances)),
            None => (random.pick(&FaultKind::ALL), random.below(instances)),
        }];
        if first_pass.is_empty() && random.chance(0.5) {
            let second = (random.pick(&FaultKind::ALL), random.below(instances));
            if part(second.0, second.1) != part(faults[0].0, faults[0].1) {
                faults.push(second);
            }
        }
        let fault = Planned {
            faults,
            lasts: Duration::from_millis(3_000 + random.below(4_000) as u64),
            then: Duration::from_millis(1_500 + random.below(2_500) as u64),
        };
        used += fault.lasts + fault.then;
        planned.push(fault);
        if used >= budget && first_pass.is_empty() {
            return planned;
        }
    }
}

/// Runs `schedule` on `deployment`: what was injected, from when until healed.
pub async fn run(deployment: &Deployment, schedule: &[Planned], clock: Clock) -> Vec<Fault> {
    tokio::time::sleep(QUIET).await;
    let mut faults = Vec::new();
    for planned in schedule {
        let start = clock.now();
        for &(kind, instance) in &planned.faults {
            deployment.inject(kind, instance).await;
        }
        tokio::time::sleep(planned.lasts).await;
        for &(kind, instance) in &planned.faults {
            deployment.heal(kind, instance).await;
        }
        let end = clock.now();
        for &(kind, instance) in &planned.faults {
            let instance = kind.of_one_instance().then_some(instance);
            faults.push(Fault {
                kind,
                instance,
                start,
                end,
            });
        }
        tokio::time::sleep(planned.then).await;
    }
    tokio::time::sleep(QUIET).await;
    faults
}

#[test]
fn a_short_schedule_gives_every_kind_of_fault_at_least_once_on_its_own() {
    let planned = schedule(29, 100, 2);
    for kind in FaultKind::ALL {
        assert!(
            planned.iter().any(|p| p.faults == [(kind, p.faults[0].1)]),
            "{kind} in {planned:?}"
        );
    }
    let duration: Duration = planned.iter().map(|p| p.lasts + p.then).sum();
    assert!(
        duration + QUIET * 2 <= Duration::from_secs(110),
        "{duration:?}"
    );
}
