//! Prometheus metrics of a store member, computed when scraped.

use std::fmt::Write;

use super::Replica;

/// Renders the member's metrics in the Prometheus text format.
pub fn render(replica: &Replica) -> String {
    let m = replica.metrics();
    let mvcc = &replica.shared.mvcc;
    let gauges: [(&str, &str, f64); 10] = [
        (
            "bosun_store_revision",
            "Current revision of the store.",
            mvcc.rev() as f64,
        ),
        (
            "bosun_store_compact_revision",
            "Revision up to which history is compacted.",
            mvcc.compact_rev() as f64,
        ),
        (
            "bosun_store_db_size_bytes",
            "Size of the member's database.",
            replica.db_size() as f64,
        ),
        (
            "bosun_store_quota_bytes",
            "Storage quota.",
            replica.cfg.quota() as f64,
        ),
        (
            "bosun_store_leases",
            "Granted leases.",
            mvcc.leases().len() as f64,
        ),
        (
            "bosun_store_watchers",
            "Watch tasks following the hub.",
            replica.shared.hub.watchers() as f64,
        ),
        (
            "bosun_raft_term",
            "Current Raft term.",
            m.current_term as f64,
        ),
        (
            "bosun_raft_is_leader",
            "1 when this member leads.",
            f64::from(u8::from(m.current_leader == Some(replica.id))),
        ),
        (
            "bosun_raft_last_log_index",
            "Index of the last log entry.",
            m.last_log_index.unwrap_or(0) as f64,
        ),
        (
            "bosun_raft_applied_index",
            "Index of the last applied entry.",
            m.last_applied.as_ref().map_or(0, |l| l.index) as f64,
        ),
    ];
    let mut out = String::new();
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP bosun_raft_has_leader 1 when the cluster has a leader.\n# TYPE bosun_raft_has_leader gauge\nbosun_raft_has_leader {}",
        u8::from(m.current_leader.is_some())
    );
    let (reads, rounds, peer_confirmations, heartbeat_rounds) = replica.read_index_counts();
    let counters = [
        (
            "bosun_store_linearizable_reads_total",
            "Linearizable reads this member served.",
            reads,
        ),
        (
            "bosun_store_read_index_rounds_total",
            "Read indexes this member asked the leader for (concurrent reads share one).",
            rounds,
        ),
        (
            "bosun_store_read_index_peer_confirmations_total",
            "Read indexes this member confirmed as leader by asking one peer its term.",
            peer_confirmations,
        ),
        (
            "bosun_store_read_index_heartbeat_rounds_total",
            "Heartbeat rounds this member ran as leader to confirm a read index.",
            heartbeat_rounds,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    out
}
