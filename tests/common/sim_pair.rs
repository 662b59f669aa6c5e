//! Two hosts on the simulator joined by one link each way: the set-up every simulator suite
//! shares, so a suite states only what it changes.
//!
//! [`Pair::builder`] takes the TCP configuration both sides start from; its methods change one
//! side's host configuration, the link model (both directions), the link seed and scripted
//! filters per direction. The client is host [`Pair::c`] at [`CLIENT`], the server host
//! [`Pair::s`] at [`SERVER`]; the server listens on [`PORT`] from the first
//! [`Pair::start_connect`] on (an application on the server may listen there itself instead,
//! if it never calls it).
//!
//! Everything is deterministic: the same builder calls give the same packets at the same virtual
//! times, so tests may assert exact times. Run the network through [`Pair::net`] or
//! [`Pair::run_until`]; a rig that keeps its own loop may take the parts apart
//! (`let Pair { net, c, s, .. } = pair`) once connected.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::{ConnId, DropReason, Host, HostConfig};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp;
use xdp_tcp::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const PORT: u16 = 80;

/// Listen backlog of the server; far above what any of these tests opens at once.
const BACKLOG: usize = 16;

type FrameFilter = Box<dyn FnMut(&[u8]) -> Verdict>;
type Wiring = Box<dyn FnOnce(&mut Network, usize, usize)>;

/// How the pair is made; see the [module docs](self).
pub struct PairBuilder {
    client: HostConfig,
    server: HostConfig,
    link: LinkConfig,
    seed: u64,
    to_server: Option<FrameFilter>,
    to_client: Option<FrameFilter>,
    wire: Option<Wiring>,
}

impl PairBuilder {
    /// The link model of both directions; an ideal 1 ms link unless set.
    pub fn link(mut self, link: LinkConfig) -> Self {
        self.link = link;
        self
    }

    /// Seeds the links' random models (each direction gets its own seed derived from it) and the
    /// contents of [`Pair::transfer`]'s streams; 1 unless set.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Changes the client's host configuration (its `tcp` included).
    pub fn client(mut self, f: impl FnOnce(&mut HostConfig)) -> Self {
        f(&mut self.client);
        self
    }

    /// Changes the server's host configuration (its `tcp` included).
    pub fn server(mut self, f: impl FnOnce(&mut HostConfig)) -> Self {
        f(&mut self.server);
        self
    }

    /// A scripted filter on the client-to-server link (see `Link::set_filter`).
    pub fn filter_to_server(mut self, f: impl FnMut(&[u8]) -> Verdict + 'static) -> Self {
        self.to_server = Some(Box::new(f));
        self
    }

    /// A scripted filter on the server-to-client link.
    pub fn filter_to_client(mut self, f: impl FnMut(&[u8]) -> Verdict + 'static) -> Self {
        self.to_client = Some(Box::new(f));
        self
    }

    /// Builds the path between client and server itself (routers, links, gateways, filters)
    /// instead of the direct link of [`PairBuilder::link`]; the link model, seed and filters
    /// of the builder are then not used.
    pub fn wire(mut self, f: impl FnOnce(&mut Network, usize, usize) + 'static) -> Self {
        self.wire = Some(Box::new(f));
        self
    }

    pub fn build(self) -> Pair {
        let mut net = Network::new();
        let c = net.add_host(self.client);
        let s = net.add_host(self.server);
        match self.wire {
            Some(wire) => wire(&mut net, c, s),
            None => {
                net.connect(c, s, self.link, self.seed);
                net.link(c, s).unwrap().set_filter(self.to_server);
                net.link(s, c).unwrap().set_filter(self.to_client);
            }
        }
        Pair {
            net,
            c,
            s,
            seed: self.seed,
        }
    }
}

/// Two hosts and the links between them; see the [module docs](self).
pub struct Pair {
    pub net: Network,
    /// The client's host index.
    pub c: usize,
    /// The server's host index.
    pub s: usize,
    pub seed: u64,
}

