//! Judges every response of a run against its history.
//!
//! Pages and standings are held to time-bounded staleness, Δ-atomicity (Golab, Li and Shah,
//! PODC 2011) with Δ the configured bound: a request that started at `s` and ended at `e` may
//! show any committed state whose write was sent before `e`, unless a later state's commit was
//! known before `s - Δ`. The writer is one sequential session, so each page's and each
//! partner's states are totally ordered and the possible ones are a contiguous range. Every
//! other answer is judged by the promises of docs/operations.md: 503 (with `Retry-After`) only
//! while the primary is unreachable, never another 5xx, always the envelope, and a live
//! instance always answers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::history::{At, FaultKind, History, Lines, Outcome, Read, Standing, Version};

/// How long after the primary is back an instance may still answer 503: the pool finds its
/// sessions gone on their next use and connects anew.
pub const RECOVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    StaleValue,
    DeletedLineServed,
    MissingLine,
    PhantomValue,
    RolledBackValue,
    TornPage,
    WrongTotal,
    RevokedTokenServed,
    DeletedPartnerServed,
    ValidTokenRefused,
    ServerError,
    UnavailableOutsideAPrimaryFault,
    UnavailableWithoutRetryAfter,
    LiveInstanceUnreachable,
    NotTheEnvelope,
    UnexpectedStatus,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StaleValue => "stale value",
            Self::DeletedLineServed => "deleted line served",
            Self::MissingLine => "line missing",
            Self::PhantomValue => "phantom value (never committed)",
            Self::RolledBackValue => "rolled-back value",
            Self::TornPage => "torn page (no committed state)",
            Self::WrongTotal => "wrong total",
            Self::RevokedTokenServed => "revoked token served",
            Self::DeletedPartnerServed => "deleted partner served",
            Self::ValidTokenRefused => "valid token refused",
            Self::ServerError => "5xx other than 503",
            Self::UnavailableOutsideAPrimaryFault => "503 outside a primary fault",
            Self::UnavailableWithoutRetryAfter => "503 without Retry-After",
            Self::LiveInstanceUnreachable => "live instance unreachable",
            Self::NotTheEnvelope => "not the envelope",
            Self::UnexpectedStatus => "unexpected status",
        })
    }
}

#[derive(Debug)]
pub struct Violation {
    pub class: Class,
    /// The read's index in the history.
    pub read: usize,
    pub detail: String,
}

/// Every violation in `history`, Δ being `bound`.
pub fn check(history: &History, bound: Duration) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (index, read) in history.reads.iter().enumerate() {
        let mut violation = |class, detail: String| {
            violations.push(Violation {
                class,
                read: index,
                detail,
            })
        };
        match &read.outcome {
            Outcome::Page { lines, total } => {
                if let Some((class, detail)) = judge_standing(history, read, bound, true) {
                    violation(class, detail);
                }
                if *total != lines.len() as u64 {
                    violation(
                        Class::WrongTotal,
                        format!("total {total} with {} lines", lines.len()),
                    );
                }
                if let Some((class, detail)) = judge_page(history, read, lines, bound) {
                    violation(class, detail);
                }
            }
            Outcome::Error { status: 401, .. } => {
                if let Some((class, detail)) = judge_standing(history, read, bound, false) {
                    violation(class, detail);
                }
            }
            Outcome::Error {
                status: 503,
                retry_after,
                ..
            } => {
                if !retry_after {
                    violation(Class::UnavailableWithoutRetryAfter, String::new());
                }
                let primary_down = history.faults.iter().any(|fault| {
                    fault.kind == FaultKind::PrimaryRestarted
                        && fault.start <= read.end
                        && read.start <= fault.end + RECOVERY
                });
                if !primary_down {
                    violation(Class::UnavailableOutsideAPrimaryFault, String::new());
                }
            }
            Outcome::Error { status, code, .. } if *status >= 500 => {
                violation(Class::ServerError, format!("{status} (code {code})"))
            }
            Outcome::Error { status, code, .. } => {
                violation(Class::UnexpectedStatus, format!("{status} (code {code})"))
            }
            Outcome::NotEnvelope { status, body } => violation(
                Class::NotTheEnvelope,
                format!("{status}: {}", body.chars().take(200).collect::<String>()),
            ),
            Outcome::NoAnswer(error) => {
                let restarting = history.faults.iter().any(|fault| {
                    fault.kind == FaultKind::InstanceRestarted
                        && fault.instance == Some(read.instance)
                        && fault.overlaps(read.start, read.end)
                });
                if !restarting {
                    violation(Class::LiveInstanceUnreachable, error.clone());
                }
            }
        }
    }
    violations
}

