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
//!   for a core. A waiting writer sets `send_waiting`; the engine answers it with a wake-up
//!   through a channel of its own (`Shared::wait_credit`), which also carries failures, so a
//!   writer never reads the reader's events and both can block at once on two threads.
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

use std::io;
use std::net::{Shutdown, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{
    AtomicBool, AtomicIsize, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst,
};
use std::sync::{Arc, OnceLock};

use atomic_waker::AtomicWaker;

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
    /// The connection's error, set by the engine (once) before its [`Ev::Error`], so that a
    /// writer learns it without reading the event channel: `0` for none, else
    /// [`error_code`]. Taken (swapped to 0) by whichever user-side call reports it.
    pub error: AtomicU8,
    /// The peer's FIN was passed on ([`Ev::Eof`] follows), for the errno of a later RST.
    pub eof: AtomicBool,
    /// The engine let go of the socket (it shut down, or the connection was closed).
    pub gone: AtomicBool,
    /// Engine -> a blocked writer: credit came back, or the connection failed.
    credit_tx: Sender<()>,
    credit_rx: Receiver<()>,
    /// Who else waits on this socket: tasks and a pollable descriptor.
    pub ready: Ready,
}

/// The code of `e` in [`Shared::error`].
pub(crate) fn error_code(e: tcp::Error) -> u8 {
    ERRORS
        .iter()
        .position(|&x| x == e)
        .map_or(1, |i| i as u8 + 1)
}

fn error_from(code: u8) -> Option<tcp::Error> {
    (code as usize)
        .checked_sub(1)
        .and_then(|i| ERRORS.get(i).copied())
}

const ERRORS: [tcp::Error; 13] = [
    tcp::Error::Aborted,
    tcp::Error::WouldBlock,
    tcp::Error::NotConnected,
    tcp::Error::BrokenPipe,
    tcp::Error::Reset,
    tcp::Error::Refused,
    tcp::Error::TimedOut,
    tcp::Error::HostUnreachable,
    tcp::Error::NetUnreachable,
    tcp::Error::HostDown,
    tcp::Error::NoNetwork,
    tcp::Error::ProtocolUnavailable,
    tcp::Error::SourceRouteFailed,
];

/// Readiness of one socket for waiters other than a blocked thread: a task's waker for each
/// direction (the tokio integration) and an eventfd for `poll`/`epoll`/mio users, made on
/// first use. The engine signals after it sent the reader something (data, end of stream, an
/// error) or gave a waiting writer credit.
///
/// The eventfd is edge-like with a re-arm: readable once something happened since the owner
/// last re-armed it, which the socket does when a call would block ([`Ready::rearm`]) before
/// looking once more. So a `poll` that follows an `EAGAIN` returns when the retry can
/// succeed; the engine writes the descriptor (a system call) only while it is armed, once per
/// arming.
#[derive(Debug, Default)]
pub(crate) struct Ready {
    fd: OnceLock<OwnedFd>,
    armed: AtomicBool,
    pub read: AtomicWaker,
    pub write: AtomicWaker,
}

impl Ready {
    /// Something for the reader: wakes its task and the descriptor.
    pub fn notify_read(&self) {
        self.read.wake();
        self.kick();
    }

    /// Credit (or a failure) for the writer.
    pub fn notify_write(&self) {
        self.write.wake();
        self.kick();
    }

    fn kick(&self) {
        if let Some(fd) = self.fd.get() {
            if self.armed.swap(false, SeqCst) {
                // SAFETY: writes 8 bytes from a local to an eventfd we own.
                unsafe { libc::write(fd.as_raw_fd(), (&1u64 as *const u64).cast(), 8) };
            }
        }
    }

    /// The eventfd, made on the first call (close-on-exec, non-blocking, readable at first so
    /// that a first `poll` leads to a first try).
    pub fn fd(&self) -> io::Result<RawFd> {
        if let Some(fd) = self.fd.get() {
            return Ok(fd.as_raw_fd());
        }
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor that
        // nothing else owns.
        let raw = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, `raw` is ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Another thread may have won the race: its descriptor stays, ours closes.
        let _ = self.fd.set(fd);
        Ok(self.fd.get().map(AsRawFd::as_raw_fd).unwrap_or(raw))
    }

    /// Whether the descriptor exists (someone may poll it).
    pub fn is_made(&self) -> bool {
        self.fd.get().is_some()
    }

