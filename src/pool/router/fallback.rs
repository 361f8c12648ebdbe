//! The next fallback group a request goes on to: one the caller may use, and its key's limits admit.

use std::sync::Arc;

use super::Routing;
use crate::proxy::Tally;

impl<T: Tally> Routing<'_, T> {
    /// The next group of `queue` the caller may use, with a deployment on its tier, and its key's limits
    /// admit (counted there), taken off the queue with those skipped before it.
    pub(super) async fn next_fallback<'q>(&mut self, queue: &mut &'q [Arc<str>]) -> Option<&'q Arc<str>> {
        while let Some((model, rest)) = queue.split_first() {
            *queue = rest;
            // Checked before the key's limits count the request there: a group with no deployment on the
            // caller's tier is skipped without using them up.
            if !self.caller.may_use(self.router.table, model) || !self.router.table.reaches(model, self.caller.tier) {
                continue;
            }
            let admitted = match self.tally.as_mut() {
                Some(tally) => tally.admit_fallback(model).await,
                None => true,
            };
            if admitted {
                return Some(model);
            }
        }
        None
    }
}
