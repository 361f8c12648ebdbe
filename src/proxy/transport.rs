//! The TCP connections under awc, made to report when the upstream closed them.
//!
//! awc ends a chunked body cleanly when the upstream closes the connection between two chunks, so a stream
//! cut off mid-answer would reach the client as a complete one (a careful proxy passes the abort on). Each
//! upstream connection is wrapped to note, in a per-thread flag, when a read hits end-of-file or fails.
//! [`noting_eof`] clears the flag, runs one poll and reads it back: a poll of a response body reads only that
//! response's connection, synchronously on this thread, so the flag is that connection's.

use std::cell::Cell;
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
}

/// Runs `poll` and tells whether a connection read hit end-of-file (or failed) while it ran.
pub fn noting_eof<T>(poll: impl FnOnce() -> T) -> (T, bool) {
    SAW_EOF.with(|flag| flag.set(false));
    let outcome = poll();
    (outcome, SAW_EOF.with(|flag| flag.replace(false)))
}

/// awc's TCP connector (DNS, connect), with every connection wrapped in [`EofAware`]. TLS, when the upstream
/// is https, is layered on top by awc, so end-of-file is seen at the TCP level for both.
pub fn connector() -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, EofAware>, Error = ConnectError> + Clone
{
    Connector::new(Resolver::default()).service().map(|connection: Connection<Uri, TcpStream>| {
        let (stream, connection) = connection.replace_io(());
        connection.replace_io(EofAware(stream)).1
    })
}

/// A TCP stream that notes end-of-file and read errors in the per-thread flag.
#[derive(Debug)]
pub struct EofAware(TcpStream);

impl AsyncRead for EofAware {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.get_mut().0).poll_read(cx, buf);
        let ended = match &polled {
            Poll::Ready(Ok(())) => buf.filled().len() == before && buf.remaining() > 0,
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        if ended {
            SAW_EOF.with(|flag| flag.set(true));
        }
        polled
    }
}

impl AsyncWrite for EofAware {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl ActixStream for EofAware {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.0, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.0, cx)
    }
}
