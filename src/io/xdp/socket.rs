//! One AF_XDP socket bound to one (interface, queue), with its own UMEM, as a [`PacketIo`].
//!
//! Frames flow Free -> Fill -> (kernel rx) -> App -> Free for reception and
//! Free -> App -> Tx -> (kernel tx, completion) -> Free for transmission; see [`super::umem`].
//! Received frames are recycled to the fill ring at the end of each [`PacketIo::recv_batch`];
//! completions are reaped at the start of each [`PacketIo::send_batch`].
//!
//! Wake-ups: in copy mode the kernel transmits only from `sendto`, and a `sendto` moves at most
//! a small batch (32 descriptors in current kernels), so every call that finds the tx ring
//! non-empty kicks again. With `need_wakeup` the kick is skipped when the kernel says it is
//! awake (zero-copy drivers); the fill ring is kicked with a zero-timeout `poll` when rx comes
//! up empty and the kernel asks for it.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::str::FromStr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::socket::XdpStatistics;
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue};

/// Most frames an rx batch leaves missing from the fill ring, and most sent frames left waiting
/// on the completion ring, before they are moved in one go.
const RING_BATCH: u32 = 32;

use super::umem::{AccountingError, FrameAccounting, FrameLocation, FramePool, UmemConfig};
use super::wake::{kick_tx, sleep_poll, Waker};
use crate::io::{PacketIo, RxPass};

/// Copy or zero-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy if the driver offers it, else copy.
    #[default]
    Auto,
    Copy,
    ZeroCopy,
}

/// Socket settings.
#[derive(Clone, Debug)]
pub struct XdpSocketConfig {
    pub umem: UmemConfig,
    /// Rx ring entries, a power of two.
    pub rx_ring: u32,
    /// Tx ring entries, a power of two.
    pub tx_ring: u32,
    pub bind: BindMode,
    /// Bind with `XDP_USE_NEED_WAKEUP` so the kernel tells us when a kick is needed.
    pub need_wakeup: bool,
    /// How long to keep retrying a bind that fails with EBUSY (a socket on the same queue closed
    /// moments ago: measured 25-75 ms on veth).
    pub busy_retry: Duration,
}

impl Default for XdpSocketConfig {
    fn default() -> Self {
        XdpSocketConfig {
            umem: UmemConfig::default(),
            rx_ring: 2048,
            tx_ring: 2048,
            bind: BindMode::Auto,
            need_wakeup: true,
            busy_retry: Duration::from_millis(500),
        }
    }
}

/// Datapath counters of one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// `sendto` kicks issued.
    pub tx_kicks: u64,
    /// Fill-ring wake-ups (`poll`) issued.
    pub fill_kicks: u64,
    /// `send_batch` found no free frame for a buffer it could otherwise have offered.
    pub tx_no_frame: u64,
    /// Buffers the caller returned with a length of 0 or past the capacity: not sent.
    pub tx_bad_len: u64,
    /// Bind attempts that failed with EBUSY before one succeeded.
    pub bind_busy_retries: u32,
    /// Sleeps in `wait_rx` ended by a [`Waker`].
    pub wakeups: u64,
}

/// The kernel's counters of one AF_XDP socket (`getsockopt(SOL_XDP, XDP_STATISTICS)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames the kernel dropped for other reasons (no room in the UMEM, ...).
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the tx ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty when woken to send.
    pub tx_ring_empty_descs: u64,
}

impl From<&XdpStatistics> for RingStats {
    fn from(s: &XdpStatistics) -> Self {
        RingStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: s.tx_ring_empty_descs(),
        }
    }
}

/// What [`PacketIo::device_stats`] reports for an AF_XDP socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// The socket's own datapath counters.
    pub socket: SocketStats,
    /// The kernel's ring and drop counters; `None` if the `getsockopt` failed.
    pub ring: Option<RingStats>,
}

