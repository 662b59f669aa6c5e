//! tokio integration (cargo feature `tokio`): [`TcpStream`] with tokio's `AsyncRead` and
//! `AsyncWrite`, and an async [`TcpListener`], over the same connections as the std-like API.
//!
//! Nothing polls: a task that finds no bytes (or no send credit, or no connection to accept)
//! registers its waker in the socket's slot and returns `Pending`; the engine wakes it right
//! after it sent the socket something (bytes, end of stream, an error) or gave credit back, and
//! the task looks once more after registering so nothing that came in between is missed. The
//! engine never blocks and takes no lock for it (an atomic waker slot per direction).
//!
//! - **Cancellation-safe reads**: `poll_read` either copies bytes out or leaves them all where
//!   they were, so dropping a `read` future (a `select!` branch, a `timeout`) loses nothing.
//! - **Backpressure**: `poll_write` takes what the send credit allows (twice `SO_SNDBUF`
//!   written and not yet acknowledged, see [`crate::api`]) and is `Pending` without it.
//! - **Errors** are `std::io::Error`s with Linux's errno, as in the std-like API
//!   ([`crate::api::error`]); `Ok(0)` at end of stream.
//! - `poll_shutdown` sends FIN after the bytes written; dropping the stream closes it as
//!   [`crate::api::TcpStream`] does (RST if received bytes were never read). `SO_LINGER` with a
//!   time would block the runtime's thread in the drop: set it only on blocking streams.
//!
//! One task per direction: like tokio's own `TcpStream`, each direction keeps one waker, so
//! two tasks reading the same stream at once would steal each other's wake-ups.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use xdp_tcp::api::{tokio::TcpListener, Stack};
//!
//! # async fn run(stack: &Stack) -> std::io::Result<()> {
//! let listener = TcpListener::bind(stack, 7)?;
//! loop {
//!     let (mut s, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut buf = [0; 4096];
//!         while let Ok(n @ 1..) = s.read(&mut buf).await {
//!             if s.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```

use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stack::Stack;
use super::stream;

/// A connection of a [`Stack`] for tokio tasks. [`TcpStream::std`] reaches the std-like
/// stream beneath for its settings (`set_nodelay`, buffer sizes, `tcp_info`, ...).
#[derive(Debug)]
pub struct TcpStream {
    inner: stream::TcpStream,
}

impl TcpStream {
    /// Opens a connection to `addr` (each IPv4 address `std::net` resolves it to, in turn).
    /// Dropping the future before it completes abandons the attempt (the connection is
    /// reset). Wrap it in `tokio::time::timeout` to bound it.
    pub async fn connect(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for a in stream::v4_addrs(addr)? {
            let s = match stream::TcpStream::start_connect(stack, stack.pick_engine(), a) {
                Ok(s) => s,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match poll_fn(|cx| s.inner().poll_connected(cx)).await {
                Ok(()) => return Ok(TcpStream { inner: s }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ECONNABORTED)))
    }

    /// The std-like stream as an async one (its blocking settings do not apply to the async
    /// calls, which never block).
    pub fn from_std(inner: stream::TcpStream) -> TcpStream {
        TcpStream { inner }
    }

    /// The std-like stream beneath, for its settings.
    pub fn std(&self) -> &stream::TcpStream {
        &self.inner
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_nodelay(nodelay)
    }

    /// A reading and a writing half, for two tasks: full duplex. The connection closes when
    /// both are dropped; the writing half's `shutdown` sends the FIN.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let w = TcpStream {
            inner: self.inner.try_clone().expect("try_clone never fails"),
        };
        (OwnedReadHalf(self), OwnedWriteHalf(w))
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.inner, cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.inner().poll_send(cx, data)
    }

    /// The bytes are in the stack's hands once written.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.shutdown(Shutdown::Write))
    }
}

fn poll_read(
    s: &stream::TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let n = match s.inner().poll_recv(cx, buf.initialize_unfilled()) {
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Pending => return Poll::Pending,
    };
    buf.advance(n);
    Poll::Ready(Ok(()))
}

/// The reading half of a [`TcpStream`].
#[derive(Debug)]
pub struct OwnedReadHalf(TcpStream);

/// The writing half of a [`TcpStream`].
#[derive(Debug)]
pub struct OwnedWriteHalf(TcpStream);

impl OwnedReadHalf {
    /// The stream, for its settings and addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.0
    }
}

impl OwnedWriteHalf {
    /// The stream, for its settings and addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.0
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read(&self.0.inner, cx, buf)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.inner.inner().poll_send(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.inner.shutdown(Shutdown::Write))
    }
}

/// A listening port for tokio tasks: [`TcpListener::accept`] waits without blocking a thread.
#[derive(Debug)]
pub struct TcpListener {
    inner: super::TcpListener,
}

impl TcpListener {
    /// Listens on `port` (as [`super::TcpListener::bind`]; the engines answer at once, so this
    /// is not async).
    pub fn bind(stack: &Stack, port: u16) -> io::Result<TcpListener> {
        super::TcpListener::bind(stack, port).map(|inner| TcpListener { inner })
    }

    /// The next connection. Cancellation-safe: a connection not taken stays queued.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, peer) = poll_fn(|cx| self.inner.poll_accept(cx)).await?;
        Ok((TcpStream { inner: s }, peer))
    }

    /// `accept` for hand-written futures.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        self.inner
            .poll_accept(cx)
            .map_ok(|(s, peer)| (TcpStream { inner: s }, peer))
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
