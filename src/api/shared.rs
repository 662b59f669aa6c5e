//! What both sides of the threaded API share: the messages, the atomics of each socket, and the
//! handles to the engines. Nothing here acts on its own.
//!
//! The modules point one way, so none imports one that imports it back:
//!
//! ```text
//! engine side                 shared types                user side
//! bridge (StackApp)  ──────►  shared  ◄──────  stream (TcpStream), listener (TcpListener)
//!        ▲                                                 │
//!        └─────────────── stack (Stack, StackBuilder) ◄────┘
//! ```
//!
//! The bridge runs inside each engine's loop and only sends messages ([`Ev`] per socket,
//! [`Accepted`] per listener); the user side builds its `TcpStream` from them and sends
//! [`Command`]s back. `stack` starts the engines with the bridge's app and hands the user side
//! the [`EngineHandle`]s.
//!
//! Flow control, both ways, with the atomics in [`Shared`]:
//! - **send**: a write takes credit (`send_credit`, [`send_credit`] of SO_SNDBUF to start
//!   with) before handing its bytes to the engine, and blocks (or returns `EAGAIN`) without it;
//!   the engine returns the credit when the peer acknowledges the bytes. So at most twice
//!   SO_SNDBUF bytes are written and not yet acknowledged, whether they travel in the queue or
//!   wait in the connection's send buffer: a send buffer's worth in flight and as much again
//!   queued behind it, so that the connection keeps sending while the writer's thread waits
//!   for a core. A waiting writer sets `send_waiting`; the engine answers it with an
//!   [`Ev::Credit`].
//! - **receive**: the engine moves bytes out of the connection into [`Ev::Data`] only while
//!   the bytes the reader holds (`recv_outstanding`, sent and not yet read) are below
//!   `recv_limit` (SO_RCVBUF). Past it the bytes stay in the connection, whose window closes,
//!   so the peer stops. The engine then sets `recv_blocked`; the reader, after consuming, sees
//!   the flag and sends [`Command::Credit`] so the engine resumes.
//!
//! Buffers travel with the bytes and come back for reuse, so a steady stream allocates nothing:
//! a write fills a buffer from `send_pool`, which the connection's send buffer keeps until the
//! peer acknowledges it and the engine returns it; a [`Ev::Data`] buffer comes from `recv_pool`,
//! to which the reader returns it once read. Each pool holds a few buffers of at most
//! [`MAX_CHUNK`] bytes; what does not fit is freed.

use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};
use crossbeam::queue::ArrayQueue;

use crate::tcp::{self, KeepAlive};
use crate::time::Duration;

/// Largest buffer carried by one message ([`Command::Write`], [`Ev::Data`]).
pub(crate) const MAX_CHUNK: usize = 64 * 1024;
/// Buffers each pool keeps for reuse.
const POOL: usize = 8;

/// Atomics shared by one socket's owner and its engine.
#[derive(Debug)]
pub(crate) struct Shared {
    pub send_credit: AtomicIsize,
    pub send_waiting: AtomicBool,
    pub recv_outstanding: AtomicUsize,
    pub recv_limit: AtomicUsize,
    pub recv_blocked: AtomicBool,
    send_pool: ArrayQueue<Vec<u8>>,
    recv_pool: ArrayQueue<Vec<u8>>,
    pub copies: CopyCounters,
}

/// Bytes copied on each step of a socket's two paths: one relaxed add per copy (a call, not a
/// byte). The connection's own counts are mirrored by the engine before it sends what follows
/// from them, so a reader who got the bytes sees them counted.
#[derive(Debug, Default)]
pub(crate) struct CopyCounters {
    /// The writer's slice into the buffer of a [`Command::Write`].
    pub write_to_message: AtomicU64,
    /// Mirror of [`tcp::ConnStats::send_buf_copied`].
    pub into_send_buffer: AtomicU64,
    /// Mirror of [`tcp::ConnStats::recv_buf_copied`].
    pub into_recv_buffer: AtomicU64,
    /// The receive buffer into the buffer of an [`Ev::Data`].
    pub recv_to_message: AtomicU64,
    /// [`Ev::Data`] buffers into the reader's slices (reads and peeks).
    pub message_to_caller: AtomicU64,
}

impl CopyCounters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Mirrors the connection's counts.
    pub fn mirror(&self, stats: &tcp::ConnStats) {
        use std::sync::atomic::Ordering::Relaxed;
        self.into_send_buffer.store(stats.send_buf_copied, Relaxed);
        self.into_recv_buffer.store(stats.recv_buf_copied, Relaxed);
    }
}

