//! What one connection, and one peer address, may hold: the whole-request deadline of the HTTP
//! server and the bound on concurrent connections per peer address that it shares with the Postfix
//! listeners.
//!
//! actix-web bounds less than it seems (actix-http 3.19, read in its `h1/dispatcher.rs`):
//! `client_request_timeout` arms a timer for the head of the *first* request of a connection only
//! (it is cleared when that head is parsed and never armed again); the keep-alive timer is
//! cleared by the first byte of the next request; and nothing times a request body. So a client
//! may trickle a body, or the head of its second request, forever. Nor does actix-web limit
//! connections per peer, and `HttpServer::on_connect` cannot refuse one.
//!
//! The rule here: a request must arrive whole — head and body — within `ALLOT_REQUEST_TIMEOUT` of
//! the moment its connection became ready for it (accepted, or the previous answer sent). One
//! deadline per request, kept in the connection's state, enforced in two places:
//!
//! - while the head is coming, no request is in the app: a watchdog task per connection shuts the
//!   socket's read side at the deadline (through a second descriptor of the socket taken in
//!   `on_connect`), so actix reads end-of-stream and closes the connection;
//! - once the head is in, [`request_deadline`] wraps the body stream so that waiting for the body
//!   past the deadline fails, and answers `408 request-timeout` instead of whatever the handler
//!   made of the failure. The connection then closes. Every body goes through the one stream,
//!   whatever reads it (the JSON extractor, the CSV import), and a handler that never reads its
//!   body is never interrupted, so nothing can be half-done when the 408 leaves.
//!
//! Measuring from when the connection became ready rather than from the request's first byte
//! (which actix does not expose) makes the deadline stricter by the idle time before the request,
//! at most the keep-alive timeout (5 s): a bound, never a loosening.
//!
//! [`PeerLimit`] counts open connections per IP address. Over the bound, an HTTP connection is
//! closed at once (its read side shut in `on_connect`, so actix reads end-of-stream); a request
//! that was already in the socket's buffer is answered 503 and the connection closed. Closing,
//! rather than answering every refused connection, costs the server nothing per refusal: to
//! answer it would first have to read a request head, holding the very connection that is over
//! the bound for up to the request timeout. Clients treat a closed connection as a retryable
//! failure.
//!
//! Over HTTPS the same holds once the TLS handshake is done (actix bounds the handshake itself, 3
//! s); the watchdog shuts the TCP socket under the TLS stream. Over HTTP/2 a connection carries
//! concurrent requests whose heads arrive whole in one frame: each request's body gets the
//! deadline from its own arrival, and the watchdog closes a connection idle that long.
//!
//! Beside this file: [`client`] (who the client is, behind trusted proxies), [`tls`] (HTTPS and
//! its certificate reloads) and [`cors`] (browsers).

pub(crate) mod client;
pub(crate) mod cors;
pub(crate) mod tls;

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Shutdown};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_core::Stream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Open connections per peer address, bounded.
#[derive(Debug)]
pub(crate) struct PeerLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `peer`, or `None` when it holds `max` already. The
    /// slot is given back when dropped.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        // An IPv4 client on a dual-stack socket is one address, however it is written.
        let peer = peer.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            limit: Arc::clone(self),
            peer,
        })
    }
}

/// One admitted connection's place in its [`PeerLimit`].
#[derive(Debug)]
pub(crate) struct PeerSlot {
    limit: Arc<PeerLimit>,
    peer: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// One HTTP connection's state, kept in actix's connection data for as long as the connection
/// lives.
struct Connection {
    _slot: PeerSlot,
    /// A second descriptor of the connection's socket: the watchdog's way to end it.
    socket: std::net::TcpStream,
    timeout: Duration,
    /// When the connection became ready for its next request.
    ready_since: Cell<Instant>,
    /// Requests in the app (actix serves one at a time per connection; counted all the same).
    busy: Cell<u32>,
    /// Wakes the watchdog when the connection ends. Requests do not wake it (that would be a task
    /// wake and a new timer on every request's path): it finds out at its deadline whether the
    /// connection moved on meanwhile, and sleeps again if so.
    wake: Rc<Notify>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// What `on_connect` leaves in an admitted connection's data.
#[derive(Clone)]
struct Admitted(Rc<Connection>);

/// What `on_connect` leaves in a refused connection's data.
#[derive(Clone, Copy)]
struct Refused;

/// The `HttpServer::on_connect` callback: admits the connection under `limit` and starts its
/// watchdog, or shuts it.
pub(crate) fn on_connect(
    limit: Arc<PeerLimit>,
    timeout: Duration,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |io, data| {
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        let stream = match (
            io.downcast_ref::<actix_web::rt::net::TcpStream>(),
            io.downcast_ref::<Tls>(),
        ) {
            (Some(plain), _) => plain,
            (None, Some(tls)) => tls.get_ref().0,
            (None, None) => return,
        };
        let slot = stream.peer_addr().ok().and_then(|peer| {
            let slot = limit.admit(peer.ip());
            if slot.is_none() {
                tracing::debug!(%peer, "connection refused: too many from this address");
            }
            slot
        });
        let socket = stream
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpStream::from);
        match (slot, socket) {
            (Some(slot), Ok(socket)) => {
                let connection = Rc::new(Connection {
                    _slot: slot,
                    socket,
                    timeout,
                    ready_since: Cell::new(Instant::now()),
                    busy: Cell::new(0),
                    wake: Rc::new(Notify::new()),
                });
                actix_web::rt::spawn(watch(Rc::downgrade(&connection)));
                data.insert(Admitted(connection));
            }
            (None, Ok(socket)) => {
                let _ = socket.shutdown(Shutdown::Read);
                data.insert(Refused);
            }
            (_, Err(err)) => {
                // Out of descriptors: without a second one the deadline could not be kept.
                tracing::warn!(error = %err, "connection refused: cannot watch it");
                data.insert(Refused);
            }
        }
    }
}

/// Ends the connection when its next request has not reached the app by the deadline.
async fn watch(connection: Weak<Connection>) {
    loop {
        let Some(conn) = connection.upgrade() else {
            return;
        };
        let now = Instant::now();
        // A request in the app is its own deadline's keeper (the body's); look again later.
        let deadline = if conn.busy.get() == 0 {
            conn.ready_since.get() + conn.timeout
        } else {
            now + conn.timeout
        };
        if deadline <= now {
            tracing::debug!("request not in by its deadline: closing the connection");
            // actix reads end-of-stream and closes the connection its own way.
            let _ = conn.socket.shutdown(Shutdown::Read);
            return;
        }
        // Never hold the connection while waiting: its end is what wakes this task.
        let wake = Rc::clone(&conn.wake);
        drop(conn);
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = wake.notified() => {}
        }
    }
}

