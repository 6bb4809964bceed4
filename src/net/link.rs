//! A [`Link`] is an open, authenticated connection with a reader task and a writer task.
//!
//! Requests get ids; their responses are matched back by id, so any number can be in flight and a
//! slow answer blocks nothing else. Each request has a deadline. When the connection breaks, every
//! request in flight fails at once (callers never wait for a deadline on a connection known dead),
//! and the owner hears about it through a [`LinkEvent::Closed`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Conn;
use crate::error::{Error, Result};
use bytes::Bytes;

use crate::protocol::{EncodedBody, Message, Outbound, Request, Response, Traffic};

/// Frames queued for sending before a link counts as stuck and refuses more.
const SEND_QUEUE: usize = 8192;

/// Control frames (membership packets, leave) queued apart from the rest: they are written before any
/// queued bulk frame, so a link busy with models or large batches still shows it is alive.
const CONTROL_QUEUE: usize = 64;

static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(1);

/// What the other end of a link may ask, as its handshake established: a member of the cluster
/// asks model requests (train, score, predict, send your model); an operator client may run any
/// command; a reader client only those that change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Member,
    Reader,
    Operator,
}

/// Who dialed a link, and the tag both ends know it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOrigin<'a> {
    pub initiator: &'a str,
    pub tag: u64,
}

/// What a link reports to its owner.
#[derive(Debug)]
pub enum LinkEvent {
    /// The other side asks something; answer with [`Link::respond`].
    Request { id: u64, body: Request },
    /// A packet of the membership protocol.
    Membership { packet: Bytes },
    /// The other side is leaving the cluster on purpose.
    Leave,
    /// The link is closed; nothing more will come from it.
    Closed { reason: String },
}

/// Answers requests on the link's own read task, before they reach the link's owner: a
/// prediction of a few rows is answered without a hop through an actor's mailbox. It returns
/// the requests it hands on (`Some`), which then come as [`LinkEvent::Request`].
pub type Inline = Rc<dyn Fn(&Link, u64, Request) -> Option<Request>>;

/// An event from `link`.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct FromLink {
    pub link: Link,
    pub event: LinkEvent,
}

enum Outgoing {
    Frame(Outbound),
    /// Resolved once every frame queued before it has been written and flushed.
    Flushed(oneshot::Sender<()>),
}

struct Inner {
    id: u64,
    /// Who is at the other end, for logs.
    peer: String,
    /// Id of the node that dialed this connection.
    initiator: String,
    /// Tag both ends know this connection by.
    tag: u64,
    access: Access,
    tx: mpsc::Sender<Outgoing>,
    /// Membership packets and leave: written ahead of `tx`'s backlog.
    control: mpsc::Sender<Message>,
    pending: Mutex<Pending>,
    next_request: AtomicU64,
    closed: CancellationToken,
    close_reason: Mutex<Option<String>>,
    opened: Instant,
    /// Milliseconds after `opened` when the last frame arrived.
    last_heard_ms: AtomicU64,
    /// Requests from the other side not answered yet.
    unanswered: AtomicU64,
    /// Bytes of the frames read and written on this connection (its codec's counts).
    traffic: Traffic,
}

/// Requests waiting for their answers, by id.
type Pending = HashMap<u64, oneshot::Sender<Response>, BuildHasherDefault<IdHasher>>;

/// Hashes a link's request ids with one multiplication. The ids are this side's own (counted up
/// from 0, never chosen by the peer), so SipHash's defence against chosen keys buys nothing, and
/// it cost a lookup per answer as much as the rest of finding the waiter.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: odd, so distinct ids keep distinct low bits (the table's index),
        // and the high bits (its tags) mix all of them.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A cheap, cloneable handle to one connection.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

/// A request of [`Link::exchange`] waiting for its answer: if the wait is given up (a deadline,
/// a dropped caller), its entry is removed so that a late answer is dropped.
struct Waiting<'a> {
    link: &'a Link,
    id: u64,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.link.lock_pending().remove(&self.id);
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link#{}({})", self.inner.id, self.inner.peer)
    }
}

