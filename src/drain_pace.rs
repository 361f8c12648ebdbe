//! How the background writers (spend log, access log) pace their drains of the queues the HTTP workers fill:
//! a request never wakes a writer; the writer looks on its own clock.

use std::time::Duration;

/// The pause while entries come: short bursts (a few hundred rows at 50 k requests a second) keep a writer
/// from holding a core, and the entries' memory from leaving the caches, for long. Every 50 ms, 2,500 rows at
/// once cost 6 % of throughput and a higher p99 on 2 cores (`bench/results/issue-20-spend-logs.md`, section 14).
const WHILE_BUSY: Duration = Duration::from_millis(5);
/// The pause after a look that found nothing: an idle gateway wakes a writer 20 times a second, not 200.
const WHEN_IDLE: Duration = Duration::from_millis(50);

/// How long a writer sleeps before it looks again, given whether its last look `found` anything.
pub fn pause_after(found: bool) -> Duration {
    if found {
        WHILE_BUSY
    } else {
        WHEN_IDLE
    }
}