/// The states `read` may show: from the last whose successor's commit was known more than
/// Δ before the read started, to the last whose write was sent before it ended.
fn possible<T>(versions: &[Version<T>], read: &Read, bound: Duration) -> (usize, usize) {
    let last_before = |at: At| versions.iter().rposition(|v| v.acked + bound < at);
    let oldest = last_before(read.start).unwrap_or(0);
    let newest = versions
        .iter()
        .rposition(|v| v.sent <= read.end)
        .unwrap_or(0);
    (oldest, newest.max(oldest))
}

/// A page served (`served`) or a refusal judged against the partner's possible standings.
fn judge_standing(
    history: &History,
    read: &Read,
    bound: Duration,
    served: bool,
) -> Option<(Class, String)> {
    let standings = &history.standings[history.scopes[read.scope].partner];
    let (oldest, newest) = possible(standings, read, bound);
    let range = &standings[oldest..=newest];
    let accepted = |v: &Version<Standing>| v.value.accepts(read.issued_at);
    let detail = || {
        let possible: Vec<Standing> = range.iter().map(|v| v.value).collect();
        format!("token issued at {}, standings {possible:?}", read.issued_at)
    };
    match served {
        true if !range.iter().any(accepted) => {
            let class = match range.iter().all(|v| v.value.deleted) {
                true => Class::DeletedPartnerServed,
                false => Class::RevokedTokenServed,
            };
            Some((class, detail()))
        }
        false if range.iter().all(accepted) => Some((Class::ValidTokenRefused, detail())),
        _ => None,
    }
}

fn judge_page(
    history: &History,
    read: &Read,
    lines: &[(uuid::Uuid, String)],
    bound: Duration,
) -> Option<(Class, String)> {
    let versions = &history.scopes[read.scope].versions;
    let seen: Lines = lines.iter().cloned().collect();
    let (oldest, newest) = possible(versions, read, bound);
    // A state may recur (a line inserted, then deleted): any of its times will do.
    let shown: Vec<usize> = (0..versions.len())
        .filter(|&k| versions[k].value == seen)
        .collect();
    if shown.is_empty() {
        return Some(not_a_state(history, versions, &seen));
    }
    if shown.iter().any(|k| (oldest..=newest).contains(k)) {
        return None;
    }
    let Some(&shown) = shown.iter().rfind(|&&k| k < oldest) else {
        return Some((
            Class::PhantomValue,
            format!("state {} shown before its write was sent", shown[0]),
        ));
    };
    let due = &versions[oldest];
    let late = (due.acked + bound).as_millis();
    let detail = |what: &str| {
        format!(
            "{what}: state {shown} shown at {} ms, state {oldest} due from {late} ms",
            read.start.as_millis()
        )
    };
    let class = if seen.keys().any(|id| !due.value.contains_key(id)) {
        Class::DeletedLineServed
    } else if due.value.keys().any(|id| !seen.contains_key(id)) {
        Class::MissingLine
    } else {
        Class::StaleValue
    };
    Some((class, detail(&class.to_string())))
}

/// A page matching no committed state: why.
fn not_a_state(history: &History, versions: &[Version<Lines>], seen: &Lines) -> (Class, String) {
    let committed = |id, name: &String| {
        versions
            .iter()
            .any(|v| v.value.get(id).is_some_and(|n| n == name))
    };
    for (id, name) in seen {
        if history.rolled_back.contains(name) {
            return (Class::RolledBackValue, format!("{id}: {name}"));
        }
        if !committed(id, name) {
            return (Class::PhantomValue, format!("{id}: {name}"));
        }
    }
    (Class::TornPage, format!("{} lines", seen.len()))
}