/// An AF_XDP socket on one queue with a private UMEM.
#[derive(Debug)]
pub struct XdpSocket {
    // Field order matters for drop: the queues (each holding the socket) go before the UMEM
    // handle in `pool`, though xsk-rs keeps the UMEM alive for them regardless.
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    pool: FramePool,
    scratch: Vec<FrameDesc>,
    fill_target: u32,
    /// An rx batch refills only once this many frames are missing from `fill_target`: lending
    /// frames one at a time cost ~150 instructions per received frame (callgrind, ping-pong),
    /// a batch of them about as much as one.
    refill_batch: u32,
    tx_ring: u32,
    queue_id: u32,
    zero_copy: bool,
    need_wakeup: bool,
    bind_time: Duration,
    stats: SocketStats,
    /// Lets other threads end a sleep in [`PacketIo::wait_rx`], with the count of their wake-ups
    /// seen at the start of the current iteration.
    waker: Option<(Waker, u64)>,
}

/// Sets `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_errno(e: &xsk_rs::socket::SocketCreateError, code: i32) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
        == Some(code)
}

fn create_error(e: &xsk_rs::socket::SocketCreateError, ifname: &str, queue_id: u32) -> io::Error {
    let os = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error);
    let msg = format!("AF_XDP socket on {ifname} queue {queue_id}: {e}");
    match os {
        Some(code) => io::Error::new(
            io::Error::from_raw_os_error(code).kind(),
            format!("{msg}: {}", io::Error::from_raw_os_error(code)),
        ),
        None => io::Error::other(msg),
    }
}

impl XdpSocket {
    /// Creates the UMEM and binds a socket to `ifname` queue `queue_id`, then fills the fill ring.
    /// The socket receives nothing until its fd is registered in the XDP program's XSKMAP
    /// ([`super::SteerProgram::register_socket`]).
    pub fn open(ifname: &str, queue_id: u32, config: &XdpSocketConfig) -> io::Result<Self> {
        let pool = FramePool::new(&config.umem)?;
        let qs = |n: u32| {
            QueueSize::new(n)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        };
        let iface = Interface::from_str(ifname)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let build = |zero_copy: bool| -> io::Result<SocketConfig> {
            let mut bind = if zero_copy {
                BindFlags::XDP_ZEROCOPY
            } else {
                BindFlags::XDP_COPY
            };
            if config.need_wakeup {
                bind |= BindFlags::XDP_USE_NEED_WAKEUP;
            }
            Ok(SocketConfig::builder()
                .rx_queue_size(qs(config.rx_ring)?)
                .tx_queue_size(qs(config.tx_ring)?)
                // Our own program is attached by `SteerProgram`; libxdp must not load its own.
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(bind)
                .build())
        };

        let mut zero_copy = config.bind != BindMode::Copy;
        let started = Instant::now();
        let mut busy_retries = 0u32;
        let (tx, rx, rings) = loop {
            let cfg = build(zero_copy)?;
            // SAFETY: the UMEM is not shared with any other socket (each XdpSocket owns its
            // pool), and INHIBIT_PROG_LOAD is set, which is the contract of `Socket::new`.
            match unsafe { Socket::new(cfg, pool.umem(), &iface, queue_id) } {
                Ok(ok) => break ok,
                Err(e) if is_errno(&e, libc::EBUSY) && started.elapsed() < config.busy_retry => {
                    busy_retries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e)
                    if zero_copy
                        && config.bind == BindMode::Auto
                        && (is_errno(&e, libc::EOPNOTSUPP) || is_errno(&e, libc::EINVAL)) =>
                {
                    zero_copy = false;
                }
                Err(e) => return Err(create_error(&e, ifname, queue_id)),
            }
        };
        // The UMEM's socket, which a private UMEM's first socket is, was opened close-on-exec
        // (vendor/xsk-rs: libxdp itself opens it without SOCK_CLOEXEC, and a child exec'd in
        // between kept it and the queue). Idempotent; kept in case the patch is ever lost.
        set_cloexec(rx.fd().as_raw_fd())?;
        let (fill, comp) = rings.ok_or_else(|| {
            io::Error::other("xsk-rs returned no fill/completion rings for a private UMEM")
        })?;

        let fill_target = config
            .umem
            .fill_ring
            .min(config.umem.frame_count / 2)
            .max(1);
        let scratch_len = [
            config.rx_ring,
            config.tx_ring,
            config.umem.fill_ring,
            config.umem.comp_ring,
        ]
        .into_iter()
        .max()
        .unwrap_or(1) as usize;
        let mut sock = XdpSocket {
            tx,
            rx,
            fill,
            comp,
            pool,
            scratch: vec![FrameDesc::default(); scratch_len],
            fill_target,
            refill_batch: (fill_target / 8).clamp(1, RING_BATCH),
            tx_ring: config.tx_ring,
            queue_id,
            zero_copy: false,
            need_wakeup: config.need_wakeup,
            bind_time: started.elapsed(),
            stats: SocketStats {
                bind_busy_retries: busy_retries,
                ..Default::default()
            },
            waker: None,
        };
        sock.zero_copy = sock.query_zero_copy()?;
        sock.refill();
        Ok(sock)
    }

