//! openraft's own storage conformance suite, run against the sled store.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use raftgres_storage::{LogStore, StateMachine, Store, TypeConfig};
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (log, sm) = Store::open(dir.path(), "conformance", 0).expect("open a fresh store");
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::result_large_err)]
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(SledBuilder)
}
