//! The version of the grants tree: a counter every writer of grants raises once its write is in sled, so a
//! worker may keep serving a grant it decoded without reading the store again while the version stays the
//! same. A grant's block, tier or limits change is in sled before the counter moves, and the counter moves
//! before the change is acknowledged, so every request that starts after the acknowledgment reads it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::change::{Tree, Write};

#[derive(Debug, Default)]
pub struct GrantsVersion(AtomicU64);

impl GrantsVersion {
    /// The version now. Read it before reading a grant from sled, and keep it with what was read.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// After grants were written (and committed) in sled.
    pub fn raise(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// After `writes` were committed: raised when one of them is a grant's.
    pub fn raise_for(&self, writes: &[Write]) {
        if writes.iter().any(|write| write.tree == Tree::Grants) {
            self.raise();
        }
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
    }
}
