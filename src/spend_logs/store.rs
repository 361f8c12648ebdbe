//! The spend-log store: an append-only log of row blocks (see `codec`) in segment files of its own
//! (`<data-dir>/spend_logs/`, never in the key store). The writer appends a block per couple of hundred rows; reads
//! scan segments newest first, skipping blocks outside the range unread. Pruning is logical first (rows past
//! the row cap or the retention are never read) and physical by whole segments, so the disk holds at most
//! one segment more than the bounds.
//!
//! Not in sled, unlike the keys: a log written once, read by scans and cut from its oldest end needs no
//! B-tree, and sled's inserts of these blocks cost the gateway about 1.8 µs of CPU per request (its leaves
//! copied and checksummed on every insert) against about 0.1 µs for a file append (bench/results/
//! issue-20-spend-logs.md §13).

#[path = "store/migrate.rs"]
mod migrate;
#[path = "store/segment.rs"]
mod segment;

use std::fs::{File, OpenOptions};
use std::ops::ControlFlow;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use self::segment::BlockHead;
use super::codec;
use super::served::{SpendRow, Stored};
use crate::keys::make_private;

/// Name of the log's directory inside `--data-dir`.
pub(super) const DIR: &str = "spend_logs";
/// A segment is closed, and the next one started, before it would pass this many bytes (a block larger than
/// this goes alone). About 44,000 usual rows: what the disk may hold past the row cap or the retention.
const SEGMENT_BYTES: u64 = 8 << 20;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct SpendStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held by the read in progress: a read holds a segment (up to 8 MiB) in memory at a time, so reads go
    /// one after another, however many dashboards ask at once.
    reading: Mutex<()>,
    /// Reads running or waiting for `reading`; past [`MAX_READS`], a read is refused as busy.
    reads: AtomicUsize,
}

/// The most reads running or waiting at once: a read a client gave up on still runs to its end, so waiting
/// reads are capped rather than queued without bound (each holds a thread and, once running, its rows).
const MAX_READS: usize = 4;

/// A read refused because [`MAX_READS`] are running or waiting (an error of kind `WouldBlock`).
pub fn is_busy(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::WouldBlock
}

/// What the store knows of its files (read whole at start-up, kept up to date since).
struct State {
    segments: Vec<Segment>,
    /// The newest segment, open for appending (`None`: the next block starts a new one).
    tail: Option<File>,
    next_sequence: u64,
    rows: u64,
    /// The bounds in force: rows past the newest `max_rows`, or that started before `cutoff_ms`, are pruned.
    max_rows: u64,
    cutoff_ms: u64,
    /// The oldest rows hidden by a row cap since start-up, still in their segments' files: they stay hidden when
    /// a reload raises the cap (segments are deleted whole, so a lower cap hides rows before their file goes).
    hidden_floor: u64,
}

impl State {
    /// The oldest rows not read: past the row cap in force, or hidden by an earlier one.
    fn hidden(&self) -> u64 {
        self.hidden_floor.max(self.rows.saturating_sub(self.max_rows))
    }
}

/// One segment file, as far as written.
#[derive(Debug, Clone, Copy)]
struct Segment {
    sequence: u64,
    bytes: u64,
    rows: u64,
    earliest_ms: u64,
    latest_ms: u64,
}

/// What a page read found.
pub struct Page {
    pub rows: Vec<SpendRow>,
    /// More rows matched than the page holds.
    pub truncated: bool,
}

/// The store as a read sees it: its segments as far as written when the read began, and the bounds then.
struct Snapshot {
    segments: Vec<Segment>,
    /// Rows at the oldest end past the row cap.
    hidden: u64,
    cutoff_ms: u64,
}

