//! Two answer translations one after the other, for a client and a provider with no direct translation
//! between them: a Messages API client (Claude Code) on Gemini reads Gemini's answer translated to a chat
//! completion, and that to a message.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, BytesMut};

use crate::proxy::{CutShort, EventDialect, Oversized, Reshape, Reshaper};

/// `first`'s output is `then`'s input; the client reads `then`'s, in `dialect`.
pub struct Chain {
    pub first: Reshaper,
    pub then: Reshaper,
    pub dialect: EventDialect,
}

impl Reshape for Chain {
    fn whole(&mut self, status: StatusCode, body: &[u8]) -> Option<(StatusCode, Bytes)> {
        let (status, body) = self.first.whole(status, body)?;
        self.then.whole(status, &body)
    }

    fn piece(&mut self, piece: &[u8]) -> Result<Bytes, Oversized> {
        let middle = self.first.piece(piece)?;
        if middle.is_empty() {
            return Ok(middle);
        }
        self.then.piece(&middle)
    }

    /// `first`'s last words go through `then` before `then` ends; a stream `first` finds cut short is cut
    /// short for the client too, with what `then` made of its last words.
    fn finish(&mut self) -> Result<Bytes, CutShort> {
        let (last, cut) = match self.first.finish() {
            Ok(last) => (last, false),
            Err(CutShort { before }) => (before, true),
        };
        let mut out = BytesMut::new();
        match self.then.piece(&last) {
            Ok(piece) => out.extend_from_slice(&piece),
            Err(Oversized { before }) => return Err(CutShort { before }),
        }
        if cut {
            return Err(CutShort { before: out.freeze() });
        }
        match self.then.finish() {
            Ok(rest) => {
                out.extend_from_slice(&rest);
                Ok(out.freeze())
            }
            Err(CutShort { before }) => {
                out.extend_from_slice(&before);
                Err(CutShort { before: out.freeze() })
            }
        }
    }

    fn dialect(&self) -> Option<EventDialect> {
        Some(self.dialect)
    }
}