impl Link {
    /// Starts the reader and writer tasks of `conn` on the current arbiter. Events go to `events`.
    pub fn spawn(
        conn: Conn,
        peer: String,
        initiator: String,
        tag: u64,
        access: Access,
        events: Recipient<FromLink>,
        inline: Option<Inline>,
    ) -> Link {
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let traffic = conn.codec().traffic();
        let link = Link {
            inner: Arc::new(Inner {
                id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                initiator,
                tag,
                access,
                tx,
                control,
                pending: Mutex::new(Pending::default()),
                next_request: AtomicU64::new(1),
                closed: CancellationToken::new(),
                close_reason: Mutex::new(None),
                opened: Instant::now(),
                last_heard_ms: AtomicU64::new(0),
                unanswered: AtomicU64::new(0),
                traffic,
            }),
        };
        let (sink, stream) = conn.split();
        actix_rt::spawn(link.clone().write_loop(sink, control_rx, rx));
        actix_rt::spawn(link.clone().read_loop(stream, events, inline));
        link
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// What the other end may ask.
    pub fn access(&self) -> Access {
        self.inner.access
    }

    /// Who is at the other end, for logs and errors.
    pub fn peer(&self) -> &str {
        &self.inner.peer
    }

    /// Who dialed this link and its tag: which of two links between the same nodes survives
    /// depends on it.
    pub fn origin(&self) -> LinkOrigin<'_> {
        LinkOrigin {
            initiator: &self.inner.initiator,
            tag: self.inner.tag,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Resolves when the link is closed.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await
    }

    /// Time since the last frame from the other side (or since the link opened).
    pub fn silence(&self) -> Duration {
        self.last_heard().elapsed()
    }

    /// When the last frame of any kind arrived from the other side (or the link opened): every
    /// frame is a sign of life, not only membership packets.
    pub fn last_heard(&self) -> Instant {
        let heard = Duration::from_millis(self.inner.last_heard_ms.load(Ordering::Relaxed));
        self.inner.opened + heard
    }

    /// Bytes read and written on this connection so far, handshake included.
    pub fn traffic(&self) -> &Traffic {
        &self.inner.traffic
    }

    /// Sends `body` and waits for its response, at most `deadline`.
    pub async fn request(&self, body: Request, deadline: Duration) -> Result<Response> {
        self.call(
            |id| Outbound::Message(Message::Request { id, body }),
            deadline,
        )
        .await
    }

    /// Sends `body`, encoded beforehand (one encoding for many peers), and waits for its
    /// response with no deadline of its own: the caller bounds the wait (dropping the future
    /// forgets the request).
    pub async fn exchange_encoded(&self, body: &EncodedBody) -> Result<Response> {
        let body = body.clone();
        self.exchange(|id| Outbound::Request { id, body }).await
    }

    async fn call(
        &self,
        frame: impl FnOnce(u64) -> Outbound,
        deadline: Duration,
    ) -> Result<Response> {
        match tokio::time::timeout(deadline, self.exchange(frame)).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout(format!(
                "no answer from {} within {} ms",
                self.inner.peer,
                deadline.as_millis()
            ))),
        }
    }

    async fn exchange(&self, frame: impl FnOnce(u64) -> Outbound) -> Result<Response> {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        let mut waiting = Waiting {
            link: self,
            id,
            answered: false,
        };
        // On an error here, dropping `waiting` removes the entry.
        self.queue(frame(id))?;
        let answer = rx.await;
        // The reader took the entry out to answer it, or `close` cleared them all.
        waiting.answered = true;
        answer.map_err(|_| Error::Closed(self.reason()))
    }

    /// Whether the other side waits for none of our answers.
    pub fn is_idle(&self) -> bool {
        self.inner.unanswered.load(Ordering::Relaxed) == 0
    }

    /// Answers request `id`.
    pub fn respond(&self, id: u64, body: Response) {
        let _ = self
            .inner
            .unanswered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if let Err(e) = self.send(Message::Response { id, body }) {
            tracing::debug!(peer = %self.inner.peer, "response {id} not sent: {e}");
        }
    }

    /// Queues a one-way frame. Membership packets and leave go ahead of any bulk backlog.
    pub fn send(&self, msg: Message) -> Result<()> {
        match msg {
            Message::Membership { .. } | Message::Leave => self.queue_control(msg),
            msg => self.queue(Outbound::Message(msg)),
        }
    }

    fn queue_control(&self, msg: Message) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed(self.reason()));
        }
        self.inner.control.try_send(msg).map_err(|e| match e {
            // Control frames not written yet make more of them pointless: the link itself is stuck.
            mpsc::error::TrySendError::Full(_) => {
                Error::Timeout(format!("control queue to {} is full", self.inner.peer))
            }
            mpsc::error::TrySendError::Closed(_) => Error::Closed(self.reason()),
        })
    }

    fn queue(&self, frame: Outbound) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed(self.reason()));
        }
        self.inner
            .tx
            .try_send(Outgoing::Frame(frame))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    Error::Timeout(format!("send queue to {} is full", self.inner.peer))
                }
                mpsc::error::TrySendError::Closed(_) => Error::Closed(self.reason()),
            })
    }

    /// Waits (at most `deadline`) until everything queued so far is written out.
    pub async fn flush(&self, deadline: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.try_send(Outgoing::Flushed(tx)).is_ok() {
            let _ = tokio::time::timeout(deadline, rx).await;
        }
    }

    /// Closes the link: pending requests fail now, the tasks stop, the socket closes.
    pub fn close(&self, reason: &str) {
        {
            let mut slot = self
                .inner
                .close_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if slot.is_some() {
                return;
            }
            *slot = Some(reason.to_string());
        }
        self.inner.closed.cancel();
        // Dropping the senders wakes every waiter with an error.
        self.lock_pending().clear();
    }

    fn reason(&self) -> String {
        self.inner
            .close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "link closed".into())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn write_loop(
        self,
        mut sink: futures::stream::SplitSink<Conn, Outbound>,
        mut control: mpsc::Receiver<Message>,
        mut rx: mpsc::Receiver<Outgoing>,
    ) {
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let closed = self.inner.closed.cancelled();
        tokio::pin!(closed);
        loop {
            let first = tokio::select! {
                biased;
                _ = &mut closed => break,
                msg = control.recv() => match msg {
                    Some(msg) => Outgoing::Frame(Outbound::Message(msg)),
                    None => break,
                },
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
            };
            // Write everything already queued, control frames before each bulk frame, then flush
            // once.
            let mut item = Some(first);
            let mut failed = None;
            while let Some(next) = item.take() {
                match next {
                    Outgoing::Frame(msg) => {
                        if let Err(e) = sink.feed(msg).await {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                    Outgoing::Flushed(done) => waiters.push(done),
                }
                item = match control.try_recv() {
                    Ok(msg) => Some(Outgoing::Frame(Outbound::Message(msg))),
                    Err(_) => rx.try_recv().ok(),
                };
            }
            if failed.is_none() {
                if let Err(e) = sink.flush().await {
                    failed = Some(e.to_string());
                }
            }
            for done in waiters.drain(..) {
                let _ = done.send(());
            }
            if let Some(reason) = failed {
                self.close(&format!("write failed: {reason}"));
                break;
            }
        }
        let _ = sink.close().await;
    }

    async fn read_loop(
        self,
        mut stream: futures::stream::SplitStream<Conn>,
        events: Recipient<FromLink>,
        inline: Option<Inline>,
    ) {
        let notify = |event| {
            events.do_send(FromLink {
                link: self.clone(),
                event,
            })
        };
        // Registered once: a new wait for each frame would cost a registration per frame.
        let closed = self.inner.closed.cancelled();
        tokio::pin!(closed);
        loop {
            let frame = tokio::select! {
                _ = &mut closed => break,
                frame = stream.next() => frame,
            };
            let msg = match frame {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    tracing::warn!(peer = %self.inner.peer, "closing connection: {e}");
                    self.close(&e.to_string());
                    break;
                }
                None => {
                    self.close("connection closed by the other side");
                    break;
                }
            };
            let heard = self.inner.opened.elapsed().as_millis() as u64;
            self.inner.last_heard_ms.store(heard, Ordering::Relaxed);
            match msg {
                Message::Response { id, body } => {
                    if let Some(waiter) = self.lock_pending().remove(&id) {
                        let _ = waiter.send(body);
                    }
                }
                Message::Request { id, body } => {
                    self.inner.unanswered.fetch_add(1, Ordering::Relaxed);
                    let body = match &inline {
                        Some(serve) => {
                            let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                serve(&self, id, body)
                            }));
                            match served {
                                Ok(Some(body)) => body,
                                Ok(None) => continue,
                                // The read task must not die with the link open: close it.
                                Err(_) => {
                                    tracing::error!(peer = %self.inner.peer, "serving request {id} panicked");
                                    self.close("serving a request failed");
                                    break;
                                }
                            }
                        }
                        None => body,
                    };
                    notify(LinkEvent::Request { id, body })
                }
                Message::Membership { packet } => notify(LinkEvent::Membership { packet }),
                Message::Leave => notify(LinkEvent::Leave),
                other => {
                    let reason = format!("unexpected {} after the handshake", other.name());
                    tracing::warn!(peer = %self.inner.peer, "closing connection: {reason}");
                    self.close(&reason);
                    break;
                }
            }
        }
        notify(LinkEvent::Closed {
            reason: self.reason(),
        });
    }
}

