//! The TCP connections under awc, made careful where awc is not.
//!
//! - End-of-file: awc ends a chunked body cleanly when the upstream closes the connection between two chunks,
//!   so a stream cut off mid-answer would reach the client as a complete one (a careful proxy passes the abort
//!   on). Each connection notes, in a per-thread flag, when a read hits end-of-file or fails. [`noting_eof`]
//!   clears the flag, runs one poll and reads it back: a poll of a response body reads only that response's
//!   connection, synchronously on this thread, so the flag is that connection's.
//! - Interim responses: awc takes a `1xx` (e.g. `103 Early Hints`) for the answer and leaves the real one
//!   unread on the pooled connection, where the next request would read it. On plain-http connections the
//!   interim heads at the start of each answer are dropped here, before awc sees them. (Under TLS the bytes
//!   here are encrypted; there the router fails an attempt that gets a `1xx`.)
//! - Acknowledgements: a reused connection acknowledges what it reads late (Linux delays an ACK up to 40 ms
//!   once a connection looks like request/response), and an upstream with Nagle's algorithm on (the socket
//!   default) holds each small write of a stream until the one before is acknowledged: every stream would
//!   stall for 40 ms. Until a stream's first piece has come ([`head`], [`noting_eof`]), each read that brings
//!   bytes acknowledges them at once (`TCP_QUICKACK`). That also takes the connection out of Linux's
//!   request/response ("pingpong") mode, which only sending brings back: while the rest of the stream is
//!   received, every read acknowledges on its own, with no system call per event. A whole answer read in one
//!   piece costs nothing more.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_service::{Service, ServiceExt};
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Connector, Resolver};
use actix_web::rt::net::{ActixStream, Ready, TcpStream};
use awc::http::Uri;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

thread_local! {
    static SAW_EOF: Cell<bool> = const { Cell::new(false) };
    static ACK_AT_ONCE: Cell<bool> = const { Cell::new(false) };
}

/// The most bytes held while looking for the end of an interim head; a longer one is passed on as it is.
const MAX_INTERIM_HEAD: usize = 64 * 1024;

/// Runs `poll` and tells whether a connection read hit end-of-file (or failed) while it ran; with
/// `ack_at_once` (a stream's body before its first piece), every read that brings bytes is acknowledged at once.
pub fn noting_eof<T>(ack_at_once: bool, poll: impl FnOnce() -> T) -> (T, bool) {
    SAW_EOF.with(|flag| flag.set(false));
    let outcome = acking(ack_at_once, poll);
    (outcome, SAW_EOF.with(|flag| flag.replace(false)))
}

/// Awaits the head of an answer; with `ack_at_once` (a stream, whose head comes with its first event), every
/// read that brings bytes is acknowledged at once. As with [`noting_eof`], the reads a poll makes are those
/// of its own connection, on this thread.
pub async fn head<F: Future + Unpin>(mut sending: F, ack_at_once: bool) -> F::Output {
    std::future::poll_fn(|cx| acking(ack_at_once, || Pin::new(&mut sending).poll(cx))).await
}

fn acking<T>(ack_at_once: bool, poll: impl FnOnce() -> T) -> T {
    ACK_AT_ONCE.with(|flag| flag.set(ack_at_once));
    let outcome = poll();
    ACK_AT_ONCE.with(|flag| flag.set(false));
    outcome
}

/// awc's TCP connector (DNS, connect), with every connection wrapped in [`Careful`]. TLS, when the upstream
/// is https, is layered on top by awc, so end-of-file is seen at the TCP level for both.
pub fn connector() -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, Careful>, Error = ConnectError> + Clone
{
    Connector::new(Resolver::default()).service().map(|connection: Connection<Uri, TcpStream>| {
        let plain = connection.request().scheme_str() != Some("https");
        let (stream, connection) = connection.replace_io(());
        connection.replace_io(Careful { stream, interim: plain.then(InterimSkip::default) }).1
    })
}

/// An upstream TCP connection that notes end-of-file and read errors in the per-thread flag and, on plain
/// http, drops interim responses.
#[derive(Debug)]
pub struct Careful {
    stream: TcpStream,
    interim: Option<InterimSkip>,
}

/// Where a plain-http connection is in an answer, for dropping the `1xx` heads that may open it.
#[derive(Debug, Default)]
struct InterimSkip {
    /// At the start of an answer: bytes are held until it is clear whether a `1xx` head opens it.
    at_start: bool,
    held: Vec<u8>,
}

