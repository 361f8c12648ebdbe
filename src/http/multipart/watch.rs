//! Watches the rest of a streamed form for a second `model` field: the gateway routes on the first, and an
//! upstream that reads the last one would otherwise serve a model the key was never checked for. Only the
//! part delimiters are looked at (`\r\n--<boundary>`, which the form's data cannot contain) and the headers
//! after each, so the file passes through with one search per piece and no copy.

use super::{field_name, PartName};

/// The most bytes of one part's headers looked at; a longer head is refused as if it named `model` (it
/// could hide one past what is read).
const MAX_PART_HEADERS: usize = 8 * 1024;

/// Where a form's parts start, as its pieces go by.
pub(super) struct PartWatch {
    /// `\r\n--<boundary>`: what opens every part after the first.
    closing: Vec<u8>,
    /// The end of the last piece that could be the start of a delimiter split across two pieces.
    tail: Vec<u8>,
    /// The headers of the part being opened, while they are still arriving.
    headers: Option<Vec<u8>>,
}

impl PartWatch {
    /// `delimiter` is `--<boundary>`.
    pub(super) fn new(delimiter: &[u8]) -> Self {
        Self { closing: [b"\r\n", delimiter].concat(), tail: Vec::new(), headers: None }
    }

    /// Looks through the next piece of the form; true when a part named `model` starts in it.
    pub(super) fn names_model(&mut self, piece: &[u8]) -> bool {
        let mut at = 0;
        while at < piece.len() {
            if let Some(headers) = &mut self.headers {
                let before = headers.len();
                let take = (piece.len() - at).min(MAX_PART_HEADERS - before);
                headers.extend_from_slice(&piece[at..at + take]);
                match memchr::memmem::find(headers, b"\r\n\r\n") {
                    // A part an upstream may read as `model` is refused as one.
                    Some(end) if matches!(field_name(&headers[..end]), PartName::Ambiguous) => return true,
                    Some(end) if field_name(&headers[..end]).is_model() => return true,
                    Some(end) => {
                        at += end + 4 - before;
                        self.headers = None;
                    }
                    None if headers.len() >= MAX_PART_HEADERS => return true,
                    None => return false,
                }
                continue;
            }
            let rest = &piece[at..];
            // A delimiter split across the last piece and this one.
            if !self.tail.is_empty() {
                let need = self.closing.len() - 1;
                let mut window = std::mem::take(&mut self.tail);
                let seen = window.len();
                window.extend_from_slice(&rest[..rest.len().min(need)]);
                if let Some(found) = memchr::memmem::find(&window, &self.closing).filter(|&found| found < seen) {
                    at += found + self.closing.len() - seen;
                    self.headers = Some(Vec::new());
                    continue;
                }
                if rest.len() < need {
                    self.tail = window[window.len().saturating_sub(need)..].to_vec();
                    return false;
                }
            }
            match memchr::memmem::find(rest, &self.closing) {
                Some(found) => {
                    at += found + self.closing.len();
                    self.headers = Some(Vec::new());
                }
                None => {
                    self.tail = rest[rest.len().saturating_sub(self.closing.len() - 1)..].to_vec();
                    return false;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"AUDIO\r\n--XyZ\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"model\"\r\n\r\npaid-model\r\n--XyZ--\r\n";

    #[test]
    fn a_second_model_field_is_seen_however_the_form_is_cut_into_pieces() {
        for size in [1, 2, 3, 5, 7, 13, FORM.len()] {
            let mut watch = PartWatch::new(b"--XyZ");
            assert!(FORM.chunks(size).any(|piece| watch.names_model(piece)), "pieces of {size}");
        }
    }

    #[test]
    fn a_later_part_named_twice_is_taken_for_a_second_model() {
        let form = b"AUDIO\r\n--XyZ\r\nContent-Disposition: form-data; name=\"language\"; name=\"model\"\r\n\r\npaid\r\n--XyZ--";
        let mut watch = PartWatch::new(b"--XyZ");
        assert!(watch.names_model(form));
    }

    #[test]
    fn other_fields_and_file_bytes_pass() {
        let form = b"AUDIO\r\n--XyZ\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nmodel\r\n--XyZ--\r\n";
        for size in [1, 4, form.len()] {
            let mut watch = PartWatch::new(b"--XyZ");
            assert!(!form.chunks(size).any(|piece| watch.names_model(piece)), "pieces of {size}");
        }
    }
}
