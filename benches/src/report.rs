//! Tables of the figures: one per kind of cluster, the side-by-side comparison, and the
//! targets.

use crate::load::{ClientKind, RunResult, Scenario};

/// How one scenario ended.
#[derive(Debug)]
pub enum Outcome {
    /// It ran; the figures.
    Done(RunResult),
    /// It could not run (connections failed, every request failed, ...).
    Failed(String),
}

impl Outcome {
    /// The figures when the scenario ran and something succeeded.
    pub fn result(&self) -> Option<&RunResult> {
        match self {
            Outcome::Done(r) if !r.all_failed() => Some(r),
            _ => None,
        }
    }
}

/// Everything measured on one cluster.
#[derive(Debug)]
pub struct KindRun {
    /// `bosun` or `etcd`.
    pub name: &'static str,
    /// One entry per scenario, in the order they ran.
    pub outcomes: Vec<(Scenario, Outcome)>,
    /// Remarks gathered during the run (leader changes, log findings, ...).
    pub notes: Vec<String>,
}

impl KindRun {
    /// The figures of the scenario labelled `label`, if it ran and something succeeded.
    pub fn find(&self, label: &str) -> Option<&RunResult> {
        self.outcomes
            .iter()
            .find(|(s, _)| s.label() == label)
            .and_then(|(_, o)| o.result())
    }
}

/// `x` with `decimals` decimals, or `-` when absent.
fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// `a / b` as `1.23x`, or `-` when either is absent or `b` is zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    }
}

/// Prints the figures of one cluster; "cpu µs/op" is the members' CPU time (all three,
/// user and system) per successful request over the measured windows, "client µs" the load
/// generator's own (the client library's).
pub fn print_kind(run: &KindRun) {
    println!();
    println!("== {} (3 members) ==", run.name);
    println!(
        "{:<31} {:>7} {:>5} {:>11} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "scenario",
        "clients",
        "conns",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "cpu µs/op",
        "client µs",
        "errors"
    );
    for (s, o) in &run.outcomes {
        match o {
            Outcome::Done(r) => println!(
                "{:<31} {:>7} {:>5} {:>11.1} {:>9} {:>9} {:>10} {:>10} {:>8}",
                s.label(),
                s.clients,
                s.conns,
                r.ops_per_sec(),
                num(r.quantile_ms(0.5), 3),
                num(r.quantile_ms(0.99), 3),
                num(r.server_cpu_us_per_op(), 1),
                num(r.client_cpu_us_per_op(), 1),
                r.errors
            ),
            Outcome::Failed(e) => println!(
                "{:<31} {:>7} {:>5}  failed: {e}",
                s.label(),
                s.clients,
                s.conns
            ),
        }
    }
    for (s, o) in &run.outcomes {
        if let Outcome::Done(r) = o {
            for e in &r.error_samples {
                println!("  {} error: {e}", s.label());
            }
        }
    }
    for n in &run.notes {
        println!("  note: {n}");
    }
}

/// Prints Bosun's figures next to etcd's, scenario by scenario ("cpu": the members' CPU µs
/// per request).
pub fn print_comparison(bosun: &KindRun, etcd: &KindRun) {
    println!();
    println!("== bosun vs etcd (ratio = bosun / etcd) ==");
    println!(
        "{:<31} | {:>11} | {:>11} | {:>6} | {:>9} | {:>9} | {:>6} | {:>9} | {:>9} | {:>10} | {:>10}",
        "scenario",
        "bosun ops/s",
        "etcd ops/s",
        "ratio",
        "bosun p50",
        "etcd p50",
        "ratio",
        "bosun p99",
        "etcd p99",
        "bosun cpu",
        "etcd cpu"
    );
    for (s, o) in &bosun.outcomes {
        let label = s.label();
        let b = o.result();
        let e = etcd.find(&label);
        let (b_ops, e_ops) = (b.map(RunResult::ops_per_sec), e.map(RunResult::ops_per_sec));
        let (b50, e50) = (
            b.and_then(|r| r.quantile_ms(0.5)),
            e.and_then(|r| r.quantile_ms(0.5)),
        );
        let (b99, e99) = (
            b.and_then(|r| r.quantile_ms(0.99)),
            e.and_then(|r| r.quantile_ms(0.99)),
        );
        let (bcpu, ecpu) = (
            b.and_then(RunResult::server_cpu_us_per_op),
            e.and_then(RunResult::server_cpu_us_per_op),
        );
        println!(
            "{:<31} | {:>11} | {:>11} | {:>6} | {:>9} | {:>9} | {:>6} | {:>9} | {:>9} | {:>10} | {:>10}",
            label,
            num(b_ops, 1),
            num(e_ops, 1),
            ratio(b_ops, e_ops),
            num(b50, 3),
            num(e50, 3),
            ratio(b50, e50),
            num(b99, 3),
            num(e99, 3),
            num(bcpu, 1),
            num(ecpu, 1)
        );
    }
}

/// `PASS`, `FAIL`, or `n/a` when a figure is missing.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "n/a (not measured)",
    }
}

/// The targets per client library: throughput ratios (put@256, get-linearizable@64) and
/// the put@1 p50 ratio (at most).
struct Targets {
    client: ClientKind,
    put256: f64,
    get64: f64,
    put1_p50: f64,
}

/// With the lean client, the targets of the three-member cluster; with the `etcd-client`
/// crate at default flags, those of the standard-client work.
const TARGETS: [Targets; 2] = [
    Targets {
        client: ClientKind::Lean,
        put256: 2.0,
        get64: 2.0,
        put1_p50: 1.0,
    },
    Targets {
        client: ClientKind::EtcdClient,
        put256: 2.5,
        get64: 3.0,
        put1_p50: 0.9,
    },
];

/// Prints the targets of each client library measured, with the figures behind them.
pub fn print_targets(bosun: &KindRun, etcd: &KindRun) {
    println!();
    println!("== targets ==");
    for t in &TARGETS {
        let client = t.client.name();
        if !bosun.outcomes.iter().any(|(s, _)| s.client == t.client) {
            continue;
        }
        for (shape, min) in [("put@256", t.put256), ("get-linearizable@64", t.get64)] {
            let label = format!("{shape} {client}");
            let b = bosun.find(&label).map(RunResult::ops_per_sec);
            let e = etcd.find(&label).map(RunResult::ops_per_sec);
            let ok = b.zip(e).map(|(b, e)| e > 0.0 && b / e >= min);
            println!(
                "{:<56} bosun {:>10} ops/s, etcd {:>10} ops/s, ratio {:>6}  {}",
                format!("{label} throughput bosun/etcd >= {min:.1}:"),
                num(b, 1),
                num(e, 1),
                ratio(b, e),
                verdict(ok)
            );
        }
        let label = format!("put@1 {client}");
        let b = bosun.find(&label).and_then(|r| r.quantile_ms(0.5));
        let e = etcd.find(&label).and_then(|r| r.quantile_ms(0.5));
        let ok = b.zip(e).map(|(b, e)| b <= e * t.put1_p50);
        println!(
            "{:<56} bosun {:>10} ms,    etcd {:>10} ms,    ratio {:>6}  {}",
            format!("{label} p50 bosun/etcd <= {:.1}:", t.put1_p50),
            num(b, 3),
            num(e, 3),
            ratio(b, e),
            verdict(ok)
        );
    }
}
