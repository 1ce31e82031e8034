//! openraft's storage test suite (`openraft::testing::log::Suite`) against the member's log
//! store and state machine, on real RocksDB databases in a temporary directory.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use tempfile::TempDir;

use super::TypeConfig;
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use crate::mvcc::Mvcc;

/// Opens a fresh member's storage: both databases, the log and the state machine.
struct Fresh;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Fresh {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let io = |e: &dyn std::fmt::Display| StorageError::read(TypeConfig::err_from_string(e));
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let dbs = crate::storage::open(dir.path()).map_err(|e| io(&e))?;
        let log = LogStore::open(dbs.log.clone(), dbs.state.clone()).map_err(|e| io(&e))?;
        let mvcc = Mvcc::open(dbs.state).map_err(|e| io(&e))?;
        let sm = StateMachine::open(mvcc, dir.path().join("snap"), 100_000).map_err(|e| io(&e))?;
        Ok((dir, log, sm))
    }
}

type Cases = Suite<TypeConfig, LogStore, StateMachine, Fresh, TempDir>;

/// Runs each case of the suite on fresh storage, and names every case that fails.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {{
        let mut failed = Vec::new();
        $(
            let (_dir, log, sm) = Fresh.build().await.expect("open storage");
            if let Err(e) = Cases::$case(log, sm).await {
                failed.push(format!("{}: {e}", stringify!($case)));
            }
        )*
        failed
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    let mut failed = cases!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_membership_from_empty_log_and_sm,
        get_initial_state_membership_from_sm_inlog_is_smaller,
        get_initial_state_membership_from_log_insm_is_smaller,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_inverted_log_order,
        get_initial_state_conflict_at_same_index,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        leader_bounded_stream,
        entries_stream,
        try_get_log_entry,
        log_reader_reads_new_entries,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_after_11,
        delete_logs_after_5,
        delete_logs_after_0,
        delete_logs_after_none,
        append_to_log,
        snapshot_meta,
        snapshot_meta_optional,
        apply_single,
        apply_multiple,
    );
    if let Err(e) = Cases::transfer_snapshot(&Fresh).await {
        failed.push(format!("transfer_snapshot: {e}"));
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