impl Pair {
    /// Both sides' connections configured with `tcp`; change the rest with the builder.
    pub fn builder(tcp: tcp::Config) -> PairBuilder {
        // fixed secrets, different on each side: a simulated run replays exactly
        let mut client = HostConfig::new(CLIENT);
        client.tcp = tcp;
        client.tcp.secret = tcp::Secret::from_seed(1);
        let mut server = HostConfig::new(SERVER);
        server.tcp = tcp;
        server.tcp.secret = tcp::Secret::from_seed(2);
        PairBuilder {
            client,
            server,
            link: LinkConfig::ideal(Duration::from_millis(1)),
            seed: 1,
            to_server: None,
            to_client: None,
            wire: None,
        }
    }

    /// [`Pair::builder`] for a seeded bulk run: the links' seed and the streams from `seed`,
    /// and ISN secrets derived from it that differ between the sides.
    pub fn seeded(tcp: tcp::Config, seed: u64) -> PairBuilder {
        Pair::builder(tcp)
            .seed(seed)
            .client(|h| h.tcp.secret = tcp::Secret::from_seed(seed))
            .server(|h| h.tcp.secret = tcp::Secret::from_seed(seed.rotate_left(17)))
    }

    /// Both sides configured with `tcp` on an ideal 1 ms link.
    pub fn new(tcp: tcp::Config) -> Pair {
        Pair::builder(tcp).build()
    }

    pub fn client(&mut self) -> &mut Host {
        self.net.host(self.c)
    }

    pub fn server(&mut self) -> &mut Host {
        self.net.host(self.s)
    }

    /// Steps until `done` holds, for at most `limit` of virtual time from now; whether it held.
    /// `done` runs after every step, so it is also where an application acts.
    pub fn run_until(&mut self, limit: Duration, done: impl FnMut(&mut Network) -> bool) -> bool {
        let until = self.net.now() + limit;
        self.net.run_until(until, done)
    }

    /// The server listens on [`PORT`] (if it does not yet) and the client connects to it now;
    /// nothing runs. Returns the client's connection.
    pub fn start_connect(&mut self) -> ConnId {
        self.server().listen(PORT, BACKLOG);
        let now = self.net.now();
        self.client()
            .connect(now, SocketAddrV4::new(SERVER, PORT))
            .expect("a free ephemeral port")
    }

    /// [`Pair::start_connect`], then runs until the server accepted the connection and the
    /// client's end is established, for at most `limit`. Returns (client, server) connections,
    /// or `None` if the handshake did not finish in time.
    pub fn connect_within(&mut self, limit: Duration) -> Option<(ConnId, ConnId)> {
        let client = self.start_connect();
        let (c, s) = (self.c, self.s);
        let mut server = None;
        let done = self.run_until(limit, |net| {
            server = server.or_else(|| net.host(s).accept(PORT));
            server.is_some()
                && net
                    .host_ref(c)
                    .conn(client)
                    .is_some_and(|x| x.is_established())
        });
        done.then(|| (client, server.unwrap()))
    }

    /// A connection, open on both sides within 1 s; panics otherwise.
    #[track_caller]
    pub fn connect(&mut self) -> (ConnId, ConnId) {
        self.connect_within(Duration::from_secs(1))
            .expect("the handshake finished within 1 s")
    }

    /// The client connects and both ends at once send `len` pseudo-random bytes (derived from
    /// the pair's seed), shut down writing at the end and release their connection once the
    /// peer's FIN is read, for at most `limit` of virtual time; then the network runs on until
    /// no connection is left (600 s at most) and every frame in flight has been delivered. The
    /// outcome says how far it got and whether each stream arrived byte for byte ([`Transfer`]).
    pub fn transfer(&mut self, len: usize, limit: Duration) -> Transfer {
        self.transfer_with(len, limit, |_| {})
    }