/// A request in the app: the watchdog leaves its connection alone until it leaves.
struct InApp {
    connection: Rc<Connection>,
    /// The body did not arrive in time: the connection is past its deadline and closes now.
    expired: Rc<Cell<bool>>,
}

impl Drop for InApp {
    fn drop(&mut self) {
        let conn = &self.connection;
        conn.busy.set(conn.busy.get().saturating_sub(1));
        if !self.expired.get() {
            conn.ready_since.set(Instant::now());
        }
    }
}

/// The middleware: times the body against the request's deadline and answers 408 when it does
/// not arrive; answers 503 on a connection refused for its peer's bound.
pub(crate) async fn request_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, Error> {
    let Some(Admitted(connection)) = req.conn_data::<Admitted>().cloned() else {
        if req.conn_data::<Refused>().is_some() {
            let response = ApiError::Unavailable(
                "Too many connections from this address; retry later.".to_owned(),
            )
            .error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
        let response = next.call(req).await?;
        return Ok(response.map_body(|_, body| EitherBody::left(Held { body, in_app: None })));
    };
    // HTTP/2 multiplexes: the connection may have been busy with other requests since it was
    // last idle, and this one's head came whole in one frame just now.
    let deadline = if req.version() == actix_web::http::Version::HTTP_2 {
        Instant::now() + connection.timeout
    } else {
        connection.ready_since.get() + connection.timeout
    };
    connection.busy.set(connection.busy.get() + 1);
    let in_app = InApp {
        connection,
        expired: Rc::new(Cell::new(false)),
    };
    let payload = req.take_payload();
    if !matches!(payload, Payload::None) {
        req.set_payload(Payload::Stream {
            payload: Box::pin(Timed {
                inner: payload,
                deadline,
                waited: false,
                sleep: None,
                expired: Rc::clone(&in_app.expired),
            }),
        });
    }
    let response = next.call(req).await?;
    if !in_app.expired.get() {
        // The request stays in the app until its answer is sent: a streamed answer (an audit
        // export) may take longer than the deadline, and the next request's time starts after it.
        let in_app = Some(in_app);
        return Ok(response.map_body(|_, body| EitherBody::left(Held { body, in_app })));
    }
    let detail = format!(
        "The request did not arrive whole within {} seconds; nothing was changed.",
        in_app.connection.timeout.as_secs()
    );
    let (request, _) = response.into_parts();
    let mut answer = ApiError::RequestTimeout(detail).error_response();
    answer
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(ServiceResponse::new(request, answer).map_into_right_body())
}

pin_project_lite::pin_project! {
    /// An answer's body, holding its request in the app ([`InApp`]) until the body is sent whole
    /// (or the connection drops it).
    struct Held<B> {
        #[pin]
        body: B,
        in_app: Option<InApp>,
    }
}

impl<B: MessageBody> MessageBody for Held<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_next(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // Sent: the connection is ready for its next request from now.
            this.in_app.take();
        }
        polled
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // A body whole in memory is written at once: the request leaves the app with it.
        let Self { body, in_app } = self;
        body.try_into_bytes().map_err(|body| Self { body, in_app })
    }
}

/// A request body that fails once waiting for it runs past the deadline.
///
/// The first read of a body finds it missing even when it came in the same packet as the head:
/// actix calls the handler before it feeds the body it has already read, right after, in the same
/// turn. So the first wait arms no timer (it asks to be polled again, which the body's arrival
/// does anyway); only a second wait does. A small body (a check) then costs no timer at all.
struct Timed {
    inner: Payload,
    deadline: Instant,
    /// Whether the body has been waited for once, without a timer.
    waited: bool,
    /// Made the second time the body is not there yet.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Rc<Cell<bool>>,
}

impl Stream for Timed {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if !std::mem::replace(&mut this.waited, true) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.expired.set(true);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_bound_and_its_slots_back() {
        let limit = PeerLimit::new(2);
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        let first = limit.admit(one).unwrap();
        let _second = limit.admit(one).unwrap();
        assert!(limit.admit(one).is_none());
        assert!(
            limit.admit(two).is_some(),
            "another address is counted apart"
        );
        drop(first);
        assert!(limit.admit(one).is_some());
    }

    #[test]
    fn an_ipv4_peer_is_one_address_however_written() {
        let limit = PeerLimit::new(1);
        let _v4 = limit.admit([192, 0, 2, 7].into()).unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(limit.admit(mapped).is_none());
    }
}