    /// Asks the kernel whether the bound socket is in zero-copy mode (XDP_OPTIONS).
    fn query_zero_copy(&self) -> io::Result<bool> {
        let mut opts = libc::xdp_options { flags: 0 };
        let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `opts`, which is that large.
        let ret = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                (&mut opts as *mut libc::xdp_options).cast(),
                &mut len,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }

    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Whether the kernel runs this socket in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Time `open` spent binding, EBUSY retries included.
    pub fn bind_time(&self) -> Duration {
        self.bind_time
    }

    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }

    /// The kernel's drop counters for this socket (rx ring full, fill ring empty, invalid
    /// descriptors...).
    pub fn kernel_stats(&self) -> io::Result<XdpStatistics> {
        self.rx.fd().xdp_statistics()
    }

    /// The frame books; see [`FramePool::check_accounting`].
    pub fn check_accounting(&self) -> Result<FrameAccounting, AccountingError> {
        self.pool.check_accounting()
    }

    pub fn accounting(&self) -> FrameAccounting {
        self.pool.accounting()
    }

    /// Refills once `refill_batch` frames are missing from the target. Frames leave `Fill` only
    /// through the rx ring; a refill that found too few free frames leaves the deficit, and a
    /// later call tries again.
    fn refill_if_short(&mut self) {
        let missing = self
            .fill_target
            .saturating_sub(self.pool.count(FrameLocation::Fill));
        if missing >= self.refill_batch {
            self.refill();
        }
    }

    /// Lends free frames to the kernel until `fill_target` are lent. Returns how many were added.
    pub fn refill(&mut self) -> usize {
        let lent = self.pool.count(FrameLocation::Fill);
        let want = self.fill_target.saturating_sub(lent) as usize;
        let want = want.min(self.pool.free_len()).min(self.scratch.len());
        if want == 0 {
            return 0;
        }
        let room = self.fill.nb_free(want as u32) as usize;
        let n = want.min(room) as u32;
        let pool = &mut self.pool;
        let lend = || {
            let i = pool
                .take_free(FrameLocation::Fill)
                .expect("free_len checked above");
            pool.desc(i).addr() as u64
        };
        // SAFETY: the addresses are frames of the UMEM this fill ring belongs to, each moved to
        // `Fill` as it is written (and only then: `lend` runs once per slot reserved), so no
        // user-space reference to their memory exists until they come back through the rx ring.
        unsafe { self.fill.produce_with(n, lend) }
    }

    /// Moves completed transmissions back to the free list. Returns how many.
    pub fn reclaim_completions(&mut self) -> usize {
        let max = self.pool.count(FrameLocation::Tx);
        if max == 0 {
            return 0;
        }
        let pool = &mut self.pool;
        let done = |addr: u64| {
            pool.complete(addr as usize);
        };
        // SAFETY: the completion ring only returns addresses we submitted on this socket's tx
        // ring, read as plain values.
        unsafe { self.comp.consume_each(max, done) }
    }

    /// Kicks the kernel if transmit descriptors are waiting in the tx ring.
    pub fn flush(&mut self) {
        if self.pool.count(FrameLocation::Tx) == 0 {
            return;
        }
        let queued = self.tx_ring - self.tx.nb_free_exact();
        if queued > 0 && (!self.need_wakeup || self.tx.needs_wakeup()) {
            self.stats.tx_kicks += 1;
            // Transient conditions (EAGAIN, EBUSY, ENOBUFS, ENETDOWN) are ignored, as xsk-rs
            // does; the descriptors stay queued and the next flush retries.
            kick_tx(self.tx.fd().as_raw_fd());
        }
    }

    /// Blocks up to `timeout` for a received frame. Flushes tx and refills first (to within
    /// `refill_batch` of the target), so sleeping never strands queued work.
    pub fn poll_rx(&mut self, timeout: Duration) -> io::Result<bool> {
        self.flush();
        self.refill_if_short();
        if self.rx.nb_avail(1) > 0 {
            return Ok(true);
        }
        let rx = libc::pollfd {
            fd: self.rx.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let Some((waker, seen)) = &self.waker else {
            return match sleep_poll(&mut [rx], timeout) {
                Ok(n) => Ok(n > 0),
                // as xsk-rs's poll did: a signal ends the sleep with nothing received
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
                Err(e) => Err(e),
            };
        };
        let state = &waker.0;
        state.asleep.store(true, SeqCst);
        if state.asked.load(SeqCst) != *seen {
            // work was queued after this iteration began: the application may not have seen it
            state.asleep.store(false, SeqCst);
            return Ok(true);
        }
        let mut fds = [
            rx,
            libc::pollfd {
                fd: state.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = sleep_poll(&mut fds, timeout);
        state.asleep.store(false, SeqCst);
        let n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(e),
        };
        if fds[1].revents & libc::POLLIN != 0 {
            self.stats.wakeups += 1;
            // reset the eventfd's counter (non-blocking; empty is fine)
            let _ = (&state.fd).read(&mut [0u8; 8]);
        }
        Ok(n > 0)
    }

    /// Lets `waker` end this socket's sleeps in [`PacketIo::wait_rx`] (see [`Waker::wake`]).
    pub fn set_waker(&mut self, waker: Waker) {
        let seen = waker.0.asked.load(SeqCst);
        self.waker = Some((waker, seen));
    }
}

impl AsRawFd for XdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }
}

