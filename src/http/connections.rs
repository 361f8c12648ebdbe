//! Slow clients: every request on a connection must arrive in time, not only the first.
//!
//! actix-http times out the first request's head (`client_request_timeout`) and closes keep-alive connections
//! that stay silent, but once a byte of a later request has arrived neither timer runs: a client sending its
//! second head a byte a second would hold a connection forever. So each connection gets a watch: a
//! middleware notes when a request's head has arrived and when its response has been sent (or dropped), and a
//! watcher task shuts the socket down (through a duplicate of its descriptor) when, with nothing being
//! answered, no new request head has arrived within the keep-alive time plus the header timeout.

use std::any::Any;
use std::cell::Cell;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::Extensions;
use actix_web::web::Bytes;
use futures_util::future::{select, Either};
use tokio::sync::oneshot;

/// How long a keep-alive connection may stay silent between requests (actix-web's default, made explicit).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What the watcher knows of one connection.
pub struct ConnectionWatch {
    /// When the connection opened or its last response ended (a request being answered is never stuck, so
    /// its head's arrival is not stamped).
    last_activity: Cell<Instant>,
    /// Requests on this connection whose response has not been sent yet.
    responding: Cell<u32>,
    /// Tells the watcher the connection is gone, so it lets go of its descriptor at once: until it does, the
    /// socket stays open (no FIN for the client, a file descriptor held).
    gone: Cell<Option<oneshot::Sender<()>>>,
}

impl Drop for ConnectionWatch {
    fn drop(&mut self) {
        if let Some(gone) = self.gone.take() {
            let _ = gone.send(());
        }
    }
}

impl ConnectionWatch {
    /// Counts a request whose head has arrived as being answered until the returned guard is dropped.
    pub fn begin(self: &Rc<Self>) -> Answering {
        // No clock read: a connection with a request being answered is never stuck, and the answer's end
        // (the guard's drop) sets the time the idle limit counts from.
        self.responding.set(self.responding.get() + 1);
        Answering(Rc::clone(self))
    }

    fn is_stuck(&self, limit: Duration) -> bool {
        self.responding.get() == 0 && self.last_activity.get().elapsed() > limit
    }
}

/// A request being answered; dropped with its response body (sent, failed or abandoned).
pub struct Answering(Rc<ConnectionWatch>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.responding.set(self.0.responding.get().saturating_sub(1));
        self.0.last_activity.set(Instant::now());
    }
}

/// `HttpServer::on_connect`: gives a TCP connection its watch and starts its watcher. A connection with no
/// request head for `header_timeout` past the keep-alive time, while nothing is being answered, is shut down.
pub fn watch(connection: &dyn Any, extensions: &mut Extensions, header_timeout: Duration) {
    let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else { return };
    let Ok(descriptor) = stream.as_fd().try_clone_to_owned() else { return };
    let (gone_tx, gone) = oneshot::channel();
    let watch = Rc::new(ConnectionWatch {
        last_activity: Cell::new(Instant::now()),
        responding: Cell::new(0),
        gone: Cell::new(Some(gone_tx)),
    });
    let limit = KEEP_ALIVE + header_timeout;
    actix_web::rt::spawn(shut_down_when_stuck(Rc::downgrade(&watch), descriptor, limit, gone));
    extensions.insert(watch);
}

/// Ends as soon as the connection is gone (its watch dropped), closing the duplicate descriptor, or once it
/// has shut a stuck connection down.
async fn shut_down_when_stuck(
    watch: Weak<ConnectionWatch>,
    descriptor: OwnedFd,
    limit: Duration,
    mut gone: oneshot::Receiver<()>,
) {
    let tick = (limit / 4).max(Duration::from_millis(100));
    loop {
        let sleep = std::pin::pin!(actix_web::rt::time::sleep(tick));
        if let Either::Right(_) = select(sleep, &mut gone).await {
            return;
        }
        let Some(watch) = watch.upgrade() else { return };
        if watch.is_stuck(limit) {
            log::debug!("closing a connection whose next request did not arrive within {}s", limit.as_secs_f64());
            let _ = std::net::TcpStream::from(descriptor).shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// A response body that holds `guard` (a request counted as being answered, a parallel-request slot) until
/// it is dropped: sent, failed or abandoned.
pub struct Holding<B, G> {
    pub body: B,
    // Never read: it is held only so that dropping the body drops it.
    #[allow(dead_code)]
    pub guard: G,
}

impl<B: MessageBody + Unpin, G: Unpin> MessageBody for Holding<B, G> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