    /// [`Pair::transfer`], with `during` run after every step of the transfer phase (to change
    /// the path mid-transfer, or watch it).
    pub fn transfer_with(
        &mut self,
        len: usize,
        limit: Duration,
        mut during: impl FnMut(&mut Network),
    ) -> Transfer {
        let (c, s, seed) = (self.c, self.s, self.seed);
        let mut client = End::new(c, seed.wrapping_add(1), len);
        let mut server = End::new(s, seed.wrapping_add(2), len);
        // The client writes before the handshake ends, as an application would.
        client.id = Some(self.start_connect());
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = self.net.now() + limit;
        let finished = self.net.run_until(deadline, |net| {
            if server.id.is_none() {
                server.id = net.host(s).accept(PORT);
            }
            client.pump(net, &mut buf);
            server.pump(net, &mut buf);
            during(net);
            client.error.is_some() || server.error.is_some() || (client.released && server.released)
        }) && client.error.is_none()
            && server.error.is_none();
        let sim_time = self.net.now() - Instant::ZERO;
        let rto = |net: &Network, host, id: Option<ConnId>| {
            id.and_then(|id| net.host_ref(host).conn(id))
                .map_or(0, |x| x.stats().rto_events)
        };
        let (client_rto, server_rto) = (rto(&self.net, c, client.id), rto(&self.net, s, server.id));
        let steps = self.net.steps();
        let mut left = None;
        let mut drained = false;
        if finished {
            // let FIN-WAIT/TIME-WAIT run out: nothing may be left behind
            let until = self.net.now() + Duration::from_secs(600);
            self.net.run_until(until, |net| {
                net.host_ref(c).conn_count() == 0 && net.host_ref(s).conn_count() == 0
            });
            left = Some((
                self.net.host_ref(c).conn_count(),
                self.net.host_ref(s).conn_count(),
            ));
            // drain the links, so every frame sent has been delivered and judged
            drained = (0..1_000_000).any(|_| !self.net.step());
        }
        let corrupted = self.net.links().map(|(_, _, l)| l.stats().corrupted).sum();
        let oversize = self
            .net
            .links()
            .map(|(_, _, l)| l.stats().dropped_oversize)
            .sum();
        let malformed = |h: &Host| -> u64 {
            h.stats()
                .drops()
                .filter(|(r, _)| matches!(r, DropReason::Ipv4(_) | DropReason::Tcp(_)))
                .map(|(_, n)| n)
                .sum()
        };
        let malformed_drops = malformed(self.net.host_ref(c)) + malformed(self.net.host_ref(s));
        Transfer {
            len,
            finished,
            stalled_at: self.net.now(),
            client: client.report(),
            server: server.report(),
            client_to_server_exact: server.sink.digest() == client.src.digest(),
            server_to_client_exact: client.sink.digest() == server.src.digest(),
            left,
            drained,
            sim_time,
            steps,
            client_rto,
            server_rto,
            corrupted,
            oversize,
            malformed_drops,
        }
    }
}

/// What one end of a [`Pair::transfer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndReport {
    /// Its whole stream was accepted by its connection.
    pub sent_all: bool,
    /// Bytes read from the peer.
    pub received: usize,
    /// It read the peer's FIN.
    pub eof: bool,
    /// The first error a send or receive returned (other than would-block).
    pub error: Option<tcp::Error>,
}

/// The outcome of a [`Pair::transfer`].
#[derive(Debug)]
pub struct Transfer {
    /// Bytes each end sent.
    pub len: usize,
    /// Both ends sent and read everything and released their connections, with no error,
    /// within the limit.
    pub finished: bool,
    /// Virtual time when the transfer phase ended (finished or not).
    pub stalled_at: Instant,
    pub client: EndReport,
    pub server: EndReport,
    /// What arrived at the server hashes the same as what the client sent, and the other way.
    pub client_to_server_exact: bool,
    pub server_to_client_exact: bool,
    /// Connections left on (client, server) after the 600 s wait; `None` if not finished.
    pub left: Option<(usize, usize)>,
    /// The links went idle (within a million steps) after that wait.
    pub drained: bool,
    /// Virtual time from the start to the end of the transfer phase.
    pub sim_time: Duration,
    /// Network steps the transfer phase took.
    pub steps: u64,
    pub client_rto: u64,
    pub server_rto: u64,
    /// Frames the links corrupted, and frames the hosts dropped as malformed (wire errors).
    pub corrupted: u64,
    /// Frames the links dropped for exceeding their MTU.
    pub oversize: u64,
    pub malformed_drops: u64,
}

