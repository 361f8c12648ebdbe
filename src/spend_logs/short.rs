//! A spend-log row's ids (the call id, the answer's own id) and model group, kept in place when short: a row
//! is boxed once on the hot path, and an allocation per text (and its free on the writer) cost more than
//! copying it.

use std::sync::Arc;

/// The most bytes of a [`Short`] text kept in place: a call id (a UUID, 36), an answer id (`chatcmpl-…`, 38;
/// `msg_…`) or a usual model name fits.
const INLINE: usize = 48;

/// An id's bytes, kept in place up to [`INLINE`] bytes, else boxed.
pub(super) enum Short {
    Inline(u8, [u8; INLINE]),
    Boxed(Box<[u8]>),
}

impl Short {
    /// An `id`'s bytes as the answer or a header has them, kept unchecked: the writer makes them text (any
    /// malformed bytes replaced) off the worker (a check per row, on the worker, of an id that is ASCII but
    /// for a hostile client's cost more than the row's other fields' copies).
    pub(super) fn new(id: &[u8]) -> Self {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..id.len()].copy_from_slice(id);
                Self::Inline(len, bytes)
            }
            _ => Self::Boxed(id.into()),
        }
    }

    /// `bytes` kept in place, if they fit.
    fn in_place(bytes: &[u8]) -> Option<Self> {
        (bytes.len() <= INLINE).then(|| Self::new(bytes))
    }

    /// Its bytes, as given.
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Self::Boxed(bytes) => bytes,
        }
    }
}

/// A row's model group: the name copied in place when it fits, else the request's own name shared (a copy would
/// allocate per request, and the writer free it; a share only counts).
pub(super) enum GroupName {
    Copied(Short),
    Shared(Arc<str>),
}

impl GroupName {
    /// `kept` of the request's `name` (all of it, or the start a row keeps).
    pub(super) fn of(name: &Arc<str>, kept: &str) -> Self {
        match Short::in_place(kept.as_bytes()) {
            Some(short) => Self::Copied(short),
            None if kept.len() == name.len() => Self::Shared(Arc::clone(name)),
            None => Self::Shared(Arc::from(kept)),
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Copied(short) => short.as_bytes(),
            Self::Shared(name) => name.as_bytes(),
        }
    }

    /// The bytes it holds outside the row.
    pub(super) fn held_elsewhere(&self) -> usize {
        match self {
            Self::Copied(_) => 0,
            Self::Shared(name) => name.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_any_length_are_kept_whole() {
        let uuid = "8c7f4a52-3d1e-4b7a-9f0e-2a6c1d5e9b30";
        let long = "chatcmpl-".to_owned() + &"x".repeat(200);
        for id in ["", "msg_01", uuid, &"y".repeat(INLINE), &"z".repeat(INLINE + 1), &long] {
            assert_eq!(Short::new(id.as_bytes()).as_bytes(), id.as_bytes());
        }
        assert!(matches!(Short::new(uuid.as_bytes()), Short::Inline(..)), "a UUID is kept in place");
    }

    #[test]
    fn a_model_group_is_copied_when_it_fits_and_shared_when_not() {
        let usual: Arc<str> = Arc::from("gpt-4o-mini");
        let group = GroupName::of(&usual, &usual);
        assert!(matches!(group, GroupName::Copied(_)));
        assert_eq!((group.as_bytes(), group.held_elsewhere()), (&b"gpt-4o-mini"[..], 0));
        let long: Arc<str> = Arc::from("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0");
        let group = GroupName::of(&long, &long);
        assert!(matches!(&group, GroupName::Shared(name) if Arc::ptr_eq(name, &long)), "shared, not copied");
        assert_eq!((group.as_bytes(), group.held_elsewhere()), (long.as_bytes(), long.len()));
        let cut = GroupName::of(&long, &long[..INLINE + 1]);
        assert_eq!(cut.as_bytes(), &long.as_bytes()[..INLINE + 1], "the start a row keeps");
    }
}
