//! The user side of one connection, shared by every handle to it: the clones of a
//! [`super::TcpStream`], its read and write halves and the tokio stream.
//!
//! Three locks, each taken by one kind of caller and never held while taking another except
//! in the order `read`, then `status`: a reader holds `read` (its buffered chunks and the
//! event channel) for its whole call, blocking in it if it must; a writer holds `write` for
//! its whole call (so one write's chunks stay together) and waits on the credit channel, not
//! on the reader's events; `status` (the pending error, shutdown of writing) is held only for
//! a moment. The engine never takes any of them: it reaches this side through the channel and
//! the atomics of [`Shared`] only. So one thread may block in a read while another blocks in
//! a write of the same connection.
//!
//! Errors: the engine records the connection's error in [`Shared::error`] before its
//! [`Ev::Error`] and after every byte before it, so a reader that sees a newly recorded error
//! takes the channel once more before reporting it: bytes received before an error are read
//! before it, as in Linux.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::error::{broken_pipe, not_connected, reported, to_io, would_block};
use super::shared::{
    Command, CopyCounters, Ends, EngineHandle, Ev, Linger, Opt, Shared, SockDefaults, MAX_CHUNK,
};
use crate::tcp::{self, KeepAlive};

/// What the reader owns.
pub(crate) struct RecvState {
    pub rx: Receiver<Ev>,
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already read.
    head: usize,
    pub buffered: usize,
    pub eof: bool,
    pub read_shut: bool,
}

/// What readers and writers both look at.
#[derive(Default)]
pub(crate) struct Status {
    /// Pending error (SO_ERROR): reported once by the next call, then the socket is dead.
    pub error: Option<tcp::Error>,
    pub dead: bool,
    pub write_shut: bool,
}

/// Settings, read back by the getters.
pub(crate) struct Opts {
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub nodelay: bool,
    pub keepalive: Option<KeepAlive>,
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub linger: Option<Duration>,
    pub ttl: u32,
}

/// One connection's user side; dropping the last handle closes it.
pub(crate) struct Inner {
    pub token: u64,
    pub engine: EngineHandle,
    pub shared: Arc<Shared>,
    pub read: Mutex<RecvState>,
    pub status: Mutex<Status>,
    pub write: Mutex<()>,
    pub opts: Mutex<Opts>,
    pub nonblocking: AtomicBool,
    /// Ours: known once connected.
    pub local: OnceLock<SocketAddrV4>,
    pub peer: SocketAddrV4,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another handle's call leaves plain data behind: carry on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a read or write attempt came to, for the blocking and the async callers alike.
pub(crate) enum Step<T> {
    Done(io::Result<T>),
    /// Nothing yet; wait (for an event, or credit) and try again.
    Wait,
}

impl Inner {
    pub fn new(ends: Ends, local: SocketAddrV4, peer: SocketAddrV4, d: SockDefaults) -> Self {
        let Ends {
            token,
            engine,
            rx,
            shared,
        } = ends;
        Inner {
            token,
            engine,
            shared,
            read: Mutex::new(RecvState {
                rx,
                chunks: VecDeque::new(),
                head: 0,
                buffered: 0,
                eof: false,
                read_shut: false,
            }),
            status: Mutex::new(Status::default()),
            write: Mutex::new(()),
            opts: Mutex::new(Opts {
                read_timeout: None,
                write_timeout: None,
                nodelay: false,
                keepalive: None,
                sndbuf: d.sndbuf,
                rcvbuf: d.rcvbuf,
                linger: None,
                ttl: 64,
            }),
            nonblocking: AtomicBool::new(false),
            local: if local.port() == 0 {
                OnceLock::new()
            } else {
                OnceLock::from(local)
            },
            peer,
        }
    }

    pub fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    pub fn opts(&self) -> MutexGuard<'_, Opts> {
        lock(&self.opts)
    }