impl PacketIo for XdpSocket {
    // Never inlined: `deploy/profile` counts the engine's iterations by the calls of this
    // function (once per iteration); inlined into `Engine::poll` it would find none.
    #[inline(never)]
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, mut f: F) -> usize {
        // wake-ups asked for by now will be seen by this iteration's application
        if let Some((w, seen)) = &mut self.waker {
            *seen = w.0.asked.load(SeqCst);
        }
        self.flush();
        let max = budget.min(u32::MAX as usize) as u32;
        let (pool, stats) = (&mut self.pool, &mut self.stats);
        let handle = |desc: FrameDesc| {
            pool.receive(desc.addr(), |umem| {
                // SAFETY: the frame was consumed from the rx ring of this UMEM, so the kernel has
                // finished writing it and will not touch it until we lend it again; it was in
                // `Fill` (`receive` checked) and is the caller's until `receive` returns it to
                // the free list, so no other reference to it exists; the slice does not outlive
                // `f`.
                let data = unsafe { umem.data(&desc) };
                stats.rx_frames += 1;
                stats.rx_bytes += data.len() as u64;
                f(data.contents());
            });
        };
        // SAFETY: the descriptors are plain values read out of the rx ring of this socket's UMEM,
        // addresses of its frames.
        let n = unsafe { self.rx.consume_each(max, handle) };
        self.refill_if_short();
        if n == 0 && self.need_wakeup && self.fill.needs_wakeup() {
            self.stats.fill_kicks += 1;
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
        n
    }

    fn recv_batch_ahead<F: FnMut(&[u8], RxPass)>(
        &mut self,
        budget: usize,
        passes: u8,
        mut f: F,
    ) -> usize {
        if let Some((w, seen)) = &mut self.waker {
            *seen = w.0.asked.load(SeqCst);
        }
        self.flush();
        let max = budget.min(self.scratch.len());
        // SAFETY: the descriptors written are plain values copied out of the rx ring of this
        // socket's UMEM.
        let n = if max == 0 {
            0
        } else {
            unsafe { self.rx.consume(&mut self.scratch[..max]) }
        };
        // Every frame of the batch goes to `App` first (kept at the front of `scratch`), so the
        // look-ahead passes and the handling read the same frames.
        let mut held = 0;
        for k in 0..n {
            let desc = self.scratch[k];
            let Some(i) = self.pool.index_of(desc.addr()) else {
                self.pool.record_violation();
                continue;
            };
            if self
                .pool
                .transition(i, FrameLocation::Fill, FrameLocation::App)
            {
                self.scratch[held] = desc;
                held += 1;
            }
        }
        for pass in 0..passes {
            for desc in &self.scratch[..held] {
                // SAFETY: as in `recv_batch`: consumed from the rx ring of this UMEM, so the
                // kernel has finished writing it and will not touch it until we lend it again;
                // it is in `App` until the handling loop below releases it, and the only other
                // reference to it is a shared one of the same kind; the slice does not outlive
                // `f`.
                let data = unsafe { self.pool.umem().data(desc) };
                f(data.contents(), RxPass::Ahead(pass));
            }
        }
        for k in 0..held {
            let desc = self.scratch[k];
            {
                // SAFETY: as above; this is the frame's last use before its release.
                let data = unsafe { self.pool.umem().data(&desc) };
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += data.len() as u64;
                f(data.contents(), RxPass::Handle);
            }
            if let Some(i) = self.pool.index_of(desc.addr()) {
                self.pool.release(i, FrameLocation::App);
            }
        }
        self.refill_if_short();
        if n == 0 && self.need_wakeup && self.fill.needs_wakeup() {
            self.stats.fill_kicks += 1;
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
        n
    }

    fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        self.send_batch_hinted(budget, |buf| f(buf).map(|len| (len, true)))
    }

    fn send_batch_hinted<F: FnMut(&mut [u8]) -> Option<(usize, bool)>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        let want = budget.min(self.scratch.len());
        // Completions are taken back in batches: once per transmitted frame cost ~120
        // instructions a frame (ping-pong). The completion ring holds every frame in `Tx`, so it
        // cannot overflow while they wait.
        if self.pool.count(FrameLocation::Tx) >= RING_BATCH || self.pool.free_len() < want {
            self.reclaim_completions();
        }
        let cap = self.pool.frame_capacity();
        let (pool, stats) = (&mut self.pool, &mut self.stats);
        let mut more = true;
        // The next frame written: a free frame goes to `App`, to `f`, then to `Tx` if `f` wrote
        // a packet into it (back to the free list otherwise).
        let next = || {
            while more {
                let lent = pool.lend_free(|umem, mut desc| {
                    // SAFETY: the frame was just taken off the free list: the kernel holds no
                    // reference to it (it is in no ring) and neither does any other code until
                    // `lend_free` moves it to `Tx` or back to the free list.
                    let mut data = unsafe { umem.data_mut(&mut desc) };
                    data.cursor().set_pos(cap);
                    match f(data.contents_mut()) {
                        Some((len, m)) if len > 0 && len <= cap => {
                            more = m;
                            data.cursor().set_pos(len);
                            stats.tx_bytes += len as u64;
                            // written, and the slice into it gone: it goes to the tx ring
                            (true, Some(Some(desc)))
                        }
                        Some((_, m)) => {
                            more = m;
                            stats.tx_bad_len += 1;
                            (false, None)
                        }
                        None => (false, Some(None)),
                    }
                });
                match lent {
                    None => {
                        stats.tx_no_frame += 1;
                        return None;
                    }
                    Some(Some(sent)) => return sent,
                    Some(None) => {}
                }
            }
            None
        };
        // SAFETY: the descriptors are frames of this socket's UMEM, in `Tx`: no user-space
        // reference to their memory remains until they come back on the completion ring.
        let n = unsafe { self.tx.produce_while(want as u32, next) };
        self.stats.tx_frames += n as u64;
        self.flush();
        n
    }

    fn frame_capacity(&self) -> usize {
        self.pool.frame_capacity()
    }

    fn wait_rx(&mut self, timeout: Duration) -> bool {
        self.poll_rx(timeout).unwrap_or(true)
    }

    fn device_stats(&self) -> Option<DeviceStats> {
        Some(DeviceStats {
            socket: self.stats,
            ring: self.kernel_stats().ok().as_ref().map(RingStats::from),
        })
    }
}