/// The faults active during `read`, as a label: "none", one kind, or kinds joined by " + ".
fn faults_during(history: &History, read: &Read) -> String {
    let mut kinds: Vec<FaultKind> = history
        .faults
        .iter()
        .filter(|fault| fault.overlaps(read.start, read.end))
        .map(|fault| fault.kind)
        .collect();
    kinds.sort();
    kinds.dedup();
    match kinds.is_empty() {
        true => "none".into(),
        false => kinds
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

/// A Markdown table of the requests by the faults they met: answers and violations.
pub fn table(history: &History, violations: &[Violation]) -> String {
    #[derive(Default)]
    struct Row {
        requests: usize,
        pages: usize,
        refused: usize,
        unavailable: usize,
        unanswered: usize,
        violations: usize,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let labels: Vec<String> = history
        .reads
        .iter()
        .map(|read| faults_during(history, read))
        .collect();
    for (read, label) in history.reads.iter().zip(&labels) {
        let row = rows.entry(label.clone()).or_default();
        row.requests += 1;
        match read.outcome {
            Outcome::Page { .. } => row.pages += 1,
            Outcome::Error { status: 401, .. } => row.refused += 1,
            Outcome::Error { status: 503, .. } => row.unavailable += 1,
            Outcome::NoAnswer(_) => row.unanswered += 1,
            _ => {}
        }
    }
    for violation in violations {
        rows.get_mut(&labels[violation.read]).unwrap().violations += 1;
    }
    let mut text = String::from(
        "| faults during the request | requests | 200 | 401 | 503 | no answer | violations |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (label, row) in &rows {
        text += &format!(
            "| {label} | {} | {} | {} | {} | {} | {} |\n",
            row.requests, row.pages, row.refused, row.unavailable, row.unanswered, row.violations
        );
    }
    let mut by_class: BTreeMap<Class, (usize, &Violation)> = BTreeMap::new();
    for violation in violations {
        by_class.entry(violation.class).or_insert((0, violation)).0 += 1;
    }
    for (class, (count, first)) in by_class {
        let read = &history.reads[first.read];
        text += &format!(
            "\n{class}: {count}, first at {} ms on instance {} during {} ({})",
            read.start.as_millis(),
            read.instance,
            labels[first.read],
            first.detail
        );
    }
    text
}

/// The checker's self-test: each class fires on a history made to break it, and a history
/// that keeps every promise passes.
#[cfg(test)]
mod self_test {
    use std::collections::HashSet;

    use uuid::Uuid;

    use super::super::history::{Fault, Scope};
    use super::*;

    const BOUND: Duration = Duration::from_secs(2);

    fn ms(at: u64) -> At {
        Duration::from_millis(at)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn lines(entries: &[(u128, &str)]) -> Lines {
        entries
            .iter()
            .map(|(n, name)| (id(*n), name.to_string()))
            .collect()
    }

    fn version<T>(value: T, sent: u64, acked: u64) -> Version<T> {
        Version {
            value,
            sent: ms(sent),
            acked: ms(acked),
        }
    }

    const ACTIVE: Standing = Standing {
        tokens_valid_after_ms: None,
        deleted: false,
    };

    /// One page's states: "a" at the start; renamed "b" (committed 10,000–10,010 ms); line 2
    /// inserted (20,000–20,010); line 1 deleted (30,000–30,010). The partner revoked tokens
    /// issued before 40 s (40,000–40,010), was deleted (50,000–50,010) and restored
    /// (60,000–60,010). "rolled" was written and rolled back. A primary restart from 70 s to
    /// 75 s, an instance restart (instance 1) from 80 s to 85 s.
    fn history() -> History {
        let revoked = Standing {
            tokens_valid_after_ms: Some(40_000),
            deleted: false,
        };
        let deleted = Standing {
            deleted: true,
            ..revoked
        };
        History {
            scopes: vec![Scope {
                partner: 0,
                tenant: id(100),
                versions: vec![
                    version(lines(&[(1, "a")]), 0, 0),
                    version(lines(&[(1, "b")]), 10_000, 10_010),
                    version(lines(&[(1, "b"), (2, "c")]), 20_000, 20_010),
                    version(lines(&[(2, "c")]), 30_000, 30_010),
                ],
            }],
            standings: vec![vec![
                version(ACTIVE, 0, 0),
                version(revoked, 40_000, 40_010),
                version(deleted, 50_000, 50_010),
                version(revoked, 60_000, 60_010),
            ]],
            rolled_back: HashSet::from(["rolled".to_string()]),
            reads: Vec::new(),
            faults: vec![
                Fault {
                    kind: FaultKind::PrimaryRestarted,
                    instance: None,
                    start: ms(70_000),
                    end: ms(75_000),
                },
                Fault {
                    kind: FaultKind::InstanceRestarted,
                    instance: Some(1),
                    start: ms(80_000),
                    end: ms(85_000),
                },
            ],
        }
    }

    /// A read from `start` to `start` + 5 ms on instance 1 with a token issued at 1 s (before
    /// the revocation) or, with `fresh`, at 100 s.
    fn read(start: u64, fresh: bool, outcome: Outcome) -> Read {
        Read {
            instance: 1,
            scope: 0,
            issued_at: if fresh { 100 } else { 1 },
            start: ms(start),
            end: ms(start + 5),
            outcome,
        }
    }

    fn page(entries: &[(u128, &str)]) -> Outcome {
        Outcome::Page {
            lines: entries
                .iter()
                .map(|(n, name)| (id(*n), name.to_string()))
                .collect(),
            total: entries.len() as u64,
        }
    }

    fn error(status: u16, retry_after: bool) -> Outcome {
        Outcome::Error {
            status,
            code: i64::from(status),
            retry_after,
        }
    }

    /// The classes `check` finds in the history with `reads`.
    fn classes(reads: Vec<Read>) -> Vec<Class> {
        let mut history = history();
        history.reads = reads;
        check(&history, BOUND).iter().map(|v| v.class).collect()
    }

    #[test]
    fn a_history_that_keeps_every_promise_passes() {
        let reads = vec![
            read(5_000, false, page(&[(1, "a")])),
            // Within Δ of the rename's commit: the old name may still be shown.
            read(11_000, false, page(&[(1, "a")])),
            read(10_005, false, page(&[(1, "b")])),
            read(25_000, false, page(&[(1, "b"), (2, "c")])),
            read(45_000, true, page(&[(2, "c")])),
            read(41_000, false, page(&[(2, "c")])),
            read(43_000, false, error(401, false)),
            read(52_100, true, error(401, false)),
            read(61_000, true, error(401, false)),
            read(71_000, true, error(503, true)),
            read(76_500, true, error(503, true)),
            read(81_000, true, Outcome::NoAnswer("refused".into())),
        ];
        assert_eq!(classes(reads), []);
    }

    #[test]
    fn each_class_fires_on_a_history_made_to_break_it() {
        let cases = [
            (read(12_100, false, page(&[(1, "a")])), Class::StaleValue),
            (
                read(33_000, false, page(&[(1, "b"), (2, "c")])),
                Class::DeletedLineServed,
            ),
            (read(23_000, false, page(&[(1, "b")])), Class::MissingLine),
            (read(5_000, false, page(&[(1, "z")])), Class::PhantomValue),
            (read(5_000, false, page(&[(1, "b")])), Class::PhantomValue),
            (
                read(5_000, false, page(&[(1, "rolled")])),
                Class::RolledBackValue,
            ),
            (
                read(25_000, false, page(&[(1, "a"), (2, "c")])),
                Class::TornPage,
            ),
            (
                read(
                    5_000,
                    false,
                    Outcome::Page {
                        lines: vec![(id(1), "a".into())],
                        total: 2,
                    },
                ),
                Class::WrongTotal,
            ),
            (
                read(42_100, false, page(&[(2, "c")])),
                Class::RevokedTokenServed,
            ),
            (
                read(52_100, true, page(&[(2, "c")])),
                Class::DeletedPartnerServed,
            ),
            (
                read(5_000, false, error(401, false)),
                Class::ValidTokenRefused,
            ),
            (
                read(62_100, true, error(401, false)),
                Class::ValidTokenRefused,
            ),
            (read(5_000, false, error(500, false)), Class::ServerError),
            (
                read(5_000, false, error(503, true)),
                Class::UnavailableOutsideAPrimaryFault,
            ),
            (
                read(77_100, false, error(503, true)),
                Class::UnavailableOutsideAPrimaryFault,
            ),
            (
                read(71_000, false, error(503, false)),
                Class::UnavailableWithoutRetryAfter,
            ),
            (
                read(5_000, false, Outcome::NoAnswer("reset".into())),
                Class::LiveInstanceUnreachable,
            ),
            (
                Read {
                    instance: 0,
                    ..read(81_000, false, Outcome::NoAnswer("refused".into()))
                },
                Class::LiveInstanceUnreachable,
            ),
            (
                read(
                    5_000,
                    false,
                    Outcome::NotEnvelope {
                        status: 200,
                        body: "<html>".into(),
                    },
                ),
                Class::NotTheEnvelope,
            ),
            (
                read(5_000, false, error(429, false)),
                Class::UnexpectedStatus,
            ),
        ];
        for (read, class) in cases {
            assert_eq!(classes(vec![read.clone()]), [class], "{read:?}");
        }
    }

    #[test]
    fn the_table_names_each_fault_and_the_first_violation_of_each_class() {
        let mut history = history();
        history.reads = vec![
            read(5_000, false, page(&[(1, "a")])),
            read(71_000, false, error(503, true)),
            read(12_100, false, page(&[(1, "a")])),
        ];
        let violations = check(&history, BOUND);
        let table = table(&history, &violations);
        assert!(
            table.contains("| none | 2 | 2 | 0 | 0 | 0 | 1 |"),
            "{table}"
        );
        assert!(
            table.contains("| primary restarted | 1 | 0 | 0 | 1 | 0 | 0 |"),
            "{table}"
        );
        assert!(
            table.contains("stale value: 1, first at 12100 ms on instance 1 during none"),
            "{table}"
        );
    }
}