    pub fn reader(&self) -> MutexGuard<'_, RecvState> {
        lock(&self.read)
    }

    /// Takes the error the engine recorded into `st` (once); notices an engine that let the
    /// socket go. True when something new was taken.
    pub fn sync(&self, st: &mut Status) -> bool {
        let mut new = false;
        if let Some(e) = self.shared.take_error() {
            new = true;
            if !st.dead {
                st.error = Some(reported(e, self.shared.eof.load(SeqCst)));
            }
        }
        if self.shared.gone.load(SeqCst) && !st.dead && st.error.is_none() {
            // Left without an error: the engine stopped (the stack shut down).
            st.error = Some(tcp::Error::Aborted);
            new = true;
        }
        new
    }

    fn absorb(&self, r: &mut RecvState, ev: Ev) {
        match ev {
            Ev::Data(v) => {
                if r.read_shut {
                    self.release(v.len());
                    self.shared.recycle_recv(v);
                } else {
                    r.buffered += v.len();
                    r.chunks.push_back(v);
                }
            }
            Ev::Eof => r.eof = true,
            // The error itself is in `Shared::error`; its event only wakes the reader.
            Ev::Error(_) | Ev::Connected { .. } => {}
        }
    }

    /// Takes every event already there.
    pub fn pump(&self, r: &mut RecvState) {
        loop {
            match r.rx.try_recv() {
                Ok(ev) => self.absorb(r, ev),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    let mut st = self.status();
                    if !st.dead && st.error.is_none() && self.shared.take_error().is_none() {
                        st.error = Some(tcp::Error::Aborted);
                    }
                    return;
                }
            }
        }
    }

    /// Takes the events there, then the status; when that brought a new error, the events
    /// again (everything before the error is in the channel by then).
    fn settle(&self, r: &mut RecvState) {
        self.pump(r);
        let new = self.sync(&mut self.status());
        if new {
            self.pump(r);
        }
    }

    /// Blocks for one event until `deadline`; false on time-out.
    pub fn wait_event(&self, r: &mut RecvState, deadline: Option<Instant>) -> bool {
        let ev = match deadline {
            None => r.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => r.rx.recv_deadline(d),
        };
        match ev {
            Ok(ev) => {
                self.absorb(r, ev);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Gives back receive credit for `n` consumed bytes; wakes the engine if it stopped.
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.shared.recv_outstanding.fetch_sub(n, SeqCst);
        if self.shared.recv_blocked.swap(false, SeqCst) {
            self.engine.send(Command::Credit { token: self.token });
        }
    }

    fn copy_out(&self, r: &mut RecvState, buf: &mut [u8], consume: bool) -> usize {
        let mut n = 0;
        let mut head = r.head;
        let mut i = 0;
        while n < buf.len() && i < r.chunks.len() {
            let c = &r.chunks[i][head..];
            let k = c.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&c[..k]);
            n += k;
            if k == c.len() {
                i += 1;
                head = 0;
            } else {
                head += k;
            }
        }
        CopyCounters::add(&self.shared.copies.message_to_caller, n);
        if consume {
            for v in r.chunks.drain(..i) {
                self.shared.recycle_recv(v);
            }
            r.head = head;
            r.buffered -= n;
            self.release(n);
        }
        n
    }

    /// One attempt of `recv(2)` into `buf[*n..]` (`*n` bytes already taken by this call, for
    /// `MSG_WAITALL`). `Wait` when it would block.
    pub fn try_recv(
        &self,
        r: &mut RecvState,
        buf: &mut [u8],
        n: &mut usize,
        peek: bool,
        wait_all: bool,
    ) -> Step<usize> {
        loop {
            self.settle(r);
            if r.read_shut {
                return Step::Done(Ok(*n));
            }
            if peek {
                if r.buffered > 0 && (!wait_all || r.buffered >= buf.len()) {
                    return Step::Done(Ok(self.copy_out(r, buf, false)));
                }
            } else if r.buffered > 0 {
                *n += self.copy_out(r, &mut buf[*n..], true);
                if !wait_all || *n == buf.len() {
                    return Step::Done(Ok(*n));
                }
                continue;
            }
            break;
        }
        let have = if peek { r.buffered } else { *n };
        let mut finish = |s: &Self, r: &mut RecvState| {
            if peek {
                s.copy_out(r, buf, false)
            } else {
                *n
            }
        };
        let mut st = self.status();
        // After the peer's FIN a read returns end of stream even if an RST followed (Linux:
        // SOCK_DONE before sk_err); the error stays for writes and SO_ERROR.
        if r.eof || st.dead {
            drop(st);
            return Step::Done(Ok(finish(self, r)));
        }
        if let Some(e) = st.error {
            if have > 0 {
                drop(st);
                return Step::Done(Ok(finish(self, r)));
            }
            st.error = None;
            st.dead = true;
            return Step::Done(Err(to_io(e)));
        }
        Step::Wait
    }

    /// What a read returns when it gives up waiting (non-blocking, or past its timeout).
    pub fn give_up_recv(&self, r: &mut RecvState, buf: &mut [u8], n: usize, peek: bool) -> usize {
        if peek {
            self.copy_out(r, buf, false)
        } else {
            n
        }
    }

    /// Blocking (or non-blocking) `recv(2)`.
    pub fn recv(
        &self,
        buf: &mut [u8],
        peek: bool,
        wait_all: bool,
        dont_wait: bool,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.opts().read_timeout.map(|t| Instant::now() + t);
        let nonblocking = dont_wait || self.nonblocking.load(SeqCst);
        let mut r = self.reader();
        let mut n = 0;
        let mut rearmed = false;
        loop {
            match self.try_recv(&mut r, buf, &mut n, peek, wait_all) {
                Step::Done(res) => return res,
                Step::Wait => {}
            }
            if nonblocking {
                // Re-arm the descriptor, then look once more (see `Ready`).
                if !rearmed && self.shared.ready.is_made() {
                    rearmed = true;
                    self.shared.ready.rearm();
                    continue;
                }
                return finish_or_block(self.give_up_recv(&mut r, buf, n, peek));
            }
            if !self.wait_event(&mut r, deadline) {
                return finish_or_block(self.give_up_recv(&mut r, buf, n, peek));
            }
        }
    }

    /// One attempt of `send(2)`: takes what credit allows. `Wait` when there is none (with
    /// `send_waiting` set, so the engine will wake the writer).
    pub fn try_send(&self, data: &[u8], more: bool) -> Step<usize> {
        {
            let mut st = self.status();
            self.sync(&mut st);
            if st.write_shut {
                return Step::Done(Err(broken_pipe()));
            }
            if let Some(e) = st.error.take() {
                st.dead = true;
                return Step::Done(Err(to_io(e)));
            }
            if st.dead {
                return Step::Done(Err(broken_pipe()));
            }
        }
        for _ in 0..2 {
            let credit = self.shared.send_credit.load(SeqCst);
            if credit > 0 {
                let n = data.len().min(credit as usize);
                self.shared.send_credit.fetch_sub(n as isize, SeqCst);
                if !self.post_writes(&data[..n], more) {
                    let mut st = self.status();
                    if !st.dead && st.error.is_none() {
                        st.error = Some(tcp::Error::Aborted);
                    }
                    return self.try_send(data, more);
                }
                return Step::Done(Ok(n));
            }
            // Ask for a wake-up, then look again: credit may have come in between.
            self.shared.send_waiting.store(true, SeqCst);
        }
        Step::Wait
    }

    /// Blocking (or non-blocking) `send(2)`.
    pub fn send(&self, data: &[u8], more: bool) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = self.opts().write_timeout.map(|t| Instant::now() + t);
        let _w = lock(&self.write);
        let mut rearmed = false;
        loop {
            match self.try_send(data, more) {
                Step::Done(r) => return r,
                Step::Wait => {}
            }
            if self.nonblocking.load(SeqCst) {
                if !rearmed && self.shared.ready.is_made() {
                    rearmed = true;
                    self.shared.ready.rearm();
                    continue;
                }
                return Err(would_block());
            }
            if !self.shared.wait_credit(deadline) {
                return Err(would_block());
            }
        }
    }

    /// Hands `data` to the engine in buffers of at most [`MAX_CHUNK`] bytes: the one copy of
    /// the write path. False when the engine is gone.
    fn post_writes(&self, data: &[u8], more: bool) -> bool {
        let mut ok = true;
        for part in data.chunks(MAX_CHUNK) {
            let mut v = self.shared.send_buffer(part.len());
            v.extend_from_slice(part);
            CopyCounters::add(&self.shared.copies.write_to_message, part.len());
            ok &= self.engine.post(Command::Write {
                token: self.token,
                data: v,
                more,
            });
        }
        self.engine.wake();
        ok
    }

    /// `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let reading = matches!(how, Shutdown::Read | Shutdown::Both);
        let writing = matches!(how, Shutdown::Write | Shutdown::Both);
        if reading {
            let mut r = self.reader();
            self.settle(&mut r);
            if self.status().dead {
                return Err(not_connected());
            }
            if !r.read_shut {
                r.read_shut = true;
                let n = r.buffered;
                for v in r.chunks.drain(..) {
                    self.shared.recycle_recv(v);
                }
                r.head = 0;
                r.buffered = 0;
                self.release(n);
            }
        }
        {
            let mut st = self.status();
            self.sync(&mut st);
            if st.dead {
                return Err(not_connected());
            }
            if writing {
                st.write_shut = true;
            }
        }
        self.engine.send(Command::Shutdown {
            token: self.token,
            how,
        });
        // A writer blocked for credit learns of it.
        self.shared.poke_writer();
        Ok(())
    }

    pub fn set(&self, opt: Opt) -> io::Result<()> {
        if self.status().dead {
            return Err(not_connected());
        }
        self.engine.send(Command::Set {
            token: self.token,
            opt,
        });
        Ok(())
    }

    /// `SO_ERROR`.
    pub fn take_error(&self) -> Option<io::Error> {
        let mut st = self.status();
        self.sync(&mut st);
        st.error.take().map(|e| {
            st.dead = true;
            to_io(e)
        })
    }

    /// The outcome of an active open from one event: `Some` once it is known.
    fn connect_event(&self, ev: Ev) -> Option<io::Result<()>> {
        match ev {
            Ev::Connected { local, .. } => {
                let _ = self.local.set(local);
                Some(Ok(()))
            }
            Ev::Error(e) => {
                let mut st = self.status();
                st.dead = true;
                // The error went to `Shared::error` as well (or not, before the socket existed).
                let _ = self.shared.take_error();
                Some(Err(match e {
                    // Every ephemeral port to that peer is taken.
                    tcp::Error::WouldBlock => io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
                    e => to_io(e),
                }))
            }
            other => {
                self.absorb(&mut self.reader(), other);
                None
            }
        }
    }

    /// Blocks until the active open completes or fails, at most until `deadline`.
    pub fn wait_connected(&self, deadline: Option<Instant>) -> io::Result<()> {
        loop {
            let ev = {
                let r = self.reader();
                match deadline {
                    None => r.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(d) => r.rx.recv_deadline(d),
                }
            };
            match ev {
                Ok(ev) => {
                    if let Some(res) = self.connect_event(ev) {
                        return res;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Err(to_io(tcp::Error::TimedOut)),
                Err(RecvTimeoutError::Disconnected) => {
                    self.status().dead = true;
                    return Err(to_io(tcp::Error::Aborted));
                }
            }
        }
    }

    /// The async form of [`Inner::wait_connected`].
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for registered in [false, true] {
            loop {
                let ev = self.reader().rx.try_recv();
                match ev {
                    Ok(ev) => {
                        if let Some(res) = self.connect_event(ev) {
                            return Poll::Ready(res);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.status().dead = true;
                        return Poll::Ready(Err(to_io(tcp::Error::Aborted)));
                    }
                }
            }
            if !registered {
                self.register_read(cx);
            }
        }
        Poll::Pending
    }

    /// Registers the task of `cx` for the reader's next event, then settles once more so an
    /// event that came in between is not missed. Call after [`Inner::try_recv`] said `Wait`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn register_read(&self, cx: &mut Context<'_>) {
        self.shared.ready.read.register(cx.waker());
    }

    /// Same for a writer waiting for credit.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn register_write(&self, cx: &mut Context<'_>) {
        self.shared.ready.write.register(cx.waker());
    }

    /// `poll_read` of the async stream: never blocks; a read either completes or leaves
    /// every byte where it was (cancellation-safe).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut r = self.reader();
        let mut n = 0;
        for registered in [false, true] {
            match self.try_recv(&mut r, buf, &mut n, false, false) {
                Step::Done(res) => return Poll::Ready(res),
                Step::Wait if registered => return Poll::Pending,
                Step::Wait => self.register_read(cx),
            }
        }
        Poll::Pending
    }

    /// `poll_write` of the async stream.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn poll_send(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let _w = lock(&self.write);
        for registered in [false, true] {
            match self.try_send(data, false) {
                Step::Done(res) => return Poll::Ready(res),
                Step::Wait if registered => return Poll::Pending,
                Step::Wait => self.register_write(cx),
            }
        }
        Poll::Pending
    }

    /// The last handle is gone: `close(2)`, with `SO_LINGER` as Linux: off, FIN in the
    /// background; on with time 0, RST; on with time t, FIN and wait until it is acknowledged,
    /// at most t.
    fn close(&mut self) {
        let unread = {
            let me: &Inner = self;
            let mut r = me.reader();
            me.pump(&mut r);
            r.buffered > 0
        };
        let linger = self
            .opts
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .linger;
        let (linger, wait) = match linger {
            None => (Linger::Background, None),
            Some(t) if t.is_zero() => (Linger::Reset, None),
            Some(t) => {
                let (done, rx) = crossbeam::channel::bounded(1);
                (Linger::Wait(done), Some((rx, t)))
            }
        };
        let sent = self.engine.send(Command::Close {
            token: self.token,
            unread,
            linger,
        });
        if let (true, Some((rx, t))) = (sent, wait) {
            let _ = rx.recv_timeout(t);
        }
    }
}

fn finish_or_block(n: usize) -> io::Result<usize> {
    if n > 0 {
        Ok(n)
    } else {
        Err(would_block())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