impl SpendStore {
    /// Opens the log under `data_dir` (a store of an earlier version, in sled, is moved into it first).
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join(DIR);
        migrate::from_sled(data_dir, &dir, Self::open_dir)?;
        Self::open_dir(&dir)
    }

    /// Opens the log in `dir`. Not locked here: the gateway opens it after its key store, whose lock keeps a
    /// second process off the data directory.
    fn open_dir(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Rows name keys (by hash) and end users: the owner's only, like the key store.
        make_private(dir)?;
        let mut segments = Vec::new();
        for sequence in segment::list(dir)? {
            let (heads, end) = segment::heads(dir, sequence)?;
            let length = std::fs::metadata(segment::path(dir, sequence))?.len();
            if end < length {
                // Left as it is: blocks are only ever appended to a segment opened since, so the bytes past the
                // last whole block are a write cut short (or damage), never read; they go with the segment.
                log::warn!("spend-log segment {sequence} ends in {} bytes that are no whole block", length - end);
            }
            let rows = heads.iter().map(|head| u64::from(head.rows)).sum();
            let earliest_ms = heads.iter().map(|head| head.earliest_ms).min().unwrap_or(u64::MAX);
            let latest_ms = heads.iter().map(|head| head.latest_ms).max().unwrap_or(0);
            segments.push(Segment { sequence, bytes: end, rows, earliest_ms, latest_ms });
        }
        let next_sequence = segments.last().map_or(0, |last| last.sequence + 1);
        let rows = segments.iter().map(|segment| segment.rows).sum();
        let state =
            State { segments, tail: None, next_sequence, rows, max_rows: u64::MAX, cutoff_ms: 0, hidden_floor: 0 };
        let (reading, reads) = (Mutex::new(()), AtomicUsize::new(0));
        let inner = Inner { dir: dir.to_owned(), state: Mutex::new(state), reading, reads };
        Ok(Self { inner: Arc::new(inner) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The rows stored (pruned or not yet).
    pub(super) fn rows(&self) -> u64 {
        self.state().rows
    }

    /// Appends `block`: `rows` rows that started from `earliest` to `latest` ms.
    pub(super) fn append(&self, block: &[u8], (earliest, latest): (u64, u64), rows: u64) -> std::io::Result<()> {
        if block.is_empty() {
            return Ok(());
        }
        let head =
            BlockHead { rows: u32::try_from(rows).unwrap_or(u32::MAX), earliest_ms: earliest, latest_ms: latest };
        let record = segment::record(block, head);
        let mut state = self.state();
        let state = &mut *state;
        // A segment removed under the gateway (its directory deleted by hand) would swallow every row written
        // to it: the next block starts a new one (one `fstat` a block).
        if state.tail.as_ref().is_some_and(|file| file.metadata().map_or(true, |meta| meta.nlink() == 0)) {
            state.tail = None;
        }
        let full = state.segments.last().is_some_and(|last| last.bytes + record.len() as u64 > SEGMENT_BYTES);
        if state.tail.is_none() || full {
            // The segment it leaves is made durable first (the writer's thread pays, never a request).
            if let Some(done) = state.tail.take() {
                done.sync_data()?;
            }
            let sequence = state.next_sequence;
            let open = || {
                let options = OpenOptions::new().create(true).append(true).mode(0o600).clone();
                options.open(segment::path(&self.inner.dir, sequence))
            };
            let file = match open() {
                // The directory was removed while the gateway ran: made again, rather than every row lost.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&self.inner.dir)?;
                    make_private(&self.inner.dir)?;
                    open()?
                }
                opened => opened?,
            };
            state.next_sequence += 1;
            state.segments.push(Segment { sequence, bytes: 0, rows: 0, earliest_ms: u64::MAX, latest_ms: 0 });
            state.tail = Some(file);
        }
        let (Some(file), Some(last)) = (state.tail.as_mut(), state.segments.last_mut()) else { return Ok(()) };
        if let Err(err) = segment::append(file, &record) {
            // Back to the last whole block (a full disk may have taken part of it), so the next block follows a
            // whole one in the same segment; if even that fails, the next block starts a segment of its own.
            if file.set_len(last.bytes).is_err() {
                state.tail = None;
            }
            return Err(err);
        }
        last.bytes += record.len() as u64;
        last.rows += rows;
        last.earliest_ms = last.earliest_ms.min(earliest);
        last.latest_ms = last.latest_ms.max(latest);
        state.rows += rows;
        Ok(())
    }

    /// Sets the bounds: the newest `max_rows` rows are kept, and none that started before `cutoff_ms`. Rows
    /// past them are not read from now on (rows a lower cap hid stay hidden under a higher one); a segment
    /// holding only such rows is deleted. Returns the rows deleted.
    pub(super) fn prune(&self, cutoff_ms: u64, max_rows: u64) -> std::io::Result<u64> {
        let mut state = self.state();
        state.hidden_floor = state.hidden();
        // The cutoff is set, not only moved forward: a clock stepped back (after a step forward) must not hide
        // new rows. The writer keeps it from moving back otherwise.
        (state.max_rows, state.cutoff_ms) = (max_rows, cutoff_ms);
        let mut removed = 0;
        while let Some(&oldest) = state.segments.first() {
            if oldest.rows > state.hidden() && oldest.latest_ms >= state.cutoff_ms {
                break;
            }
            if state.segments.len() == 1 {
                state.tail = None;
            }
            match std::fs::remove_file(segment::path(&self.inner.dir, oldest.sequence)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
            state.segments.remove(0);
            state.rows -= oldest.rows;
            state.hidden_floor = state.hidden_floor.saturating_sub(oldest.rows);
            removed += oldest.rows;
        }
        Ok(removed)
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot { segments: state.segments.clone(), hidden: state.hidden(), cutoff_ms: state.cutoff_ms }
    }

    /// Calls `each` with the rows kept that started in `from_ms..to_ms`, newest first or oldest first,
    /// until it breaks. With `containing`, a segment or block without those bytes is passed over unread.
    fn visit(
        &self,
        (from_ms, to_ms): (u64, u64),
        newest_first: bool,
        containing: Option<&memchr::memmem::Finder<'_>>,
        mut each: impl FnMut(Stored) -> ControlFlow<()>,
    ) -> std::io::Result<()> {
        let _read = Read::enter(&self.inner)?;
        let _reading = self.inner.reading.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = self.snapshot();
        let from_ms = from_ms.max(snapshot.cutoff_ms);
        let mut before = 0u64;
        let mut segments: Vec<(Segment, u64)> = (snapshot.segments.iter())
            .map(|segment| {
                let rows_before = before;
                before += segment.rows;
                (*segment, rows_before)
            })
            .collect();
        if newest_first {
            segments.reverse();
        }
        for (segment, rows_before) in segments {
            let hidden_here = snapshot.hidden.saturating_sub(rows_before);
            if hidden_here >= segment.rows || segment.latest_ms < from_ms || segment.earliest_ms >= to_ms {
                continue;
            }
            let Some(bytes) = segment::read(&self.inner.dir, segment.sequence, segment.bytes)? else { continue };
            if containing.is_some_and(|finder| finder.find(&bytes).is_none()) {
                continue;
            }
            let (mut blocks, _) = segment::blocks(&bytes);
            if newest_first {
                blocks.reverse();
            }
            for found in blocks {
                let (head, block) = (found.head, &bytes[found.bytes]);
                let past_cap = found.first_row + u64::from(head.rows) <= hidden_here;
                if past_cap || head.latest_ms < from_ms || head.earliest_ms >= to_ms {
                    continue;
                }
                if containing.is_some_and(|finder| finder.find(block).is_none()) {
                    continue;
                }
                // Numbered before decoding: a row that does not decode keeps its place.
                let mut rows: Vec<(u64, Option<Stored>)> = (found.first_row..).zip(codec::entries(block)).collect();
                if newest_first {
                    rows.reverse();
                }
                for (position, row) in rows {
                    let Some(row) = row.filter(|row| (from_ms..to_ms).contains(&row.start_ms())) else { continue };
                    if position < hidden_here {
                        continue;
                    }
                    if each(row).is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// The newest row of a request id (the answer's id or the call id).
    pub fn by_request_id(&self, request_id: &str) -> std::io::Result<Option<SpendRow>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let finder = memchr::memmem::Finder::new(request_id.as_bytes());
        let mut found = None;
        self.visit((0, u64::MAX), true, Some(&finder), |row| {
            if row.request_id == request_id || row.call_id == request_id {
                found = Some(row.into_row());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// The rows that started in `from_ms..to_ms` and pass `keep`, newest first: `skip` of them skipped,
    /// then at most `take`.
    pub fn page(
        &self,
        range: (u64, u64),
        keep: impl Fn(&SpendRow) -> bool,
        skip: usize,
        take: usize,
    ) -> std::io::Result<Page> {
        let (mut rows, mut seen, mut truncated) = (Vec::with_capacity(take.min(1024)), 0usize, false);
        self.visit(range, true, None, |row| {
            let row = row.into_row();
            if !keep(&row) {
                return ControlFlow::Continue(());
            }
            seen += 1;
            if seen <= skip {
                return ControlFlow::Continue(());
            }
            if rows.len() == take {
                truncated = true;
                return ControlFlow::Break(());
            }
            rows.push(row);
            ControlFlow::Continue(())
        })?;
        Ok(Page { rows, truncated })
    }

    /// Calls `each` with every row kept that started in `from_ms..to_ms`, oldest first.
    pub fn for_each(&self, range: (u64, u64), mut each: impl FnMut(SpendRow)) -> std::io::Result<()> {
        self.visit(range, false, None, |row| {
            each(row.into_row());
            ControlFlow::Continue(())
        })
    }

    /// Every stored block's bytes, oldest first.
    #[cfg(test)]
    pub(super) fn blocks_for_tests(&self) -> Vec<Vec<u8>> {
        let snapshot = self.snapshot();
        let mut all = Vec::new();
        for segment in snapshot.segments {
            let bytes = segment::read(&self.inner.dir, segment.sequence, segment.bytes).unwrap().unwrap();
            all.extend(segment::blocks(&bytes).0.into_iter().map(|found| bytes[found.bytes].to_vec()));
        }
        all
    }

    /// Makes what is written durable (at shutdown).
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.state().tail {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

/// A read counted in [`Inner::reads`] while it lives.
struct Read<'a>(&'a AtomicUsize);

impl<'a> Read<'a> {
    fn enter(inner: &'a Inner) -> std::io::Result<Self> {
        if inner.reads.fetch_add(1, Ordering::AcqRel) >= MAX_READS {
            inner.reads.fetch_sub(1, Ordering::AcqRel);
            let busy = format!("{MAX_READS} reads of the spend log are running or waiting; retry in a moment");
            return Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, busy));
        }
        Ok(Self(&inner.reads))
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "store/tests.rs"]
mod tests;
