//! The version of the grants tree: a counter every writer of grants raises once its write is in sled, so a
//! worker may keep serving a grant it decoded without reading the store again while the version stays the
//! same. A grant's block, tier or limits change is in sled before the counter moves, and the counter moves
//! before the change is acknowledged, so every request that starts after the acknowledgment reads it. (With
//! replicas, a change is acknowledged once Redis has it and this replica's copy has it, or after waiting a
//! second for the copy; another replica's copy follows within its polling delay, as its store always did.)
//!
//! Every write to the grants tree raises it: committed changes (`transaction.rs`), a replica's copied changes
//! and whole copies (`follower.rs`), imports and the upgrade at open (`store.rs`); `tests/architecture.rs`
//! keeps raw writes to the tree to those places.

use std::sync::atomic::{AtomicU64, Ordering};

use super::change::{Tree, Write};

#[derive(Debug, Default)]
pub(super) struct GrantsVersion(AtomicU64);

impl GrantsVersion {
    /// The version now. Read it before reading a grant from sled, and keep it with what was read.
    pub(super) fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// After grants were written (and committed) in sled.
    pub(super) fn raise(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    /// After `writes` were committed: raised when one of them is a grant's.
    pub(super) fn raise_for(&self, writes: &[Write]) {
        if writes.iter().any(|write| write.tree == Tree::Grants) {
            self.raise();
        }
    }

    /// Raises the version when dropped: for a writer that may stop half way, with some grants written
    /// (an error in a whole copy or an import), as well as when it ends.
    pub(super) fn raised_on_exit(&self) -> RaiseOnExit<'_> {
        RaiseOnExit(self)
    }
}

pub(super) struct RaiseOnExit<'a>(&'a GrantsVersion);

impl Drop for RaiseOnExit<'_> {
    fn drop(&mut self) {
        self.0.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_grant_write_raises_the_version() {
        let version = GrantsVersion::default();
        let spend = Write { tree: Tree::Spend, key: vec![1], value: Some(vec![2]) };
        version.raise_for(std::slice::from_ref(&spend));
        assert_eq!(version.now(), 0);
        let grant = Write { tree: Tree::Grants, key: vec![1], value: None };
        version.raise_for(&[spend, grant]);
        assert_eq!(version.now(), 1);
        let failing = || -> Result<(), ()> {
            let _raise = version.raised_on_exit();
            Err(())
        };
        assert!(failing().is_err());
        assert_eq!(version.now(), 2, "a writer that stops half way raises it too");
    }
}
