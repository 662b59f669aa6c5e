//! Shared pieces of the simulation tests: a two-host network and a bidirectional bulk transfer
//! that checks every byte by hashing both ends of each stream.
#![allow(dead_code)]

pub mod apps;
pub mod rawtcp;
pub mod testbed;
pub mod veth;

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::{ConnId, DropReason, HostConfig};
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp;
use xdp_tcp::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const PORT: u16 = 80;

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

    pub fn digest(&self) -> u64 {
        self.hash.digest()
    }
}

/// One end of a bulk transfer: writes its source, reads and hashes the peer's stream.
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

    /// Moves as many bytes as the connection takes and gives; shuts down writing at the end of the
    /// source and releases the connection when both directions are done.
    pub fn pump(&mut self, net: &mut Network, buf: &mut [u8]) {
        let Some(id) = self.id else { return };
        if self.released {
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

pub struct BulkResult {
    pub finished: bool,
    pub sim_time: Duration,
    pub steps: u64,
    pub client_rto: u64,
    pub server_rto: u64,
    /// Frames the links corrupted, and frames the hosts dropped as malformed (wire errors).
    pub corrupted: u64,
    pub malformed_drops: u64,
}

/// Two hosts on `link`; the client connects and both ends send `len` bytes at once. Checks byte
/// exactness by hash and that both hosts end with no connection left. Panics with the seed on
/// any failure.
pub fn bulk_both_ways(
    seed: u64,
    link: LinkConfig,
    len: usize,
    limit: Duration,
    tcp_cfg: tcp::Config,
) -> BulkResult {
    let mut net = Network::new();
    let mut ccfg = HostConfig::new(CLIENT);
    ccfg.tcp = tcp_cfg;
    ccfg.tcp.isn_secret = seed;
    let mut scfg = HostConfig::new(SERVER);
    scfg.tcp = tcp_cfg;
    scfg.tcp.isn_secret = seed.rotate_left(17);
    let c = net.add_host(ccfg);
    let s = net.add_host(scfg);
    net.connect(c, s, link, seed);
    net.host(s).listen(PORT, 16);
    let mut client = End::new(c, seed.wrapping_add(1), len);
    let mut server = End::new(s, seed.wrapping_add(2), len);
    client.id = Some(
        net.host(c)
            .connect(Instant::ZERO, SocketAddrV4::new(SERVER, PORT))
            .unwrap(),
    );
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::ZERO + limit;
    let finished = net.run_until(deadline, |net| {
        if server.id.is_none() {
            server.id = net.host(s).accept(PORT);
        }
        client.pump(net, &mut buf);
        server.pump(net, &mut buf);
        assert_eq!(client.error, None, "seed {seed}: client error");
        assert_eq!(server.error, None, "seed {seed}: server error");
        client.released && server.released
    });
    let sim_time = net.now() - Instant::ZERO;
    let client_rto = net
        .host_ref(c)
        .conn(client.id.unwrap())
        .map_or(0, |x| x.stats().rto_events);
    let server_rto = server
        .id
        .and_then(|id| net.host_ref(s).conn(id))
        .map_or(0, |x| x.stats().rto_events);
    assert!(
        finished,
        "seed {seed}: stalled at {:?}: client sent_all={} got {} eof={}, server sent_all={} got {} eof={}",
        net.now(),
        client.src.done(),
        client.received,
        client.eof,
        server.src.done(),
        server.received,
        server.eof
    );
    assert_eq!(client.received, len, "seed {seed}");
    assert_eq!(server.received, len, "seed {seed}");
    assert_eq!(
        client.sink.digest(),
        server.src.digest(),
        "seed {seed}: server->client stream differs"
    );
    assert_eq!(
        server.sink.digest(),
        client.src.digest(),
        "seed {seed}: client->server stream differs"
    );
    // let FIN-WAIT/TIME-WAIT run out: nothing may be left behind
    let steps = net.steps();
    let idle = net.run_until(net.now() + Duration::from_secs(600), |net| {
        net.host_ref(c).conn_count() == 0 && net.host_ref(s).conn_count() == 0
    });
    assert!(
        idle,
        "seed {seed}: connections left: client {}, server {}",
        net.host_ref(c).conn_count(),
        net.host_ref(s).conn_count()
    );
    // drain the links, so every frame sent has been delivered and judged
    let mut guard = 0;
    while net.step() {
        guard += 1;
        assert!(
            guard < 1_000_000,
            "seed {seed}: the network never went idle"
        );
    }
    let corrupted =
        net.link(c, s).unwrap().stats().corrupted + net.link(s, c).unwrap().stats().corrupted;
    let malformed = |h: &xdp_tcp::host::Host| -> u64 {
        h.stats()
            .drops()
            .filter(|(r, _)| matches!(r, DropReason::Ipv4(_) | DropReason::Tcp(_)))
            .map(|(_, n)| n)
            .sum()
    };
    let malformed_drops = malformed(net.host_ref(c)) + malformed(net.host_ref(s));
    BulkResult {
        finished,
        sim_time,
        steps,
        client_rto,
        server_rto,
        corrupted,
        malformed_drops,
    }
}