    /// Called when a call is about to return `EAGAIN`, before looking once more: empties the
    /// descriptor and lets the engine write it again.
    pub fn rearm(&self) {
        if let Some(fd) = self.fd.get() {
            let mut v = 0u64;
            // SAFETY: reads at most 8 bytes into a local from an eventfd we own (non-blocking).
            unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
            self.armed.store(true, SeqCst);
        }
    }
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
    /// A received frame's payload, lent in place, into the buffer of an [`Ev::Data`]
    /// (zero-copy receive: these bytes never enter the receive buffer).
    pub frame_to_message: AtomicU64,
    /// [`Ev::Data`] buffers into the reader's slices (reads and peeks).
    pub message_to_caller: AtomicU64,
}

impl CopyCounters {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Mirrors the connection's counts.
    pub fn mirror(&self, (into_send, into_recv): (u64, u64)) {
        use std::sync::atomic::Ordering::Relaxed;
        self.into_send_buffer.store(into_send, Relaxed);
        self.into_recv_buffer.store(into_recv, Relaxed);
    }
}

/// The send credit for a send buffer of `sndbuf` bytes (SO_SNDBUF): what a writer may have
/// written and not yet acknowledged. Twice the buffer, as Linux doubles SO_SNDBUF.
pub(crate) fn send_credit(sndbuf: usize) -> isize {
    2 * sndbuf as isize
}

impl Shared {
    pub fn new(sndbuf: usize, rcvbuf: usize) -> Arc<Self> {
        let (credit_tx, credit_rx) = crossbeam::channel::bounded(1);
        Arc::new(Shared {
            send_credit: AtomicIsize::new(send_credit(sndbuf)),
            send_waiting: AtomicBool::new(false),
            recv_outstanding: AtomicUsize::new(0),
            recv_limit: AtomicUsize::new(rcvbuf),
            recv_blocked: AtomicBool::new(false),
            send_pool: ArrayQueue::new(POOL),
            recv_pool: ArrayQueue::new(POOL),
            copies: CopyCounters::default(),
            error: AtomicU8::new(0),
            eof: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            credit_tx,
            credit_rx,
            ready: Ready::default(),
        })
    }

    /// Engine side: records the connection's error for the user side (once) and wakes every
    /// waiter. The [`Ev::Error`] that follows on the event channel wakes a blocked reader.
    pub fn fail(&self, e: tcp::Error) {
        self.error.store(error_code(e), SeqCst);
        self.poke_writer();
        self.ready.notify_read();
    }

    /// Engine side: the socket is no longer served (its sender of events is dropped next).
    pub fn detach(&self) {
        self.gone.store(true, SeqCst);
        self.poke_writer();
        self.ready.notify_read();
    }

    /// Wakes a writer blocked for credit, its task and the descriptor.
    pub fn poke_writer(&self) {
        let _ = self.credit_tx.try_send(());
        self.ready.notify_write();
    }

    /// User side: the error the engine recorded, taken once.
    pub fn take_error(&self) -> Option<tcp::Error> {
        if self.error.load(SeqCst) == 0 {
            return None;
        }
        error_from(self.error.swap(0, SeqCst))
    }

    /// User side: waits for [`Shared::poke_writer`] until `deadline`; false on time-out.
    pub fn wait_credit(&self, deadline: Option<std::time::Instant>) -> bool {
        match deadline {
            None => self.credit_rx.recv().is_ok(),
            Some(d) => self.credit_rx.recv_deadline(d).is_ok(),
        }
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
    Ttl(u8),
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
        /// Woken after each connection sent on `accept`.
        ready: Arc<Ready>,
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
        linger: Linger,
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

/// What `close(2)` does with a connection (`SO_LINGER`).
#[derive(Debug)]
pub(crate) enum Linger {
    /// FIN after the bytes written, in the background (no `SO_LINGER`).
    Background,
    /// RST at once, dropping whatever is unsent (linger on, time 0).
    Reset,
    /// FIN as in the background, and tell `done` once everything sent, FIN included, is
    /// acknowledged (or the connection ended); the closing thread waits for it, at most its
    /// linger time.
    Wait(Sender<()>),
}

/// Engine -> one socket's owner.
#[derive(Debug)]
pub(crate) enum Ev {
    Connected { local: SocketAddrV4 },
    Data(Vec<u8>),
    Eof,
    Error(tcp::Error),
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
                linger: Linger::Background,
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
