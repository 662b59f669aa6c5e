//! [`TcpListener`]: accepting connections on an application thread, like
//! `std::net::TcpListener`.
//!
//! User side of the threaded API: every engine sends the connections it accepts on the port
//! as `Accepted` messages to one queue, and [`TcpListener::accept`] builds the [`TcpStream`]
//! from one. Messages still queued when the listener is dropped close their connections.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use crossbeam::channel::{Receiver, TryRecvError};

use super::error::{to_io, would_block};
use super::shared::{Accepted, Command, EngineHandle, Ready, SockDefaults};
use super::stack::Stack;
use super::stream::TcpStream;
use crate::io::xdp::SteerProgram;
use crate::tcp;

/// A listening port of a [`Stack`]. Every engine listens on it (any queue may receive a SYN);
/// accepted connections from all of them arrive on one queue. Dropping it stops listening and
/// resets connections not yet accepted.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use xdp_tcp::api::{Stack, TcpListener};
///
/// # fn run(stack: &Stack) -> std::io::Result<()> {
/// let listener = TcpListener::bind(stack, 7)?;
/// loop {
///     let (mut s, peer) = listener.accept()?;
///     std::thread::spawn(move || {
///         let mut buf = [0; 4096];
///         while let Ok(n @ 1..) = s.read(&mut buf) {
///             if s.write_all(&buf[..n]).is_err() {
///                 break;
///             }
///         }
///         eprintln!("{peer} done");
///     });
/// }
/// # }
/// ```
pub struct TcpListener {
    local: SocketAddrV4,
    rx: Receiver<Accepted>,
    /// Our end's identity for the engines: another listener's failed bind must not unlisten us.
    id: u64,
    /// Every engine accepted the port.
    bound: bool,
    engines: Vec<EngineHandle>,
    program: Option<Weak<SteerProgram>>,
    defaults: SockDefaults,
    nonblocking: AtomicBool,
    /// Woken by the engines after each connection they queue.
    ready: Arc<Ready>,
}

impl TcpListener {
    /// Listens on `port` of the stack's address. `EADDRINUSE` when a listener or handler has
    /// it already; `EINVAL` for port 0 (no port is picked for you).
    pub fn bind(stack: &Stack, port: u16) -> io::Result<TcpListener> {
        if port == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (accept, rx) = crossbeam::channel::unbounded();
        let mut listener = TcpListener {
            local: SocketAddrV4::new(stack.addr(), port),
            rx,
            id: stack.next_token(),
            bound: false,
            engines: stack.engines(),
            program: stack.program(),
            defaults: stack.defaults(),
            nonblocking: AtomicBool::new(false),
            ready: Arc::new(Ready::default()),
        };
        for e in &listener.engines {
            let (reply, answer) = crossbeam::channel::bounded(1);
            let sent = e.send(Command::Listen {
                port,
                id: listener.id,
                backlog: listener.defaults.backlog,
                accept: accept.clone(),
                ready: Arc::clone(&listener.ready),
                reply,
            });
            if !sent {
                return Err(to_io(tcp::Error::Aborted));
            }
            answer
                .recv()
                .map_err(|_| to_io(tcp::Error::Aborted))
                .and_then(|r| r)?;
        }
        if let Some(p) = listener.program.as_ref().and_then(Weak::upgrade) {
            p.add_listen_port(port)?;
        }
        listener.bound = true;
        Ok(listener)
    }

    /// Waits for the next connection (`EAGAIN` at once in non-blocking mode;
    /// `ECONNABORTED` once the stack shut down).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let a = if self.nonblocking.load(SeqCst) {
            match self.try_accept()? {
                Some(a) => a,
                None => {
                    // Re-arm the descriptor, then look once more (see `readiness_fd`).
                    self.ready.rearm();
                    self.try_accept()?.ok_or_else(would_block)?
                }
            }
        } else {
            self.rx.recv().map_err(|_| to_io(tcp::Error::Aborted))?
        };
        Ok(self.stream(a))
    }

    fn try_accept(&self) -> io::Result<Option<Accepted>> {
        match self.rx.try_recv() {
            Ok(a) => Ok(Some(a)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(to_io(tcp::Error::Aborted)),
        }
    }

    pub(crate) fn stream(&self, a: Accepted) -> (TcpStream, SocketAddr) {
        let (local, peer) = (a.local, a.peer);
        let s = TcpStream::new(a.take(), local, peer, self.defaults);
        (s, SocketAddr::V4(peer))
    }

    /// The async accept: a connection if one is queued, else registers the task to be woken
    /// by the engine that queues the next.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(TcpStream, SocketAddr)>> {
        use std::task::Poll;
        for registered in [false, true] {
            match self.try_accept() {
                Ok(Some(a)) => return Poll::Ready(Ok(self.stream(a))),
                Err(e) => return Poll::Ready(Err(e)),
                Ok(None) if !registered => self.ready.read.register(cx.waker()),
                Ok(None) => {}
            }
        }
        Poll::Pending
    }

    /// Accepted connections, one after another, as `std::net::TcpListener::incoming`.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<TcpStream>> + '_ {
        std::iter::from_fn(move || Some(self.accept().map(|(s, _)| s)))
    }

    /// A descriptor to `poll` for this listener: an eventfd (close-on-exec) that is readable
    /// when an accept that returned `EAGAIN` in non-blocking mode may succeed. Readable at
    /// first.
    pub fn readiness_fd(&self) -> io::Result<RawFd> {
        self.ready.fd()
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.local))
    }

    /// Non-blocking mode for [`TcpListener::accept`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking.store(nonblocking, SeqCst);
        Ok(())
    }
}

impl AsRawFd for TcpListener {
    /// [`TcpListener::readiness_fd`].
    ///
    /// # Panics
    /// When the eventfd cannot be made (`EMFILE`).
    fn as_raw_fd(&self) -> RawFd {
        self.readiness_fd()
            .expect("eventfd for the listener's readiness")
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let port = self.local.port();
        for e in &self.engines {
            e.send(Command::Unlisten { port, id: self.id });
        }
        if let (true, Some(p)) = (self.bound, self.program.as_ref().and_then(Weak::upgrade)) {
            let _ = p.remove_listen_port(port);
        }
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}
