//! The adapter's state, single-threaded: one [`Host`] on a virtual clock, the sockets and
//! epoll instances packetdrill sees as descriptors, and the datagrams the host sent that
//! packetdrill has not taken yet.
//!
//! Invariants: the clock never goes backwards; every input to the host (a datagram, a timer, an
//! application call) is followed by [`Adapter::flush`], so a datagram is stamped with the
//! virtual time at which the stack sent it and the host's events reach the sockets at once.
//! The host exists once its address is known (see [`Adapter::host_at`]).
//!
//! Threads are the [`Driver`](crate::Driver)'s business: it holds this state under a mutex,
//! advances the clock with [`Adapter::next_deadline`] and [`Adapter::run_timers`], and retries
//! calls that would block. The socket calls are in `sockets`, the options in `sockopt`,
//! readiness (poll, epoll) in `readiness`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;

use xdp_tcp::host::{ConnId, Host, HostConfig};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{IpProtocol, Ipv4Packet, TcpOptions, TcpPacket};

use crate::ffi;
use crate::profile::Profile;
use crate::readiness::Epoll;
use crate::sockets::{Role, Socket};

/// An errno value, as Linux gives it.
pub type Errno = i32;

/// The address the host takes when a call needs one before any bind(2) or inbound packet named
/// it (an active open): packetdrill learns it from our SYN.
const DEFAULT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
/// Room for the largest datagram the host writes: 20 + 60 + MSS, with MSS up to 64 KiB.
const FRAME_LEN: usize = 65536 + 80;
/// Virtual time at which the clock starts, as seen through gettimeofday: a plausible date, so a
/// timestamp printed by packetdrill reads like one.
pub const EPOCH: Duration = Duration::from_secs(1_767_225_600);

/// What a call did: finished with a result, or would have to wait for the network or the clock
/// (only ever returned for a blocking socket; the driver waits and tries again).
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt<T> {
    Done(Result<T, Errno>),
    Block,
}

impl<T> Attempt<T> {
    pub fn err(e: Errno) -> Self {
        Attempt::Done(Err(e))
    }
}

pub struct Adapter {
    pub(crate) profile: Profile,
    now: Instant,
    host: Option<Host>,
    pub(crate) sockets: BTreeMap<i32, Socket>,
    pub(crate) epolls: BTreeMap<i32, Epoll>,
    /// The socket that holds each connection, for the host's events.
    pub(crate) by_conn: HashMap<ConnId, i32>,
    out: VecDeque<(Instant, Vec<u8>)>,
    frame: Vec<u8>,
    /// Ports bound without a port number come from here.
    next_port: u16,
}