impl InterimSkip {
    /// Drops complete interim heads from the front of `held`; true once what is held can be handed over (the
    /// answer's real head starts it, or it cannot be an interim head), false while more bytes are needed.
    fn settle(&mut self) -> bool {
        loop {
            let held = &self.held;
            let prefix = &held[..held.len().min(10)];
            if held.len() < 12 {
                // "HTTP/1.1 103" is twelve bytes; what already differs from that start is no interim head.
                return !(b"HTTP/1.1 1".starts_with(prefix) || b"HTTP/1.0 1".starts_with(prefix));
            }
            let interim = (held.starts_with(b"HTTP/1.1 1") || held.starts_with(b"HTTP/1.0 1"))
                && held[10..12].iter().all(u8::is_ascii_digit)
                && &held[9..12] != b"101";
            if !interim || held.len() > MAX_INTERIM_HEAD {
                return true;
            }
            match held.windows(4).position(|window| window == b"\r\n\r\n") {
                Some(end) => drop(self.held.drain(..end + 4)),
                None => return false,
            }
        }
    }

    /// Hands over as much of what is held as `buf` takes.
    fn release(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.held.len().min(buf.remaining());
        buf.put_slice(&self.held[..n]);
        self.held.drain(..n);
        self.at_start = !self.held.is_empty();
    }
}

impl Careful {
    /// A read at the start of an answer: hold bytes until any interim heads are dropped, then hand over.
    fn poll_read_answer_start(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Some(skip) = self.interim.as_mut() else { return Pin::new(&mut self.stream).poll_read(cx, buf) };
        if skip.held.is_empty() {
            // The usual case, without copies: read straight into `buf`; an answer that does not open with
            // (the start of) an interim head is handed over as it is.
            let before = buf.filled().len();
            let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
            if !matches!(polled, Poll::Ready(Ok(()))) || buf.filled().len() == before {
                return polled;
            }
            skip.held.extend_from_slice(&buf.filled()[before..]);
            if skip.settle() && skip.held.len() == buf.filled().len() - before {
                skip.held.clear();
                skip.at_start = false;
                return Poll::Ready(Ok(()));
            }
            buf.set_filled(before);
        }
        loop {
            if !skip.held.is_empty() && skip.settle() {
                skip.release(buf);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
                // End of file: hand over whatever is held; awc reports the broken answer.
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    skip.release(buf);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => skip.held.extend_from_slice(read.filled()),
                other => return other,
            }
        }
    }

    /// Sends the acknowledgement of what was read now, not after the delayed-ACK timer. Best effort: a socket
    /// that refuses the option acknowledges as it would have anyway.
    fn acknowledge_at_once(&self) {
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&self.stream).set_tcp_quickack(true);
    }

    /// awc writes a request, then reads its whole answer (it never pipelines): what is read next starts one.
    fn request_written(&mut self) {
        if let Some(skip) = self.interim.as_mut() {
            skip.at_start = true;
        }
    }
}

impl AsyncRead for Careful {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match this.interim.as_ref().is_some_and(|skip| skip.at_start) {
            true => this.poll_read_answer_start(cx, buf),
            false => Pin::new(&mut this.stream).poll_read(cx, buf),
        };
        let ended = match &polled {
            Poll::Ready(Ok(())) => buf.filled().len() == before && buf.remaining() > 0,
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        if ended {
            SAW_EOF.with(|flag| flag.set(true));
        } else if matches!(polled, Poll::Ready(Ok(()))) && ACK_AT_ONCE.with(Cell::get) {
            this.acknowledge_at_once();
        }
        polled
    }
}

impl AsyncWrite for Careful {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.request_written();
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.request_written();
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl ActixStream for Careful {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        match self.interim.as_ref().is_some_and(|skip| !skip.held.is_empty()) {
            true => Poll::Ready(Ok(Ready::READABLE)),
            false => ActixStream::poll_read_ready(&self.stream, cx),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.stream, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(bytes: &[u8]) -> (bool, Vec<u8>) {
        let mut skip = InterimSkip { at_start: true, held: bytes.to_vec() };
        let done = skip.settle();
        (done, skip.held)
    }

    #[test]
    fn interim_heads_are_dropped_and_the_answer_kept() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let mut with_hints = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n".to_vec();
        with_hints.extend_from_slice(answer);
        assert_eq!(settled(&with_hints), (true, answer.to_vec()));
        assert_eq!(settled(answer), (true, answer.to_vec()));
    }

    #[test]
    fn partial_heads_wait_for_more_and_101_is_an_answer() {
        assert!(!settled(b"HTTP/1.1 10").0, "could still be a 103");
        assert!(!settled(b"HTTP/1.1 103 Early Hints\r\n").0, "its end has not arrived");
        assert!(settled(b"HTTP/1.1 2").0, "no 1xx starts like this");
        assert!(settled(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").0);
        assert!(settled(b"garbage").0, "not HTTP: awc reports it");
    }
}
