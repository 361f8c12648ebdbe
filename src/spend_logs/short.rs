//! A spend-log row's ids (the call id, the answer's own id), kept in place when short: a row is boxed
//! once on the hot path, and an allocation per id (and its free on the writer) cost more than copying it.

/// The most bytes of a [`Short`] id kept in place: a call id (a UUID, 36) or an answer id
/// (`chatcmpl-…`, 38; `msg_…`) fits.
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

    /// Its bytes, as given.
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Self::Boxed(bytes) => bytes,
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
}