impl Adapter {
    pub fn new(profile: Profile) -> Self {
        Adapter {
            profile,
            now: Instant::ZERO,
            host: None,
            sockets: BTreeMap::new(),
            epolls: BTreeMap::new(),
            by_conn: HashMap::new(),
            out: VecDeque::new(),
            frame: vec![0; FRAME_LEN],
            next_port: 40000,
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// The host's address, once known.
    pub fn addr(&self) -> Option<Ipv4Addr> {
        self.host.as_ref().map(Host::addr)
    }

    pub(crate) fn trace(&self, what: std::fmt::Arguments) {
        if self.profile.trace {
            eprintln!(
                "xdp-tcp adapter {:>12.6}: {what}",
                (self.now - Instant::ZERO).as_secs_f64()
            );
        }
    }

    /// The host, created with `addr` (or the profile's `local_ip`, or a default) if it does not
    /// exist yet. Once created its address is fixed: `Err(EADDRNOTAVAIL)` if `addr` names
    /// another.
    pub(crate) fn host_at(&mut self, addr: Option<Ipv4Addr>) -> Result<&mut Host, Errno> {
        let addr = addr.filter(|a| !a.is_unspecified());
        if let Some(h) = &self.host {
            if addr.is_some_and(|a| a != h.addr()) {
                return Err(libc::EADDRNOTAVAIL);
            }
        } else {
            let a = addr.or(self.profile.local_ip).unwrap_or(DEFAULT_ADDR);
            let mut cfg = HostConfig::new(a);
            cfg.tcp = self.profile.tcp_config();
            // virtual time is exact: let timers fire on the microsecond they are due
            cfg.timer_tick = Duration::from_micros(1);
            self.host = Some(Host::new(cfg));
        }
        Ok(self.host.as_mut().expect("created above"))
    }

    /// The host if it exists.
    pub(crate) fn host(&mut self) -> Option<&mut Host> {
        self.host.as_mut()
    }

    pub(crate) fn host_ref(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// A port for a socket that bound port 0 or listens unbound: one no socket holds.
    pub(crate) fn free_port(&mut self) -> u16 {
        loop {
            let p = self.next_port;
            self.next_port = if p >= 60999 { 40000 } else { p + 1 };
            if !self.sockets.values().any(|s| s.port() == Some(p)) {
                return p;
            }
        }
    }

    /// Takes everything the host wants to send and every event it raised: datagrams are queued
    /// with the current time, events bump their socket's generation (what edge-triggered epoll
    /// reports).
    pub(crate) fn flush(&mut self) {
        let Some(host) = self.host.as_mut() else {
            return;
        };
        while let Some(tx) = host.poll_transmit(self.now, &mut self.frame) {
            let pkt = self.frame[..tx.len].to_vec();
            self.out.push_back((self.now, pkt));
        }
        while let Some((id, _ev)) = host.poll_event() {
            if let Some(s) = self
                .by_conn
                .get(&id)
                .and_then(|fd| self.sockets.get_mut(fd))
            {
                s.generation += 1;
            }
        }
        if self.profile.trace {
            let n = self.out.len();
            if n > 0 {
                self.trace(format_args!("{n} datagram(s) waiting to be sniffed"));
            }
        }
    }

    /// When the host next needs the clock: a timer's deadline (possibly already past), or
    /// `None` when no timer is armed.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.flush();
        self.host.as_mut()?.poll_timeout()
    }

    /// Moves the clock to `t` (never backwards) and runs every timer due by then.
    pub fn run_timers(&mut self, t: Instant) {
        self.now = self.now.max(t);
        if let Some(h) = self.host.as_mut() {
            h.handle_timeout(self.now);
        }
        self.flush();
    }

    /// Moves the clock to `t` without running timers: the driver has run every timer due
    /// before it.
    pub(crate) fn set_now(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// One inbound datagram from packetdrill (IPv4, checksums filled in).
    pub fn receive_datagram(&mut self, bytes: &[u8]) -> Result<(), String> {
        let ip = Ipv4Packet::new_checked(bytes).map_err(|e| format!("bad IPv4 datagram: {e:?}"))?;
        if ip.version() != 4 {
            return Err("only IPv4 datagrams are supported (the stack is IPv4 only)".into());
        }
        let dst = ip.dst_addr();
        // a SYN for one of our listeners: the connection it starts takes that socket's options
        let syn = (ip.protocol() == IpProtocol::Tcp)
            .then(|| TcpPacket::new_checked(ip.payload()).ok())
            .flatten()
            .filter(|t| t.flags().syn() && !t.flags().ack() && !t.flags().rst())
            .map(|t| {
                let ts = TcpOptions::parse(t.options()).is_ok_and(|o| o.timestamp.is_some());
                (t.src_port(), t.dst_port(), ts)
            });
        let listener = syn.and_then(|(_, dport, _)| self.listener_on(dport));
        // before any bind(2) or connect(2), the first datagram names our address; later ones
        // for another address are the host's to drop
        self.host_at(self.addr().or(Some(dst)))
            .map_err(|e| format!("no host (errno {e})"))?;
        let mut new_conn = None;
        if let (Some((sport, dport, peer_ts)), Some(lfd)) = (syn, listener) {
            let cfg = self.sockets[&lfd].tcp_config(&self.profile);
            let remote = std::net::SocketAddrV4::new(ip.src_addr(), sport);
            let host = self.host.as_mut().expect("created above");
            host.set_tcp_config(cfg);
            if host.lookup(remote, dport).is_none() {
                new_conn = Some((remote, dport, lfd, peer_ts && cfg.timestamps));
            }
        }
        let now = self.now;
        let verdict = self
            .host
            .as_mut()
            .expect("created above")
            .handle_ipv4(now, bytes);
        self.trace(format_args!(
            "datagram in ({} bytes): {verdict:?}",
            bytes.len()
        ));
        if let Some((remote, dport, lfd, ts)) = new_conn {
            self.start_passive(remote, dport, lfd, ts);
        }
        self.flush();
        Ok(())
    }

    /// The listening socket on `port`, if any.
    fn listener_on(&self, port: u16) -> Option<i32> {
        self.sockets
            .iter()
            .find(|(_, s)| matches!(s.role, Role::Listening { port: p } if p == port))
            .map(|(fd, _)| *fd)
    }

    /// A listener just took a SYN: give the new connection the initial receive window the
    /// profile wants before its SYN-ACK leaves.
    fn start_passive(&mut self, remote: std::net::SocketAddrV4, port: u16, lfd: i32, ts: bool) {
        let (rcvbuf, mss) = {
            let s = &self.sockets[&lfd];
            (s.opts.rcvbuf_bytes(), s.tcp_config(&self.profile).mss)
        };
        let Some(window) = self.profile.initial_window(rcvbuf, mss, ts) else {
            return;
        };
        let host = self.host.as_mut().expect("a listener implies a host");
        if let Some(id) = host.lookup(remote, port) {
            host.with_conn(id, |c| c.set_recv_capacity(window));
        }
    }

    /// The oldest datagram the host sent and packetdrill has not taken, with its send time.
    pub fn take_datagram(&mut self) -> Option<(Instant, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Datagrams waiting to be taken.
    pub fn datagrams_waiting(&self) -> usize {
        self.out.len()
    }

    /// A new kernel descriptor to stand for a socket or epoll instance.
    pub(crate) fn new_fd(&self) -> Result<i32, Errno> {
        ffi::kernel_fd()
    }

    /// Gives up every socket and epoll instance at the end of a run. packetdrill has already
    /// closed the descriptors of sockets the script left open (with close(2), not through us),
    /// so only our epoll descriptors, which it does not close, are closed here.
    pub fn teardown(&mut self) {
        for (&fd, _) in std::mem::take(&mut self.epolls).iter() {
            ffi::close_fd(fd);
        }
        let socks = std::mem::take(&mut self.sockets);
        if let Some(h) = self.host.as_mut() {
            for s in socks.values() {
                match s.role {
                    Role::Listening { port } => h.unlisten(port),
                    Role::Conn { id } => h.abort(id),
                    Role::Fresh => {}
                }
            }
        }
        self.by_conn.clear();
    }
}