#[cfg(test)]
mod tests {
    use actix::{Actor, Context};
    use bytes::Bytes;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::codec::Framed;

    use super::*;
    use crate::net::Stream;
    use crate::protocol::FrameCodec;

    struct Ignore;
    impl Actor for Ignore {
        type Context = Context<Self>;
    }
    impl actix::Handler<FromLink> for Ignore {
        type Result = ();
        fn handle(&mut self, _: FromLink, _: &mut Context<Self>) {}
    }

    const BULK: usize = 200;
    const MAX_FRAME: usize = 1 << 20;

    /// A link over a loopback connection, and the connection's other end.
    async fn linked() -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let dialed = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let conn = Framed::new(Stream::Plain(dialed), FrameCodec::new(MAX_FRAME));
        let events = Ignore.start().recipient();
        let link = Link::spawn(
            conn,
            "peer".into(),
            "me".into(),
            1,
            Access::Member,
            events,
            None,
        );
        (link, accepted)
    }

    /// A membership packet queued behind megabytes of bulk frames is written before them.
    #[actix_rt::test]
    async fn membership_packets_overtake_queued_bulk_frames() {
        let (link, accepted) = linked().await;
        for i in 0..BULK {
            let proof = Bytes::from(vec![i as u8; 256 * 1024]);
            link.send(Message::Auth { proof }).expect("bulk queued");
        }
        // Nothing is read yet: the socket buffers fill, the writer is stuck mid-backlog.
        let probe = Bytes::from_static(b"probe");
        link.send(Message::Membership { packet: probe })
            .expect("membership packet queued");
        let mut other = Framed::new(Stream::Plain(accepted), FrameCodec::new(MAX_FRAME));
        let mut position = None;
        for i in 0..=BULK {
            let frame = tokio::time::timeout(Duration::from_secs(20), other.next())
                .await
                .expect("frames keep coming")
                .expect("open")
                .expect("a frame");
            if matches!(frame, Message::Membership { .. }) {
                position = Some(i);
                break;
            }
        }
        let position = position.expect("the membership packet arrived");
        // Only what the kernel's socket buffers already held goes before it (a few MB of 50).
        assert!(
            position < BULK / 2,
            "the membership packet came after {position} bulk frames"
        );
        link.close("done");
    }

    /// A request given up (its deadline passed, or its caller went away) leaves nothing behind
    /// in the link's table of requests waiting for an answer.
    #[actix_rt::test]
    async fn a_request_given_up_is_forgotten() {
        // The other end never answers.
        let (link, _accepted) = linked().await;
        let answer = link.request(Request::Ping, Duration::from_millis(50)).await;
        assert!(matches!(answer, Err(Error::Timeout(_))), "{answer:?}");
        assert_eq!(link.lock_pending().len(), 0, "after a deadline");
        let schema = crate::ml::Schema::new([]).shared();
        let rows = crate::ml::TypedRowsBuilder::new(schema).finish();
        let body = EncodedBody::predict(&rows).expect("encodes");
        {
            let waiting = link.exchange_encoded(&body);
            futures::pin_mut!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert_eq!(link.lock_pending().len(), 1, "while it waits");
        }
        assert_eq!(link.lock_pending().len(), 0, "after its caller dropped it");
        link.close("done");
    }
}
