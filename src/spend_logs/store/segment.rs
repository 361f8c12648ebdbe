//! The spend log's files: segments of blocks, each block a record of a fixed header (its length, its rows,
//! the span of their starts and a CRC-32) and the block's bytes (see `codec`). A segment is only ever
//! appended to, and only by the process that started it; a damaged tail (a write cut short by a crash) is
//! found by its length or checksum and never read.

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A block's record header: length, rows (u32 each), earliest and latest start in ms (u64 each), CRC-32 of
/// the header's first 24 bytes and the block (u32), all little-endian.
pub(super) const HEADER: usize = 28;

/// The extension of a segment file; its stem is its sequence number, zero-padded so names sort in order.
const EXTENSION: &str = "seg";

/// What a record's header says of its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockHead {
    pub(super) rows: u32,
    pub(super) earliest_ms: u64,
    pub(super) latest_ms: u64,
}

/// A block found in a segment's bytes: what its header says, where its bytes are, and the position (in the
/// segment, oldest first) of its first row.
pub(super) struct Found {
    pub(super) head: BlockHead,
    pub(super) bytes: Range<usize>,
    pub(super) first_row: u64,
}

/// The path of segment `sequence` in `dir`.
pub(super) fn path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.{EXTENSION}"))
}

/// The sequence numbers of the segments in `dir`, oldest first.
pub(super) fn list(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut sequences = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // Anything else an admin left there (a directory named like a segment, notes) is not the log's.
        if entry.file_type()?.is_file() && path.extension().is_some_and(|ext| ext == EXTENSION) {
            if let Some(sequence) = path.file_stem().and_then(|stem| stem.to_str()).and_then(|s| s.parse().ok()) {
                sequences.push(sequence);
            }
        }
    }
    sequences.sort_unstable();
    Ok(sequences)
}

/// The record of `block`, header first, as one buffer (one write: a reader or a crash never sees half a header).
pub(super) fn record(block: &[u8], head: BlockHead) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + block.len());
    let length = u32::try_from(block.len()).unwrap_or(u32::MAX);
    record.extend_from_slice(&length.to_le_bytes());
    record.extend_from_slice(&head.rows.to_le_bytes());
    record.extend_from_slice(&head.earliest_ms.to_le_bytes());
    record.extend_from_slice(&head.latest_ms.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record);
    crc.update(block);
    record.extend_from_slice(&crc.finalize().to_le_bytes());
    record.extend_from_slice(block);
    record
}

/// Appends `record` to `file`.
pub(super) fn append(file: &mut File, record: &[u8]) -> std::io::Result<()> {
    file.write_all(record)
}

/// The first `length` bytes of segment `sequence` (fewer if it is shorter; `None`: it is gone, pruned
/// since it was listed).
pub(super) fn read(dir: &Path, sequence: u64, length: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = match File::open(path(dir, sequence)) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let length = length.min(file.metadata()?.len());
    let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
    file.take(length).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// What the block headers of segment `sequence` say, oldest first, and where the last block they frame
/// ends: read header by header, the blocks skipped unread (a reader checks each block's checksum when it
/// reads it). A header that frames bytes the file does not have ends it (a damaged or half-written tail).
pub(super) fn heads(dir: &Path, sequence: u64) -> std::io::Result<(Vec<BlockHead>, u64)> {
    let file = File::open(path(dir, sequence))?;
    let length = file.metadata()?.len();
    let mut file = std::io::BufReader::new(file);
    let (mut heads, mut at, mut header) = (Vec::new(), 0u64, [0u8; HEADER]);
    while at + HEADER as u64 <= length {
        file.read_exact(&mut header)?;
        let (head, block_length) = parse_header(&header);
        let end = at + HEADER as u64 + block_length as u64;
        // A block has at least its format's marker: a zero length is zeros (a file extended, never written).
        if block_length == 0 || end > length {
            break;
        }
        file.seek_relative(i64::try_from(block_length).unwrap_or(i64::MAX))?;
        heads.push(head);
        at = end;
    }
    Ok((heads, at))
}

/// A header's block head and block length.
fn parse_header(header: &[u8]) -> (BlockHead, usize) {
    let number = |range: Range<usize>| header[range].iter().rev().fold(0u64, |n, &byte| n << 8 | u64::from(byte));
    let head = BlockHead {
        rows: u32::try_from(number(4..8)).unwrap_or(u32::MAX),
        earliest_ms: number(8..16),
        latest_ms: number(16..24),
    };
    (head, usize::try_from(number(0..4)).unwrap_or(usize::MAX))
}

/// The whole blocks in `segment`, oldest first, and where the last whole one ends (past it: a damaged or
/// half-written tail).
pub(super) fn blocks(segment: &[u8]) -> (Vec<Found>, usize) {
    let (mut found, mut at, mut first_row) = (Vec::new(), 0, 0u64);
    while let Some(header) = segment.get(at..at + HEADER) {
        let (head, length) = parse_header(header);
        let start = at + HEADER;
        let Some(block) = start.checked_add(length).and_then(|end| segment.get(start..end)) else { break };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..24]);
        crc.update(block);
        if crc.finalize().to_le_bytes() != header[24..28] {
            break;
        }
        found.push(Found { head, bytes: start..start + length, first_row });
        first_row += u64::from(head.rows);
        at = start + length;
    }
    (found, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_a_damaged_tail_is_found() {
        let head = |rows, earliest_ms| BlockHead { rows, earliest_ms, latest_ms: earliest_ms + 5 };
        let mut segment = record(b"\x02first", head(2, 10));
        segment.extend(record(b"\x02second", head(3, 20)));
        let whole = segment.len();
        let (found, end) = blocks(&segment);
        assert_eq!(end, whole);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (&segment[found[1].bytes.clone()], found[1].first_row, found[1].head),
            (&b"\x02second"[..], 2, head(3, 20))
        );
        // Half a record (a write cut short), then a flipped byte: the whole blocks before it are kept.
        segment.extend_from_slice(&record(b"\x02third", head(1, 30))[..HEADER + 2]);
        assert_eq!(blocks(&segment).1, whole);
        segment.truncate(whole);
        segment.extend(record(b"\x02third", head(1, 30)));
        let last = segment.len() - 1;
        segment[last] ^= 1;
        assert_eq!(blocks(&segment).1, whole);
        // Zeros (a file extended but never written) are no block either.
        assert_eq!(blocks(&[0; 64]).1, 0);
    }
}