/// The send credit for a send buffer of `sndbuf` bytes (SO_SNDBUF): what a writer may have
/// written and not yet acknowledged. Twice the buffer, as Linux doubles SO_SNDBUF.
pub(crate) fn send_credit(sndbuf: usize) -> isize {
    2 * sndbuf as isize
}

impl Shared {
    pub fn new(sndbuf: usize, rcvbuf: usize) -> Arc<Self> {
        Arc::new(Shared {
            send_credit: AtomicIsize::new(send_credit(sndbuf)),
            send_waiting: AtomicBool::new(false),
            recv_outstanding: AtomicUsize::new(0),
            recv_limit: AtomicUsize::new(rcvbuf),
            recv_blocked: AtomicBool::new(false),
            send_pool: ArrayQueue::new(POOL),
            recv_pool: ArrayQueue::new(POOL),
            copies: CopyCounters::default(),
        })
    }

    /// An empty buffer for a write of `n` bytes, reused when the pool has one large enough.
    pub fn send_buffer(&self, n: usize) -> Vec<u8> {
        take(&self.send_pool, n)
    }

    /// Gives an acknowledged write's buffer back for reuse.
    pub fn recycle_send(&self, v: Vec<u8>) {
        give(&self.send_pool, v);
    }

    /// Whether [`Shared::recycle_send`] would keep another buffer.
    pub fn send_pool_full(&self) -> bool {
        self.send_pool.is_full()
    }

    /// An empty buffer for an [`Ev::Data`] of `n` bytes.
    pub fn recv_buffer(&self, n: usize) -> Vec<u8> {
        take(&self.recv_pool, n)
    }

    /// Gives a read [`Ev::Data`] buffer back for reuse.
    pub fn recycle_recv(&self, v: Vec<u8>) {
        give(&self.recv_pool, v);
    }
}

fn take(pool: &ArrayQueue<Vec<u8>>, n: usize) -> Vec<u8> {
    match pool.pop() {
        // One too small is dropped: the pool converges on the sizes in use.
        Some(v) if v.capacity() >= n => v,
        _ => Vec::with_capacity(n.next_power_of_two().min(MAX_CHUNK).max(n)),
    }
}

fn give(pool: &ArrayQueue<Vec<u8>>, mut v: Vec<u8>) {
    if v.capacity() <= MAX_CHUNK {
        v.clear();
        let _ = pool.push(v);
    }
}

/// A socket option set from an application thread.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opt {
    NoDelay(bool),
    KeepAlive(Option<KeepAlive>),
    SendBuf(usize),
    RecvBuf(usize),
}

/// Application thread -> engine.
pub(crate) enum Command {
    Connect {
        token: u64,
        remote: SocketAddrV4,
        tx: Sender<Ev>,
        shared: Arc<Shared>,
    },
    Listen {
        port: u16,
        id: u64,
        backlog: usize,
        accept: Sender<Accepted>,
        reply: Sender<std::io::Result<()>>,
    },
    Unlisten {
        port: u16,
        id: u64,
    },
    /// Bytes for the send buffer, which keeps `data` itself until acknowledged; `more` corks the
    /// connection (`MSG_MORE`), its absence uncorks it after the bytes are queued.
    Write {
        token: u64,
        data: Vec<u8>,
        more: bool,
    },
    Shutdown {
        token: u64,
        how: Shutdown,
    },
    /// The owner dropped the socket; `unread` when it held bytes it never read (close with
    /// unread data resets, as in Linux).
    Close {
        token: u64,
        unread: bool,
    },
    Set {
        token: u64,
        opt: Opt,
    },
    /// The reader consumed bytes after the engine stopped for lack of receive credit.
    Credit {
        token: u64,
    },
    /// `TCP_INFO`: the connection's snapshot, `None` once it is gone.
    Info {
        token: u64,
        reply: Sender<Option<tcp::TcpInfo>>,
    },
}

/// Engine -> one socket's owner.
#[derive(Debug)]
pub(crate) enum Ev {
    Connected {
        local: SocketAddrV4,
        peer: SocketAddrV4,
    },
    Data(Vec<u8>),
    Eof,
    Error(tcp::Error),
    Credit,
}

/// What the user side of one connection holds: how to reach its engine and its socket there.
pub(crate) struct Ends {
    pub token: u64,
    pub engine: EngineHandle,
    pub rx: Receiver<Ev>,
    pub shared: Arc<Shared>,
}