impl Transfer {
    /// Asserts a clean run: no error, finished, every byte both ways by count and by hash, no
    /// connection left afterwards and the links idle. `what` names the run in the message.
    #[track_caller]
    pub fn assert_exact(&self, what: &str) {
        assert_eq!(self.client.error, None, "{what}: client error");
        assert_eq!(self.server.error, None, "{what}: server error");
        assert!(
            self.finished,
            "{what}: stalled at {:?}: client sent_all={} got {} eof={}, server sent_all={} got {} eof={}",
            self.stalled_at,
            self.client.sent_all,
            self.client.received,
            self.client.eof,
            self.server.sent_all,
            self.server.received,
            self.server.eof
        );
        assert_eq!(self.client.received, self.len, "{what}");
        assert_eq!(self.server.received, self.len, "{what}");
        assert!(
            self.server_to_client_exact,
            "{what}: server->client stream differs"
        );
        assert!(
            self.client_to_server_exact,
            "{what}: client->server stream differs"
        );
        assert_eq!(
            self.left,
            Some((0, 0)),
            "{what}: connections left (client, server)"
        );
        assert!(self.drained, "{what}: the network never went idle");
    }
}

/// A pseudo-random byte stream of fixed length, hashed as it is produced.
pub struct Source {
    state: u64,
    remaining: usize,
    chunk: Vec<u8>,
    off: usize,
    hash: Xxh3,
}

impl Source {
    pub fn new(seed: u64, len: usize) -> Self {
        Source {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            remaining: len,
            chunk: Vec::new(),
            off: 0,
            hash: Xxh3::new(),
        }
    }

    fn refill(&mut self) {
        let n = self.remaining.min(64 * 1024);
        self.chunk.clear();
        self.chunk.reserve(n);
        while self.chunk.len() < n {
            // xorshift64*: fast and good enough to make every byte position distinct
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let take = (n - self.chunk.len()).min(8);
            self.chunk.extend_from_slice(&v[..take]);
        }
        self.remaining -= n;
        self.off = 0;
        self.hash.update(&self.chunk);
    }

    /// The bytes not yet accepted by the connection.
    pub fn pending(&mut self) -> &[u8] {
        if self.off == self.chunk.len() && self.remaining > 0 {
            self.refill();
        }
        &self.chunk[self.off..]
    }

    pub fn advance(&mut self, n: usize) {
        self.off += n;
    }

    pub fn done(&self) -> bool {
        self.remaining == 0 && self.off == self.chunk.len()
    }

    /// Hash of every byte produced so far (of the whole stream once [`Source::done`]).
    pub fn digest(&self) -> u64 {
        self.hash.digest()
    }
}

/// One end of a transfer: writes its source, reads and hashes the peer's stream.
pub struct End {
    pub id: Option<ConnId>,
    pub host: usize,
    pub src: Source,
    pub sink: Xxh3,
    pub received: usize,
    pub eof: bool,
    pub shut: bool,
    pub released: bool,
    pub error: Option<tcp::Error>,
}

impl End {
    pub fn new(host: usize, seed: u64, len: usize) -> Self {
        End {
            id: None,
            host,
            src: Source::new(seed, len),
            sink: Xxh3::new(),
            received: 0,
            eof: false,
            shut: false,
            released: false,
            error: None,
        }
    }

    fn report(&self) -> EndReport {
        EndReport {
            sent_all: self.src.done(),
            received: self.received,
            eof: self.eof,
            error: self.error,
        }
    }

    /// Moves as many bytes as the connection takes and gives; shuts down writing at the end of the
    /// source and releases the connection when both directions are done.
    pub fn pump(&mut self, net: &mut Network, buf: &mut [u8]) {
        let Some(id) = self.id else { return };
        if self.released || self.error.is_some() {
            return;
        }
        let host = net.host(self.host);
        while !self.src.done() {
            let pending = self.src.pending();
            match host.send(id, pending) {
                Ok(n) if n > 0 => self.src.advance(n),
                Ok(_) | Err(tcp::Error::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        if self.src.done() && !self.shut {
            host.with_conn(id, |c| c.close());
            self.shut = true;
        }
        while !self.eof {
            match host.recv(id, buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.sink.update(&buf[..n]);
                    self.received += n;
                }
                Err(tcp::Error::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        if self.eof && self.shut {
            host.close(id);
            self.released = true;
        }
    }
}