/// Engine -> a listener: a connection it accepted, from which the listener builds the
/// `TcpStream`. Dropped unused (the listener went away with it queued), it closes the
/// connection as dropping the stream would.
pub(crate) struct Accepted {
    ends: Option<Ends>,
    pub local: SocketAddrV4,
    pub peer: SocketAddrV4,
}

impl Accepted {
    pub fn new(ends: Ends, local: SocketAddrV4, peer: SocketAddrV4) -> Self {
        Accepted {
            ends: Some(ends),
            local,
            peer,
        }
    }

    /// The ends, now owned by the caller (who closes the connection when done).
    pub fn take(mut self) -> Ends {
        self.ends.take().expect("taken once")
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        if let Some(e) = self.ends.take() {
            let unread = e.rx.try_iter().any(|ev| matches!(ev, Ev::Data(_)));
            e.engine.send(Command::Close {
                token: e.token,
                unread,
            });
        }
    }
}

/// A way to an engine: its command queue and, for devices that sleep, a wake-up.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    pub cmd: Sender<Command>,
    pub wake: Option<Wake>,
}

/// How an engine sleeping in its device's wait is woken.
#[derive(Clone)]
pub(crate) enum Wake {
    /// A channel the device selects on ([`crate::io::mem::ChanIo::waker`]).
    Chan(Sender<()>),
    /// The eventfd an AF_XDP socket polls beside itself.
    Xdp(crate::io::xdp::Waker),
}

impl Wake {
    pub fn wake(&self) {
        match self {
            Wake::Chan(s) => {
                let _ = s.try_send(());
            }
            Wake::Xdp(w) => w.wake(),
        }
    }
}

impl EngineHandle {
    /// Queues `c` and wakes the engine. False when the engine is gone.
    pub fn send(&self, c: Command) -> bool {
        let ok = self.post(c);
        self.wake();
        ok
    }

    /// Queues `c` without waking the engine: follow with [`EngineHandle::wake`].
    pub fn post(&self, c: Command) -> bool {
        self.cmd.send(c).is_ok()
    }

    pub fn wake(&self) {
        if let Some(w) = &self.wake {
            w.wake();
        }
    }
}

/// Stack-wide shutdown state shared by the handle and every engine.
pub(crate) struct Control {
    requested: AtomicBool,
    panicked: AtomicBool,
    pub drained: AtomicUsize,
    notify_tx: Sender<()>,
    notify_rx: Receiver<()>,
}

impl Control {
    pub fn new() -> Arc<Self> {
        let (notify_tx, notify_rx) = crossbeam::channel::bounded(1);
        Arc::new(Control {
            requested: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            notify_tx,
            notify_rx,
        })
    }

    pub fn request(&self) {
        if !self.requested.swap(true, SeqCst) {
            let _ = self.notify_tx.try_send(());
        }
    }

    pub fn requested(&self) -> bool {
        self.requested.load(SeqCst)
    }

    /// Records that a handler panicked (before [`Control::request`]).
    pub fn set_panicked(&self) {
        self.panicked.store(true, SeqCst);
    }

    pub fn panicked(&self) -> bool {
        self.panicked.load(SeqCst)
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        while !self.requested() {
            let _ = self
                .notify_rx
                .recv_timeout(std::time::Duration::from_millis(100));
        }
    }
}

/// Settings every socket starts with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SockDefaults {
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub backlog: usize,
    pub grace: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_reuse_buffers_large_enough_and_keep_a_bounded_few() {
        let s = Shared::new(1 << 20, 1 << 20);
        let v = s.send_buffer(100);
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        assert!(cap >= 100);
        s.recycle_send(v);
        s.recycle_send(b"dirty".to_vec());
        // the large one comes back emptied; the one too small is dropped on the way
        let w = s.send_buffer(100);
        assert_eq!((w.as_ptr(), w.len()), (ptr, 0));
        assert!(s.send_buffer(100).capacity() >= 100);
        // at most POOL buffers, none larger than MAX_CHUNK
        s.recycle_send(Vec::with_capacity(MAX_CHUNK + 1));
        for _ in 0..POOL + 3 {
            s.recycle_recv(Vec::with_capacity(64));
        }
        assert!(s.send_pool.is_empty());
        assert_eq!(s.recv_pool.len(), POOL);
        assert!(s.recv_buffer(64).capacity() >= 64);
        assert_eq!(s.recv_pool.len(), POOL - 1);
    }
}
