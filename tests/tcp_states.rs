//! Per-state tests of `tcp::Connection` (RFC 9293 section 3.10, Figure 5), written against the
//! public API only.
//!
//! Segments are written packetdrill-style with [`seg!`]: `<` for what the peer sends us, `>` for
//! what we expect the connection to send, then the flags (`S`, `F`, `R`, `P`, `.` for ACK), then
//! fields. [`Tcp::expect`] compares the whole `TcpRepr` the connection sends, payload included.
//! Time is absolute milliseconds of virtual time (`t.at(200)`); timers fire only through
//! [`Tcp::fire`], which first checks that the connection asked for exactly that deadline.
//!
//! Unless a test says otherwise the connection runs with [`cfg`]: no options beyond MSS, a
//! 65535-byte receive buffer (so no window scaling), a 1 s minimum RTO, so every RTO in these
//! tests is 1 s doubled per backoff, and no quick-ACK mode, so the delayed ACK applies from the
//! first segment on (`quick_acks` tests it). Our ISS is [`ISS`], the peer's [`IRS`].

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::tcp::isn::IsnGenerator;
use xdp_tcp::tcp::{reset_for, Config, Connection, Error, Event, Secret, State};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

const US: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4000);
const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
const ISS: u32 = 1000;
const IRS: u32 = 5000;
/// Twice the default MSL, in milliseconds.
const TWO_MSL: u64 = 60_000;

fn cfg() -> Config {
    Config {
        window_scale: false,
        timestamps: false,
        sack: false,
        recv_buffer: 65535,
        // fixed buffers (no auto-tuning), so the windows and shifts expected are exact
        recv_buffer_max: None,
        send_buffer: 64 * 1024,
        rto_min: Duration::from_secs(1),
        quick_ack: false,
        // fixed, so expected ISNs and timestamps can be computed
        secret: Secret::from_seed(0x5eed),
        ..Config::default()
    }
}

/// Every option on, with a buffer that needs window scale 3.
fn cfg_all_options() -> Config {
    Config {
        window_scale: true,
        timestamps: true,
        sack: true,
        recv_buffer: 256 * 1024,
        ..cfg()
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// The TSval a connection from `local` to `remote` (under the default secret) sends at `t` ms:
/// its clock plus its own offset (RFC 7323 5.4), read from the SYN it sends at 0 ms.
fn ts_clock(local: SocketAddrV4, remote: SocketAddrV4, t: u64) -> u32 {
    let mut c = Connection::connect(cfg_all_options(), local, remote, SeqNumber(0));
    let syn = c.poll_transmit(Instant::ZERO).expect("SYN");
    syn.repr
        .options
        .timestamp
        .expect("TSval")
        .0
        .wrapping_add(t as u32)
}

/// Our TSval at `t` ms.
fn ts(t: u64) -> u32 {
    ts_clock(US, PEER, t)
}

/// `n` bytes that differ from their neighbours, so a misplaced byte shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Anything a sequence number can be written as in [`seg!`].
trait IntoSeq {
    fn seq(self) -> SeqNumber;
}
impl IntoSeq for u32 {
    fn seq(self) -> SeqNumber {
        SeqNumber(self)
    }
}
impl IntoSeq for i32 {
    fn seq(self) -> SeqNumber {
        SeqNumber(self as u32)
    }
}
impl IntoSeq for SeqNumber {
    fn seq(self) -> SeqNumber {
        self
    }
}

fn flags(s: &str) -> TcpFlags {
    let mut f = TcpFlags::NONE;
    for c in s.chars() {
        f |= match c {
            'S' => TcpFlags::SYN,
            'F' => TcpFlags::FIN,
            'R' => TcpFlags::RST,
            'P' => TcpFlags::PSH,
            '.' => TcpFlags::ACK,
            ' ' => TcpFlags::NONE,
            _ => panic!("unknown flag {c:?} in {s:?}"),
        };
    }
    f
}

/// A segment, packetdrill-style:
/// `seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ws 7, sackOK, ts 100 0)` is a SYN-ACK
/// from the peer; `seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "hello")` is data we send.
/// `data EXPR` gives the payload as a byte slice; a string literal is shorthand for it.
macro_rules! seg {
    (< $($t:tt)*) => { seg!(@flags [] (PEER.port(), US.port()) $($t)*) };
    (> $($t:tt)*) => { seg!(@flags [] (US.port(), PEER.port()) $($t)*) };
    (@flags [$($f:tt)*] $ports:tt , $($rest:tt)*) => {
        seg!(@build [$($f)*] $ports $($rest)*)
    };
    (@flags [$($f:tt)*] $ports:tt) => { seg!(@build [$($f)*] $ports) };
    (@flags [$($f:tt)*] $ports:tt $t:tt $($rest:tt)*) => {
        seg!(@flags [$($f)* $t] $ports $($rest)*)
    };
    (@build [$($f:tt)*] $ports:tt $($rest:tt)*) => {{
        #[allow(unused_mut)]
        let mut r = TcpRepr {
            src_port: $ports.0,
            dst_port: $ports.1,
            seq: SeqNumber(0),
            ack: SeqNumber(0),
            flags: flags(stringify!($($f)*)),
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        seg!(@field r $($rest)*);
        r
    }};
    (@field $r:ident $(,)?) => {};
    (@field $r:ident seq $v:expr $(, $($rest:tt)*)?) => {
        $r.seq = IntoSeq::seq($v);
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident ack $v:expr $(, $($rest:tt)*)?) => {
        $r.ack = IntoSeq::seq($v);
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident win $v:expr $(, $($rest:tt)*)?) => {
        $r.window = $v;
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident mss $v:expr $(, $($rest:tt)*)?) => {
        $r.options.mss = Some($v);
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident ws $v:expr $(, $($rest:tt)*)?) => {
        $r.options.window_scale = Some($v);
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident sackOK $(, $($rest:tt)*)?) => {
        $r.options.sack_permitted = true;
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident ts $val:tt $ecr:tt $(, $($rest:tt)*)?) => {
        $r.options.timestamp = Some(($val, $ecr));
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident data $v:expr $(, $($rest:tt)*)?) => {
        $r.payload = $v;
        seg!(@field $r $($($rest)*)?);
    };
    (@field $r:ident $v:literal $(, $($rest:tt)*)?) => {
        $r.payload = AsRef::<[u8]>::as_ref($v);
        seg!(@field $r $($($rest)*)?);
    };
}

/// One connection under test, the peer played by the test, and virtual time.
struct Tcp {
    c: Connection,
    now: Instant,
}

/// A segment the connection sent, its payload copied out with `write_payload`.
struct Sent {
    repr: TcpRepr<'static>,
    payload: Vec<u8>,
}

impl Tcp {
    fn connect(cfg: Config) -> Tcp {
        Tcp {
            c: Connection::connect(cfg, US, PEER, SeqNumber(ISS)),
            now: Instant::ZERO,
        }
    }

    fn accept(cfg: Config, syn: &TcpRepr) -> Tcp {
        Tcp {
            c: Connection::accept(cfg, US, PEER, SeqNumber(ISS), Instant::ZERO, syn),
            now: Instant::ZERO,
        }
    }

    /// Moves virtual time to `t` ms without firing timers.
    fn at(&mut self, t: u64) -> &mut Self {
        assert!(ms(t) >= self.now, "time went backwards");
        self.now = ms(t);
        self
    }

    /// The peer's segment arrives now.
    fn inject(&mut self, seg: TcpRepr) -> &mut Self {
        self.c.handle_segment(self.now, *PEER.ip(), &seg);
        self
    }

    fn deadline(&self) -> Option<Instant> {
        self.c.poll_timeout()
    }

    /// Checks that the next deadline is `t` ms, moves there, and fires it.
    fn fire(&mut self, t: u64) -> &mut Self {
        assert_eq!(self.deadline(), Some(ms(t)), "deadline");
        self.now = ms(t);
        self.c.handle_timeout(self.now);
        self
    }

    fn next(&mut self) -> Option<Sent> {
        let t = self.c.poll_transmit(self.now)?;
        // everything, RSTs from CLOSED included, goes back to the one peer
        assert_eq!((t.src, t.dst), (US, PEER), "addresses of {:?}", t.repr);
        assert!(t.repr.payload.is_empty(), "header carries no payload");
        let mut payload = vec![0; t.payload_len];
        self.c.write_payload(&t, &mut payload);
        Some(Sent {
            repr: t.repr,
            payload,
        })
    }

    /// The next segment sent must be exactly `want`, payload included.
    #[track_caller]
    fn expect(&mut self, want: TcpRepr) -> &mut Self {
        let now = self.now;
        let Some(s) = self.next() else {
            panic!("at {now:?}: nothing sent, want {}", show(&want));
        };
        let got = TcpRepr {
            payload: &s.payload,
            ..s.repr
        };
        assert!(
            got == want,
            "at {now:?}\n  sent: {}\n  want: {}",
            show(&got),
            show(&want)
        );
        self
    }

    #[track_caller]
    fn expect_nothing(&mut self) -> &mut Self {
        if let Some(s) = self.next() {
            panic!("at {:?}: unexpected {:?}", self.now, s.repr);
        }
        self
    }

    /// Drains the events; they must be exactly `want`.
    #[track_caller]
    fn expect_events(&mut self, want: &[Event]) -> &mut Self {
        let got: Vec<Event> = std::iter::from_fn(|| self.c.poll_event()).collect();
        assert_eq!(got, want, "events at {:?}", self.now);
        self
    }

    fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.c.recv(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn state(&self) -> State {
        self.c.state()
    }
}

/// Active open at t = 0 ms, SYN-ACK (no options but MSS 1460) at 100 ms; ends in ESTABLISHED with
/// the handshake's ACK and the Connected event consumed.
fn open(cfg: Config, peer_win: u16) -> Tcp {
    let win = cfg.recv_buffer.min(65535) as u16;
    let mut t = Tcp::connect(cfg);
    t.expect(seg!(> S, seq ISS, win win, mss 1460));
    t.at(100)
        .inject(seg!(< S., seq IRS, ack ISS + 1, win peer_win, mss 1460))
        .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win win))
        .expect_nothing()
        .expect_events(&[Event::Connected]);
    assert_eq!(t.state(), State::Established);
    t
}

fn established() -> Tcp {
    open(cfg(), 65535)
}

/// A segment in one line, packetdrill-style, with a hash of its payload.
fn show(r: &TcpRepr) -> String {
    let o = &r.options;
    let mut s = format!(
        "{}:{} > {:?} seq {} ack {} win {}",
        r.src_port, r.dst_port, r.flags, r.seq, r.ack, r.window
    );
    if let Some(m) = o.mss {
        s += &format!(" mss {m}");
    }
    if let Some(w) = o.window_scale {
        s += &format!(" ws {w}");
    }
    if o.sack_permitted {
        s += " sackOK";
    }
    if let Some((v, e)) = o.timestamp {
        s += &format!(" ts {v} {e}");
    }
    if r.urgent != 0 || o.sack_len != 0 {
        s += &format!(" urg {} sack {:?}", r.urgent, o.sack());
    }
    let hash = r.payload.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    s + &format!(" len {} (fnv {hash:08x})", r.payload.len())
}

/// Two connections joined by a lossless, zero-delay link.
struct Pair {
    a: Connection,
    b: Connection,
    now: Instant,
    /// Every segment delivered: (from A?, seq, payload length).
    log: Vec<(bool, SeqNumber, usize)>,
}

impl Pair {
    /// Hands everything `from` has to send to `to`; returns how many segments moved.
    fn deliver(
        from: &mut Connection,
        to: &mut Connection,
        now: Instant,
        log: &mut Vec<(bool, SeqNumber, usize)>,
        from_a: bool,
    ) -> usize {
        let mut n = 0;
        while let Some(t) = from.poll_transmit(now) {
            let mut payload = vec![0; t.payload_len];
            from.write_payload(&t, &mut payload);
            let seg = TcpRepr {
                payload: &payload,
                ..t.repr
            };
            log.push((from_a, seg.seq, payload.len()));
            to.handle_segment(now, *t.src.ip(), &seg);
            n += 1;
        }
        n
    }

    /// One round: A's segments to B, then B's to A.
    fn step(&mut self) -> usize {
        let n = Pair::deliver(&mut self.a, &mut self.b, self.now, &mut self.log, true);
        n + Pair::deliver(&mut self.b, &mut self.a, self.now, &mut self.log, false)
    }

    /// Runs `app` and exchanges segments until both are quiet, jumping virtual time to the next
    /// deadline when nothing moves; stops when `done` holds or no deadline is left.
    fn drive(
        &mut self,
        mut app: impl FnMut(&mut Connection, &mut Connection),
        done: impl Fn(&Connection, &Connection) -> bool,
    ) {
        for _ in 0..1_000_000 {
            app(&mut self.a, &mut self.b);
            if self.step() > 0 {
                continue;
            }
            if done(&self.a, &self.b) {
                return;
            }
            let next = match (self.a.poll_timeout(), self.b.poll_timeout()) {
                (Some(x), Some(y)) => x.min(y),
                (Some(x), None) | (None, Some(x)) => x,
                (None, None) => return,
            };
            self.now = self.now.max(next);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
        }
        panic!("pair did not settle");
    }
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

mod closed {
    use super::*;

    /// A connection that went SYN-SENT -> CLOSED on the user's close.
    pub(super) fn closed() -> Tcp {
        let mut t = Tcp::connect(cfg());
        t.c.close();
        assert_eq!(t.state(), State::Closed);
        t.expect_nothing().expect_events(&[Event::Closed]);
        assert!(t.c.is_closed());
        t
    }

    #[test]
    fn segment_without_ack_gets_rst_ack_covering_it() {
        let mut t = closed();
        t.inject(seg!(< S, seq 7000, win 1000, mss 1460))
            .expect(seg!(> R., seq 0, ack 7001))
            .expect_nothing();
        // SEG.LEN counts the payload and the FIN
        t.inject(seg!(< FP, seq 7000, "abc"))
            .expect(seg!(> R., seq 0, ack 7004))
            .expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert!(t.c.is_closed());
    }

    #[test]
    fn segment_with_ack_gets_rst_at_its_ack_number() {
        let mut t = closed();
        t.inject(seg!(< P., seq 7000, ack 1234, win 500, "x"))
            .expect(seg!(> R, seq 1234))
            .expect_nothing();
        t.inject(seg!(< F., seq 7000, ack 0xffff_fff0u32))
            .expect(seg!(> R, seq 0xffff_fff0u32));
        t.expect_events(&[]);
    }

    #[test]
    fn reset_for_builds_both_rfc_forms() {
        // <SEQ=SEG.ACK><CTL=RST>
        assert_eq!(
            reset_for(&seg!(< S., seq 10, ack 20, win 9, mss 536, "hi")),
            Some(seg!(> R, seq 20))
        );
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN each count one
        assert_eq!(
            reset_for(&seg!(< SF, seq u32::MAX, "ab")),
            Some(seg!(> R., seq 0, ack 3))
        );
        // and none for an RST, which is never answered
        assert_eq!(reset_for(&seg!(< R., seq 1, ack 2)), None);
    }

    #[test]
    fn application_calls_fail_with_not_connected() {
        let mut t = closed();
        assert_eq!(t.c.send(b"x"), Err(Error::NotConnected));
        assert_eq!(t.c.recv(&mut [0; 4]), Err(Error::NotConnected));
        assert_eq!(t.c.send_space(), 0);
        t.c.close();
        t.c.abort();
        t.expect_nothing().expect_events(&[]);
        assert_eq!(t.deadline(), None);
    }
}

/// LISTEN is the host's: its listen table answers what arrives for a listening port, and each SYN
/// it accepts becomes a connection in SYN-RECEIVED through `Connection::accept` (the connection
/// from there on is tested in `syn_received`).
mod listen {
    use super::*;
    use xdp_tcp::host::{Host, HostConfig};
    use xdp_tcp::wire::{ChecksumCaps, Ipv4Packet, Ipv4Repr, TcpPacket};

    /// A host at our address listening on our port, its connections configured with [`cfg`].
    struct Listener {
        h: Host,
        now: Instant,
    }

    impl Listener {
        fn new() -> Listener {
            let mut hc = HostConfig::new(*US.ip());
            hc.tcp = cfg();
            let mut h = Host::new(hc);
            h.listen(US.port(), 8);
            Listener {
                h,
                now: Instant::ZERO,
            }
        }

        fn at(&mut self, t: u64) -> &mut Self {
            self.now = ms(t);
            self
        }

        fn inject(&mut self, seg: TcpRepr) -> &mut Self {
            self.h.handle_segment(self.now, *PEER.ip(), &seg);
            self
        }

        /// The next segment the host sends, parsed back from its IPv4 packet.
        fn next(&mut self) -> Option<TcpRepr<'static>> {
            let mut buf = [0u8; 2048];
            let n = self.h.poll_transmit(self.now, &mut buf)?.len;
            let caps = ChecksumCaps::default();
            let ip = Ipv4Packet::new_checked(&buf[..n]).expect("IPv4");
            let ip_repr = Ipv4Repr::parse(&ip, &caps).expect("IPv4 header");
            assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (*US.ip(), *PEER.ip()));
            let tcp = TcpPacket::new_checked(ip.payload()).expect("TCP");
            let r = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr, &caps).expect("TCP");
            assert!(r.payload.is_empty(), "no payload from a listener");
            Some(TcpRepr { payload: &[], ..r })
        }

        #[track_caller]
        fn expect(&mut self, want: TcpRepr) -> &mut Self {
            let got = self.next();
            assert!(
                got.as_ref() == Some(&want),
                "sent: {:?}\n  want: {}",
                got.map(|g| show(&g)),
                show(&want)
            );
            self
        }

        #[track_caller]
        fn expect_nothing(&mut self) -> &mut Self {
            if let Some(s) = self.next() {
                panic!("unexpected {}", show(&s));
            }
            self
        }

        /// The connection the host holds for the peer, if any.
        fn conn(&self) -> Option<&Connection> {
            self.h
                .lookup(PEER, US.port())
                .and_then(|id| self.h.conn(id))
        }

        fn events(&mut self) -> Vec<Event> {
            std::iter::from_fn(|| self.h.poll_event())
                .map(|(_, e)| e)
                .collect()
        }
    }

    #[test]
    fn syn_moves_to_syn_received_and_is_answered_with_syn_ack() {
        let mut l = Listener::new();
        l.at(5).inject(seg!(< S, seq IRS, win 8192, mss 1400));
        let c = l.conn().expect("a connection for the SYN");
        assert_eq!(c.state(), State::SynReceived);
        assert_eq!(c.remote(), PEER);
        let iss = IsnGenerator::new(&cfg().secret, cfg().secret_rekey).generate(ms(5), US, PEER);
        assert_eq!(c.iss(), iss);
        l.expect(seg!(> S., seq iss, ack IRS + 1, win 65535, mss 1460))
            .expect_nothing();
        let c = l.conn().unwrap();
        assert_eq!(c.poll_timeout(), Some(ms(1005)));
        assert_eq!(c.mss(), 1400);
        assert_eq!(c.snd_wnd(), 8192);
        assert_eq!(l.events(), []);
    }

    #[test]
    fn passive_open_reaches_established() {
        let mut l = Listener::new();
        l.inject(seg!(< S, seq IRS, win 8192, mss 1460));
        let iss = l.conn().unwrap().iss();
        l.expect(seg!(> S., seq iss, ack IRS + 1, win 65535, mss 1460));
        l.at(50)
            .inject(seg!(< ., seq IRS + 1, ack iss + 1, win 8192))
            .expect_nothing();
        assert_eq!(l.events(), [Event::Connected]);
        let c = l.conn().unwrap();
        assert_eq!(c.state(), State::Established);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.snd_una(), iss + 1);
        assert!(l.h.accept(US.port()).is_some());
    }

    #[test]
    fn rst_is_ignored() {
        let mut l = Listener::new();
        l.inject(seg!(< R, seq IRS)).expect_nothing();
        l.inject(seg!(< R., seq IRS, ack 77)).expect_nothing();
        assert_eq!(l.h.conn_count(), 0);
        assert_eq!(l.events(), []);
        // still listening
        l.inject(seg!(< S, seq IRS, win 8192, mss 1460));
        assert_eq!(l.conn().map(|c| c.state()), Some(State::SynReceived));
    }

    #[test]
    fn ack_is_answered_with_rst_at_its_ack_number() {
        let mut l = Listener::new();
        l.inject(seg!(< ., seq IRS, ack 4321, win 100))
            .expect(seg!(> R, seq 4321))
            .expect_nothing();
        // a SYN-ACK is an ACK too
        l.inject(seg!(< S., seq IRS, ack 99, win 100, mss 1460))
            .expect(seg!(> R, seq 99));
        assert_eq!(l.h.conn_count(), 0);
    }

    #[test]
    fn segment_without_syn_ack_or_rst_is_dropped() {
        let mut l = Listener::new();
        l.inject(seg!(< P, seq IRS, "data")).expect_nothing();
        l.inject(seg!(< F, seq IRS)).expect_nothing();
        assert_eq!(l.h.conn_count(), 0);
        assert_eq!(l.h.poll_timeout(), None);
    }

    #[test]
    fn closing_the_port_refuses_syns() {
        let mut l = Listener::new();
        l.h.unlisten(US.port());
        l.expect_nothing();
        // no connection existed, so there is nothing to report closed
        assert_eq!(l.events(), []);
        l.inject(seg!(< S, seq IRS, win 100))
            .expect(seg!(> R., seq 0, ack IRS + 1));
        assert_eq!(l.h.conn_count(), 0);
    }
}

mod syn_sent {
    use super::*;

    #[test]
    fn connect_sends_syn_and_arms_the_initial_rto() {
        let mut t = Tcp::connect(cfg());
        assert_eq!(t.state(), State::SynSent);
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(1000)));
        assert_eq!(t.c.bytes_in_flight(), 1);
    }

    #[test]
    fn syn_offers_every_configured_option() {
        let mut t = Tcp::connect(cfg_all_options());
        t.at(3)
            .expect(seg!(> S, seq ISS, win 65535, mss 1460, ws 3, sackOK, ts (ts(3)) 0));
    }

    #[test]
    fn syn_ack_completes_the_handshake() {
        let mut t = Tcp::connect(cfg());
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 30000, mss 1200))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Connected]);
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.c.irs(), SeqNumber(IRS));
        assert_eq!(t.c.snd_una(), SeqNumber(ISS + 1));
        assert_eq!(t.c.rcv_nxt(), SeqNumber(IRS + 1));
        assert_eq!(t.c.snd_wnd(), 30000);
        assert_eq!(t.c.mss(), 1200);
        assert_eq!(t.deadline(), None);
        // RFC 6298: the first sample R gives SRTT = R, RTTVAR = R/2
        assert_eq!(t.c.rtt().srtt(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn all_options_negotiated_when_the_peer_offers_them() {
        let mut t = Tcp::connect(cfg_all_options());
        t.next().unwrap();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1400, ws 7, sackOK, ts 500 0))
            // our window is scaled by 3 from here on: 256 KiB >> 3
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 32768, ts (ts(100)) 500));
        assert_eq!(t.state(), State::Established);
        // the peer's MSS less the 12 bytes every timestamped segment carries
        assert_eq!(t.c.mss(), 1400 - 12);
        assert_eq!(t.c.window_shifts(), (7, 3));
        assert!(t.c.sack_enabled());
        assert!(t.c.timestamps_enabled());
        // the window field of a SYN is never scaled (RFC 7323 2.2)
        assert_eq!(t.c.snd_wnd(), 65535);
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 1000, ts 510 (ts(100))));
        assert_eq!(t.c.snd_wnd(), 1000 << 7);
    }

    #[test]
    fn no_options_negotiated_when_the_peer_offers_none() {
        let mut t = Tcp::connect(cfg_all_options());
        t.next().unwrap();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535))
            // no scaling: the 256 KiB buffer is advertised as the largest unscaled window
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535));
        // RFC 9293 3.7.1: 536 when the peer sends no MSS option
        assert_eq!(t.c.mss(), 536);
        assert_eq!(t.c.window_shifts(), (0, 0));
        assert!(!t.c.sack_enabled());
        assert!(!t.c.timestamps_enabled());
    }

    #[test]
    fn each_option_is_negotiated_on_its_own() {
        type Check = fn(&Connection) -> bool;
        let cases: [(TcpOptions, Check); 4] = [
            (seg!(< S, mss 1000).options, |c| {
                c.mss() == 1000 && c.window_shifts() == (0, 0) && !c.timestamps_enabled()
            }),
            (seg!(< S, ws 5).options, |c| {
                c.mss() == 536 && c.window_shifts() == (5, 3) && !c.sack_enabled()
            }),
            (seg!(< S, sackOK).options, |c| {
                c.sack_enabled() && c.window_shifts() == (0, 0) && !c.timestamps_enabled()
            }),
            (seg!(< S, ts 9 0).options, |c| {
                c.timestamps_enabled() && c.mss() == 536 - 12 && !c.sack_enabled()
            }),
        ];
        for (i, (options, check)) in cases.into_iter().enumerate() {
            let mut t = Tcp::connect(cfg_all_options());
            t.next().unwrap();
            let mut syn_ack = seg!(< S., seq IRS, ack ISS + 1, win 65535);
            syn_ack.options = options;
            t.at(100).inject(syn_ack);
            assert_eq!(t.state(), State::Established, "case {i}");
            assert!(check(&t.c), "case {i}: {:?}", t.c);
        }
    }

    #[test]
    fn options_we_did_not_offer_stay_off() {
        let mut t = Tcp::connect(cfg());
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 1000, mss 1460, ws 7, sackOK, ts 5 0))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535));
        assert_eq!(t.c.window_shifts(), (0, 0));
        assert!(!t.c.sack_enabled());
        assert!(!t.c.timestamps_enabled());
        assert_eq!(t.c.mss(), 1460);
        assert_eq!(t.c.snd_wnd(), 1000);
    }

    #[test]
    fn syn_ack_with_bad_ack_gets_rst_at_its_ack() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        // acknowledges our ISS itself, not the SYN
        t.at(10)
            .inject(seg!(< S., seq IRS, ack ISS, win 100, mss 1460))
            .expect(seg!(> R, seq ISS))
            .expect_nothing();
        // acknowledges more than we sent
        t.inject(seg!(< S., seq IRS, ack ISS + 2, win 100, mss 1460))
            .expect(seg!(> R, seq ISS + 2))
            .expect_nothing();
        assert_eq!(t.state(), State::SynSent);
        assert_eq!(t.deadline(), Some(ms(1000)));
        t.expect_events(&[]);
        // the real SYN-ACK still completes the handshake
        t.inject(seg!(< S., seq IRS, ack ISS + 1, win 100, mss 1460));
        assert_eq!(t.state(), State::Established);
    }

    #[test]
    fn segment_without_syn_is_dropped() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        t.inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 100, "early"))
            .expect_nothing();
        assert_eq!(t.state(), State::SynSent);
        assert_eq!(t.c.recv_queue(), 0);
    }

    #[test]
    fn syn_is_retransmitted_with_backoff_then_gives_up() {
        let mut t = Tcp::connect(Config {
            syn_retries: 2,
            ..cfg()
        });
        let syn = seg!(> S, seq ISS, win 65535, mss 1460);
        t.expect(syn).expect_nothing();
        t.fire(1000).expect(syn).expect_nothing();
        t.fire(3000).expect(syn).expect_nothing();
        t.expect_events(&[]);
        t.fire(7000).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Error(Error::TimedOut), Event::Closed]);
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn rtt_is_not_sampled_from_a_retransmitted_syn() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        t.fire(1000).next().unwrap();
        t.at(1100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 100, mss 1460));
        assert_eq!(t.state(), State::Established);
        // Karn: the SYN-ACK may answer either SYN
        assert_eq!(t.c.rtt().srtt(), None);
    }

    #[test]
    fn close_goes_to_closed_without_sending() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        t.c.close();
        assert_eq!(t.state(), State::Closed);
        t.expect_nothing().expect_events(&[Event::Closed]);
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn data_queued_before_the_handshake_goes_out_with_its_ack() {
        let mut t = Tcp::connect(cfg());
        assert_eq!(t.c.send(b"early"), Ok(5));
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460))
            .expect_nothing();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 1000, mss 1460))
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "early"))
            .expect_nothing();
    }

    #[test]
    fn data_on_the_syn_ack_is_received() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 1000, mss 1460, "hi"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 3, win 65533))
            .expect_events(&[Event::Connected, Event::Readable]);
        assert_eq!(t.read_all(), b"hi");
    }

    #[test]
    fn fin_on_the_syn_ack_moves_to_close_wait() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        // nothing can arrive after the FIN, so no window is offered
        t.at(100)
            .inject(seg!(< SFP., seq IRS, ack ISS + 1, win 1000, mss 1460, "bye"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 5, win 0))
            .expect_nothing()
            .expect_events(&[Event::Connected, Event::Readable, Event::PeerClosed]);
        assert_eq!(t.state(), State::CloseWait);
        assert_eq!(t.read_all(), b"bye");
        assert_eq!(t.c.recv(&mut [0; 4]), Ok(0));
    }

    #[test]
    fn lone_syn_moves_to_syn_received_and_is_answered_from_our_iss() {
        let mut t = Tcp::connect(cfg());
        t.next().unwrap();
        t.at(10)
            .inject(seg!(< S, seq IRS, win 2000, mss 1460))
            .expect(seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460))
            .expect_nothing();
        assert_eq!(t.state(), State::SynReceived);
        // the peer's SYN-ACK (its SYN again, now acknowledging ours) completes the open
        t.at(20)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 2000, mss 1460))
            .expect_nothing()
            .expect_events(&[Event::Connected]);
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.c.snd_wnd(), 2000);
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn simultaneous_open_of_two_connections() {
        // default options (window shift 7: it covers auto-tuning's 6 MiB ceiling, as Linux's
        // default), the tests' fixed secret (expected timestamps are computed)
        let cfg = Config {
            secret: cfg().secret,
            ..Config::default()
        };
        let mut p = Pair {
            a: Connection::connect(cfg, US, PEER, SeqNumber(ISS)),
            b: Connection::connect(cfg, PEER, US, SeqNumber(IRS)),
            now: ms(10),
            log: Vec::new(),
        };
        // the SYNs cross: both are taken before either is delivered
        let syn_a = p.a.poll_transmit(p.now).unwrap().repr;
        let syn_b = p.b.poll_transmit(p.now).unwrap().repr;
        assert_eq!(syn_a.flags, TcpFlags::SYN);
        assert_eq!(syn_b.flags, TcpFlags::SYN);
        p.now = ms(20);
        p.a.handle_segment(p.now, *PEER.ip(), &syn_b);
        p.b.handle_segment(p.now, *US.ip(), &syn_a);
        assert_eq!(p.a.state(), State::SynReceived);
        assert_eq!(p.b.state(), State::SynReceived);
        let syn_ack_a = p.a.poll_transmit(p.now).unwrap().repr;
        let syn_ack_b = p.b.poll_transmit(p.now).unwrap().repr;
        let expect_a = TcpRepr {
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some((ts(20), ts_clock(PEER, US, 10))),
                ..TcpOptions::default()
            },
            ..seg!(> S., seq ISS, ack IRS + 1, win 65535)
        };
        assert_eq!(syn_ack_a, expect_a);
        assert_eq!(syn_ack_b.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(
            (syn_ack_b.seq, syn_ack_b.ack),
            (SeqNumber(IRS), SeqNumber(ISS + 1))
        );
        p.now = ms(30);
        p.a.handle_segment(p.now, *PEER.ip(), &syn_ack_b);
        p.b.handle_segment(p.now, *US.ip(), &syn_ack_a);
        for c in [&mut p.a, &mut p.b] {
            assert_eq!(c.state(), State::Established);
            assert_eq!(events(c), [Event::Connected]);
            assert_eq!(c.window_shifts(), (7, 7));
            assert!(c.timestamps_enabled());
            // the window of a SYN-ACK is not scaled
            assert_eq!(c.snd_wnd(), 65535);
            assert_eq!(c.poll_timeout(), None);
        }
        assert_eq!(p.step(), 0, "nothing left to say after the SYN-ACKs");
        // and data flows both ways
        p.a.send(b"ping").unwrap();
        p.b.send(b"pong").unwrap();
        p.drive(
            |_, _| {},
            |a, b| a.bytes_in_flight() == 0 && b.bytes_in_flight() == 0,
        );
        let mut buf = [0u8; 8];
        assert_eq!(p.b.recv(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"ping");
        assert_eq!(p.a.recv(&mut buf), Ok(4));
        assert_eq!(&buf[..4], b"pong");
    }
}

mod syn_received {
    use super::*;

    pub(super) fn passive(cfg: Config) -> Tcp {
        let mut t = Tcp::accept(cfg, &seg!(< S, seq IRS, win 8192, mss 1460));
        assert_eq!(t.state(), State::SynReceived);
        t.expect(seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460))
            .expect_nothing();
        t
    }

    #[test]
    fn ack_of_syn_ack_establishes() {
        let mut t = passive(cfg());
        assert_eq!(t.deadline(), Some(ms(1000)));
        t.at(100)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 8000))
            .expect_nothing()
            .expect_events(&[Event::Connected]);
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.c.snd_wnd(), 8000);
        assert_eq!(t.deadline(), None);
        assert_eq!(t.c.rtt().srtt(), Some(Duration::from_millis(100)));
    }

    /// The NewReno state of a passive open starts from its own ISS, wherever that lies in the
    /// sequence space: three duplicate ACKs make a fast retransmit also when ISS >= 2^31.
    #[test]
    fn passive_open_from_a_high_iss_fast_retransmits() {
        let iss = SeqNumber(0x8000_0000 + ISS);
        let syn = seg!(< S, seq IRS, win 65535, mss 1460);
        let mut t = Tcp {
            c: Connection::accept(cfg(), US, PEER, iss, Instant::ZERO, &syn),
            now: Instant::ZERO,
        };
        t.expect(seg!(> S., seq iss, ack IRS + 1, win 65535, mss 1460));
        t.at(100)
            .inject(seg!(< ., seq IRS + 1, ack iss + 1, win 65535))
            .expect_events(&[Event::Connected]);
        let data = pattern(4 * 1460);
        assert_eq!(t.c.send(&data), Ok(data.len()));
        let sent: Vec<SeqNumber> = std::iter::from_fn(|| t.next())
            .map(|s| s.repr.seq)
            .collect();
        assert_eq!(sent.len(), 4);
        for _ in 0..3 {
            t.inject(seg!(< ., seq IRS + 1, ack iss + 1, win 65535));
        }
        t.expect(seg!(> ., seq iss + 1, ack IRS + 1, win 65535, data &data[..1460]));
    }

    #[test]
    fn syn_ack_answers_the_options_offered() {
        let syn = seg!(< S, seq IRS, win 65535, mss 1400, ws 2, sackOK, ts 900 0);
        let mut t = Tcp::accept(cfg_all_options(), &syn);
        t.expect(
            seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460, ws 3, sackOK, ts (ts(0)) 900),
        );
        assert_eq!(t.c.mss(), 1400 - 12);
        assert_eq!(t.c.window_shifts(), (2, 3));
        // the SYN's window is not scaled, the third segment's is
        assert_eq!(t.c.snd_wnd(), 65535);
        t.at(100)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 1000, ts 910 0));
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.c.snd_wnd(), 4000);
    }

    #[test]
    fn syn_ack_offers_nothing_the_peer_did_not() {
        let mut t = Tcp::accept(cfg_all_options(), &seg!(< S, seq IRS, win 65535));
        t.expect(seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460));
        assert_eq!(t.c.mss(), 536);
        assert_eq!(t.c.window_shifts(), (0, 0));
        assert!(!t.c.sack_enabled() && !t.c.timestamps_enabled());
    }

    #[test]
    fn bad_ack_gets_rst_at_its_ack() {
        let mut t = passive(cfg());
        t.inject(seg!(< ., seq IRS + 1, ack ISS + 5, win 100))
            .expect(seg!(> R, seq ISS + 5))
            .expect_nothing();
        t.inject(seg!(< ., seq IRS + 1, ack ISS, win 100))
            .expect(seg!(> R, seq ISS))
            .expect_nothing();
        assert_eq!(t.state(), State::SynReceived);
        t.expect_events(&[]);
    }

    #[test]
    fn retransmitted_syn_gets_the_syn_ack_again() {
        let mut t = passive(cfg());
        t.at(500)
            .inject(seg!(< S, seq IRS, win 8192, mss 1460))
            .expect(seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460))
            .expect_nothing();
        assert_eq!(t.state(), State::SynReceived);
        assert_eq!(t.deadline(), Some(ms(1000)));
    }

    #[test]
    fn syn_ack_is_retransmitted_with_backoff_then_gives_up() {
        let mut t = Tcp::accept(
            Config {
                syn_retries: 1,
                ..cfg()
            },
            &seg!(< S, seq IRS, win 8192, mss 1460),
        );
        let syn_ack = seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460);
        t.expect(syn_ack).expect_nothing();
        t.fire(1000).expect(syn_ack).expect_nothing();
        t.fire(3000).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Error(Error::TimedOut), Event::Closed]);
    }

    #[test]
    fn close_sends_fin_once_established() {
        let mut t = passive(cfg());
        t.c.close();
        assert_eq!(t.state(), State::SynReceived);
        assert_eq!(t.c.send(b"x"), Err(Error::BrokenPipe));
        t.expect_nothing();
        t.at(100)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 8000))
            .expect(seg!(> F., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Connected]);
        assert_eq!(t.state(), State::FinWait1);
    }

    #[test]
    fn data_on_the_third_segment_is_received() {
        let mut t = passive(cfg());
        t.at(100)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 8000, "hello"))
            .expect_nothing()
            .expect_events(&[Event::Connected, Event::Readable]);
        assert_eq!(t.state(), State::Established);
        t.fire(140)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 6, win 65530));
        assert_eq!(t.read_all(), b"hello");
    }

    #[test]
    fn fin_on_the_third_segment_moves_to_close_wait() {
        let mut t = passive(cfg());
        t.at(100)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 1, win 8000))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_events(&[Event::Connected, Event::PeerClosed]);
        assert_eq!(t.state(), State::CloseWait);
    }
}

mod established {
    use super::*;

    #[test]
    fn in_order_data_is_delivered_and_acked_after_the_delay() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "hello"))
            .expect_nothing()
            .expect_events(&[Event::Readable]);
        assert_eq!(t.deadline(), Some(ms(240)));
        t.fire(240)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 6, win 65530))
            .expect_nothing();
        assert_eq!(t.deadline(), None);
        assert_eq!(t.read_all(), b"hello");
        assert_eq!(t.c.recv(&mut [0; 8]), Err(Error::WouldBlock));
    }

    #[test]
    fn every_second_full_segment_is_acked_at_once() {
        let mut t = established();
        let data = pattern(2 * 1460);
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535, data &data[..1460]))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(240)));
        t.at(201)
            .inject(seg!(< P., seq IRS + 1461, ack ISS + 1, win 65535, data &data[1460..]))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2921, win 65535 - 2920))
            .expect_nothing();
        assert_eq!(t.deadline(), None);
        assert_eq!(t.read_all(), data);
    }

    #[test]
    fn out_of_order_data_is_acked_at_once_and_reassembled() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< P., seq IRS + 6, ack ISS + 1, win 65535, "world"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.c.recv(&mut [0; 8]), Err(Error::WouldBlock));
        // filling the hole is acknowledged at once too (RFC 5681 4.2)
        t.inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535, "hello"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 11, win 65525))
            .expect_nothing()
            .expect_events(&[Event::Readable]);
        assert_eq!(t.read_all(), b"helloworld");
    }

    #[test]
    fn duplicate_data_is_acked_at_once_and_delivered_once() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "hello"))
            .expect_nothing();
        t.at(210)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "hello"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 6, win 65530))
            .expect_nothing()
            .expect_events(&[Event::Readable]);
        // a partial overlap delivers only the new bytes
        t.inject(seg!(< P., seq IRS + 4, ack ISS + 1, win 65535, "loworld"))
            .expect_nothing();
        assert_eq!(t.read_all(), b"helloworld");
    }

    #[test]
    fn lost_final_ack_of_the_handshake_is_resent() {
        let mut t = established();
        // the peer never saw our ACK and retransmits its SYN-ACK
        t.at(1100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.state(), State::Established);
    }

    #[test]
    fn writable_on_demand_follows_a_full_buffer_or_a_request_only() {
        let mut t = open(
            Config {
                send_buffer: 2000,
                nodelay: true,
                ..cfg()
            },
            65535,
        );
        t.c.set_writable_on_demand(true);
        // everything written at once: its acknowledgement raises nothing
        assert_eq!(t.c.send(b"hello"), Ok(5));
        t.at(200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "hello"))
            .expect_nothing();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 6, win 65535))
            .expect_nothing()
            .expect_events(&[]);
        // a write that fills the buffer wants room: the next acknowledgement says so, once
        let data = pattern(3000);
        assert_eq!(t.c.send(&data), Ok(2000));
        assert_eq!(t.c.send(&data[2000..]), Err(Error::WouldBlock));
        t.at(400);
        while t.next().is_some() {}
        t.at(500)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1006, win 65535))
            .expect_events(&[Event::Writable]);
        t.at(510)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1466, win 65535))
            .expect_events(&[]);
        // a write that leaves room wants nothing; asking does
        assert_eq!(t.c.send(&data[2000..2100]), Ok(100));
        while t.next().is_some() {}
        t.at(520)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2006, win 65535))
            .expect_events(&[]);
        t.c.want_writable();
        t.at(530)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2106, win 65535))
            .expect_events(&[Event::Writable]);
        // the default mode raises it for every acknowledgement that frees space
        t.c.set_writable_on_demand(false);
        assert_eq!(t.c.send(b"x"), Ok(1));
        while t.next().is_some() {}
        t.at(540)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2107, win 65535))
            .expect_events(&[Event::Writable]);
    }

    #[test]
    fn sent_data_is_acknowledged() {
        let mut t = established();
        assert_eq!(t.c.send(b"hello"), Ok(5));
        t.at(200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "hello"))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(1200)));
        assert_eq!(t.c.bytes_in_flight(), 5);
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 6, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Writable]);
        assert_eq!(t.c.bytes_in_flight(), 0);
        assert_eq!(t.c.snd_una(), SeqNumber(ISS + 6));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn nagle_holds_small_segments_while_data_is_in_flight() {
        let mut t = established();
        t.at(200);
        t.c.send(b"a").unwrap();
        t.expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "a"));
        t.c.send(b"b").unwrap();
        t.expect_nothing();
        t.c.send(b"c").unwrap();
        t.expect_nothing();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535))
            .expect(seg!(> P., seq ISS + 2, ack IRS + 1, win 65535, "bc"))
            .expect_nothing();
        // a full-sized segment is never held back
        let full = pattern(1460);
        t.c.send(&full).unwrap();
        t.expect(seg!(> P., seq ISS + 4, ack IRS + 1, win 65535, data &full[..]))
            .expect_nothing();
    }

    #[test]
    fn nodelay_sends_small_segments_at_once() {
        let mut t = established();
        t.c.set_nodelay(true);
        t.at(200);
        t.c.send(b"a").unwrap();
        t.expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "a"));
        t.c.send(b"b").unwrap();
        t.expect(seg!(> P., seq ISS + 2, ack IRS + 1, win 65535, "b"))
            .expect_nothing();
        assert_eq!(t.c.bytes_in_flight(), 2);
    }

    #[test]
    fn peer_window_is_scaled_by_its_shift() {
        let mut t = Tcp::connect(Config {
            window_scale: true,
            nodelay: true,
            ..cfg()
        });
        // a 65535-byte buffer needs no scaling, but we still offer the option
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, ws 0));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 1000, mss 1460, ws 4))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535));
        assert_eq!(t.c.window_shifts(), (4, 0));
        assert_eq!(t.c.snd_wnd(), 1000);
        t.at(150)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 200));
        assert_eq!(t.c.snd_wnd(), 3200);
        let data = pattern(4000);
        t.c.send(&data).unwrap();
        t.at(200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1460]))
            .expect(seg!(> ., seq ISS + 1461, ack IRS + 1, win 65535, data &data[1460..2920]))
            // 280 bytes of window left and 1080 to send: too little to be worth a segment
            // (sender silly window avoidance, RFC 9293 3.8.6.2.1)
            .expect_nothing();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2921, win 200))
            .expect(seg!(> P., seq ISS + 2921, ack IRS + 1, win 65535, data &data[2920..]))
            .expect_nothing();
    }

    #[test]
    fn window_update_after_the_application_reads_avoids_silly_windows() {
        let mut t = open(
            Config {
                recv_buffer: 4000,
                ..cfg()
            },
            65535,
        );
        let data = pattern(4000);
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535, data &data[..1460]))
            .expect_nothing()
            .inject(seg!(< ., seq IRS + 1461, ack ISS + 1, win 65535, data &data[1460..2920]))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2921, win 1080))
            .inject(seg!(< P., seq IRS + 2921, ack ISS + 1, win 65535, data &data[2920..]))
            .expect_nothing();
        t.fire(240)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 4001, win 0));
        assert_eq!(t.c.rcv_wnd(), 0);
        // a small read opens no window (RFC 9293 3.8.6.2.2)
        let mut buf = [0u8; 1500];
        assert_eq!(t.c.recv(&mut buf[..100]), Ok(100));
        t.expect_nothing();
        // min(MSS, buffer / 2) freed: the window opens at once
        assert_eq!(t.c.recv(&mut buf[100..]), Ok(1400));
        assert_eq!(&buf[..], &data[..1500]);
        t.expect(seg!(> ., seq ISS + 1, ack IRS + 4001, win 1500))
            .expect_nothing();
    }

    /// With a window scale shift, the window field counts 2^shift-byte units. Data that moves
    /// RCV.NXT by less than a unit leaves the advertised right edge between two units: rounded
    /// down, the window would end before the edge already advertised, and the peer would see it
    /// shrink while we still take what it sent up to the old edge. A sender that keeps its ACKs
    /// inside the window it knows (ours does, see `a_shrunk_window_keeps_the_ack_inside_it...`)
    /// then sends them at its shrunk right edge, below our RCV.NXT, and we drop them as old: two
    /// of our ends with shift 7 timed out exchanging ACKs neither accepted (sim_small_buffers'
    /// bursty-loss seeds 110, 113, 195, ...). The edge must not move left before the buffer's
    /// end: the window rounds up, as Linux's `tcp_select_window` does (RFC 7323 appendix F, RFC
    /// 9293 3.8.6.2.2). Rounded up from an edge already rounded, though, it would creep right on
    /// every segment (a peer sending a byte at a time keeps the window open forever): each
    /// rounding starts from the edge promised, so the edge stays within one step past the
    /// buffer's end, and moves left only there, by less than a step.
    #[test]
    fn a_scaled_window_never_moves_its_right_edge_left() {
        let mut t = Tcp::connect(Config {
            window_scale: true,
            window_shift: Some(7),
            recv_buffer: 4096,
            ..cfg()
        });
        // a SYN's window is never scaled
        t.expect(seg!(> S, seq ISS, win 4096, mss 1460, ws 7));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ws 7))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 32))
            .expect_events(&[Event::Connected]);
        assert_eq!(t.c.window_shifts(), (7, 7));
        let data = pattern(4096);
        // the application reads nothing: every segment eats into the window
        let end = SeqNumber(IRS + 1 + 4096);
        let mut edge = end.0;
        let mut at: usize = 0;
        for (i, len) in [100, 100, 1000, 28, 1400, 1, 100].into_iter().enumerate() {
            let now = 200 + 300 * i as u64;
            t.at(now)
                .inject(seg!(< P., seq IRS + 1 + at as u32, ack ISS + 1, win 65535,
                data &data[at..at + len]));
            at += len;
            let ack = match t.next() {
                Some(s) => s.repr,
                None => {
                    // the delayed ACK
                    let due = t.deadline().expect("a delayed ACK");
                    t.fire(due.as_millis());
                    t.next().expect("an ACK").repr
                }
            };
            assert_eq!(
                ack.ack,
                SeqNumber(IRS + 1 + at as u32),
                "all {at} bytes taken"
            );
            let right = ack.ack + (usize::from(ack.window) << 7);
            assert!(
                right.diff(SeqNumber(edge).min(end)) >= 0,
                "after {at} bytes: window {} ends at {right:?}, before {edge} advertised",
                ack.window
            );
            assert!(
                right.diff(end) < 128,
                "after {at} bytes: window {} ends at {right:?}, a step or more past {end:?}",
                ack.window
            );
            edge = right.0;
            t.expect_nothing();
        }
        // the peer may fill the window it was offered: we take every byte the buffer holds
        t.at(3000)
            .inject(seg!(< P., seq IRS + 1 + at as u32, ack ISS + 1, win 65535, data &data[at..]));
        assert_eq!(t.read_all(), data);
    }

    /// A connection with a 1000-byte receive buffer that sends "abc" at 200 ms, and then takes
    /// `data` from the peer (sent before the peer saw "abc", so acknowledging nothing of it),
    /// its ACK delayed.
    fn abc_out_then_data_in(data: &[u8]) -> Tcp {
        let mut t = open(
            Config {
                recv_buffer: 1000,
                ..cfg()
            },
            65535,
        );
        t.c.send(b"abc").unwrap();
        t.at(200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 1000, "abc"))
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, data data))
            .expect_events(&[Event::Readable]);
        t
    }

    /// A pure ACK below RCV.NXT but not below the ACK last sent (reordered behind data, or
    /// sent at a right edge that moved left past our buffer's end, see
    /// `a_scaled_window_never_moves_its_right_edge_left`) is taken, as Linux's `tcp_sequence`
    /// takes it from `rcv_wup`: its acknowledgement counts and no duplicate ACK answers it.
    /// From before the ACK last sent it is old: dropped, and answered.
    #[test]
    fn a_pure_ack_behind_unacknowledged_data_still_acknowledges() {
        let data = pattern(100);
        let mut t = abc_out_then_data_in(&data);
        // the peer's ACK of "abc", sent before its data, arrives after it
        t.at(210)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 4, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Writable]);
        assert_eq!(t.c.bytes_in_flight(), 0);
        t.fire(240)
            .expect(seg!(> ., seq ISS + 4, ack IRS + 101, win 900));
        // now older than the ACK last sent
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 4, win 65535))
            .expect(seg!(> ., seq ISS + 4, ack IRS + 101, win 900))
            .expect_nothing();
        assert_eq!(t.read_all(), data);
    }

    #[test]
    fn zero_receive_window_still_takes_acks() {
        let data = pattern(1000);
        let mut t = abc_out_then_data_in(&data);
        t.fire(240)
            .expect(seg!(> ., seq ISS + 4, ack IRS + 1001, win 0));
        // in sequence but no room: the ACK field counts, the payload does not
        t.at(300)
            .inject(seg!(< P., seq IRS + 1001, ack ISS + 4, win 65535, "more"))
            .expect(seg!(> ., seq ISS + 4, ack IRS + 1001, win 0))
            .expect_nothing()
            .expect_events(&[Event::Writable]);
        assert_eq!(t.c.bytes_in_flight(), 0);
        assert_eq!(t.deadline(), None);
        assert_eq!(t.read_all(), data);
    }

    #[test]
    fn zero_window_is_probed_until_it_opens() {
        let mut t = open(cfg(), 1000);
        let data = pattern(3000);
        t.c.send(&data).unwrap();
        t.at(200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1000]))
            .expect_nothing();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0))
            .expect_nothing()
            .expect_events(&[Event::Writable]);
        // the persist timer: one RTO, then one byte beyond the window
        t.fire(1300)
            .expect(seg!(> P., seq ISS + 1001, ack IRS + 1, win 65535, data &data[1000..1001]))
            .expect_nothing();
        t.at(1400)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0))
            .expect_nothing();
        // the window stays shut: probe again, the interval doubled per probe (Linux's
        // tcp_probe0_when: 1 s, 2 s, 4 s...)
        t.fire(3300)
            .expect(seg!(> P., seq ISS + 1001, ack IRS + 1, win 65535, data &data[1000..1001]))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(7300)));
        t.at(3400)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0))
            .expect_nothing();
        // the window opens: sending resumes at the byte the probe carried
        t.at(3500)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 2000))
            .expect(seg!(> ., seq ISS + 1001, ack IRS + 1, win 65535, data &data[1000..2460]))
            .expect_nothing();
        t.at(3600)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2461, win 2000))
            .expect(seg!(> P., seq ISS + 2461, ack IRS + 1, win 65535, data &data[2460..]))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(4600)));
        assert_eq!(t.state(), State::Established);
    }

    #[test]
    fn answered_zero_window_probes_never_time_out() {
        let mut t = open(
            Config {
                max_retries: 2,
                ..cfg()
            },
            1000,
        );
        let data = pattern(2000);
        t.c.send(&data).unwrap();
        t.at(200).next().unwrap();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0))
            .expect_nothing();
        let probe = seg!(> P., seq ISS + 1001, ack IRS + 1, win 65535, data &data[1000..1001]);
        let mut at = 1300;
        for backoff in 1..7 {
            t.fire(at).expect(probe).expect_nothing();
            t.at(at + 50)
                .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0));
            at += 1000 << backoff;
        }
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.c.take_error(), None);
    }

    #[test]
    fn unanswered_zero_window_probes_time_out() {
        let mut t = open(
            Config {
                max_retries: 2,
                ..cfg()
            },
            1000,
        );
        t.c.send(&pattern(2000)).unwrap();
        t.at(200).next().unwrap();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0))
            .expect_nothing();
        t.fire(1300).next().unwrap();
        t.fire(3300).next().unwrap();
        t.fire(7300).next().unwrap();
        t.fire(15300).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.c.take_error(), Some(Error::TimedOut));
    }

    #[test]
    fn rto_resends_the_same_bytes_and_doubles() {
        let mut t = established();
        t.c.send(b"hello").unwrap();
        let data = seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "hello");
        t.at(200).expect(data).expect_nothing();
        assert_eq!(t.c.rto(), Duration::from_secs(1));
        t.fire(1200).expect(data).expect_nothing();
        assert_eq!(t.c.rto(), Duration::from_secs(2));
        t.fire(3200).expect(data).expect_nothing();
        assert_eq!(t.deadline(), Some(ms(7200)));
        assert_eq!(t.c.stats().retrans_segs, 2);
        t.at(3300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 6, win 65535))
            .expect_nothing();
        assert_eq!(t.deadline(), None);
        // the ACK of a retransmission gives no sample (Karn): the backoff stays for the next
        // segment, and the first one timed ends it
        assert_eq!(t.c.rto(), Duration::from_secs(4));
        t.c.send(b"x").unwrap();
        t.at(3400)
            .expect(seg!(> P., seq ISS + 6, ack IRS + 1, win 65535, "x"))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(7400)));
        t.at(3500)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 7, win 65535))
            .expect_nothing();
        assert_eq!(t.c.rto(), Duration::from_secs(1));
    }

    #[test]
    fn rto_goes_back_to_the_oldest_unacknowledged_byte() {
        let mut t = established();
        t.c.set_nodelay(true);
        let data = pattern(3000);
        t.c.send(&data).unwrap();
        t.at(200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1460]))
            .expect(seg!(> ., seq ISS + 1461, ack IRS + 1, win 65535, data &data[1460..2920]))
            .expect(seg!(> P., seq ISS + 2921, ack IRS + 1, win 65535, data &data[2920..]))
            .expect_nothing();
        // the window collapses to one segment
        t.fire(1200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1460]))
            .expect_nothing();
        assert_eq!(t.c.cwnd(), 1460);
        // a pure ACK still carries the highest sequence number sent, which is what the peer
        // expects next (RFC 9293 3.10.7.4: a segment starting below RCV.NXT is unacceptable)
        t.at(1300)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "x"))
            .expect_nothing();
        t.fire(1340)
            .expect(seg!(> ., seq ISS + 3001, ack IRS + 2, win 65534));
        t.at(1400)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 1461, win 65535))
            .expect(seg!(> ., seq ISS + 1461, ack IRS + 2, win 65534, data &data[1460..2920]))
            .expect(seg!(> P., seq ISS + 2921, ack IRS + 2, win 65534, data &data[2920..]))
            .expect_nothing();
    }

    #[test]
    fn gives_up_after_max_retries() {
        let mut t = open(
            Config {
                max_retries: 2,
                ..cfg()
            },
            65535,
        );
        t.c.send(b"hello").unwrap();
        t.at(200).next().unwrap();
        t.fire(1200).next().unwrap();
        t.fire(3200).next().unwrap();
        t.expect_events(&[]);
        t.fire(7200).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Error(Error::TimedOut), Event::Closed]);
        assert_eq!(t.c.send(b"x"), Err(Error::TimedOut));
        assert_eq!(t.c.take_error(), Some(Error::TimedOut));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn unacceptable_segments_are_acked_and_dropped() {
        let mut t = established();
        t.at(200);
        // beyond the window
        t.inject(seg!(< P., seq IRS + 1 + 70_000, ack ISS + 1, win 65535, "far"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        // entirely old
        t.inject(seg!(< P., seq IRS - 99, ack ISS + 1, win 65535, "old"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        t.expect_events(&[]);
        assert_eq!(t.c.recv_queue(), 0);
        assert_eq!(t.state(), State::Established);
    }

    #[test]
    fn ack_of_unsent_data_is_acked_and_dropped() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 100, win 65535, "hi"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.c.recv_queue(), 0);
        assert_eq!(t.c.snd_una(), SeqNumber(ISS + 1));
    }

    #[test]
    fn syn_gets_a_challenge_ack() {
        let mut t = established();
        // in the window (RFC 5961 4.2)
        t.at(200)
            .inject(seg!(< S, seq IRS + 100, win 65535, mss 1460))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        assert_eq!(t.c.stats().challenge_acks, 1);
        // outside it: answered too, but not within 500 ms of the last answer (RFC 5961 7)
        t.inject(seg!(< S, seq IRS + 100_000, win 65535, mss 1460))
            .expect_nothing();
        t.at(700)
            .inject(seg!(< S, seq IRS + 100_000, win 65535, mss 1460))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        assert_eq!(t.state(), State::Established);
        t.expect_events(&[]);
    }

    #[test]
    fn challenge_acks_are_rate_limited() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< R, seq IRS + 100))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        // a flood of forged RSTs and SYNs within 500 ms: no more answers
        for k in 0..10u32 {
            t.at(200 + 40 * u64::from(k))
                .inject(seg!(< R, seq IRS + 200 + k))
                .inject(seg!(< S, seq IRS + 300 + k, win 65535, mss 1460))
                .expect_nothing();
        }
        assert_eq!(t.c.stats().challenge_acks, 1);
        assert_eq!(t.c.stats().challenge_acks_limited, 20);
        t.at(700)
            .inject(seg!(< R, seq IRS + 100))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        assert_eq!(t.c.stats().challenge_acks, 2);
        assert_eq!(t.state(), State::Established);
        t.expect_events(&[]);
    }

    #[test]
    fn ack_older_than_a_window_drops_the_segment() {
        // RFC 5961 5.2: SND.UNA - MAX.SND.WND <= SEG.ACK, else drop with a challenge ACK
        let mut t = established();
        // the peer's window is 65535: an ACK 65,546 behind SND.UNA is too old, data and all
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS.wrapping_sub(65_545), win 65535, b"evil"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        assert_eq!(t.c.recv_queue(), 0);
        assert_eq!(t.c.stats().challenge_acks, 1);
        t.expect_events(&[]);
        // one within a window behind is only an old duplicate: the data is taken
        t.at(300)
            .inject(seg!(< P., seq IRS + 1, ack ISS.wrapping_sub(99), win 65535, b"good"));
        assert_eq!(t.c.recv_queue(), 4);
        assert_eq!(t.read_all(), b"good");
        assert_eq!(t.c.stats().challenge_acks, 1);
    }

    #[test]
    fn abort_sends_rst() {
        let mut t = established();
        t.c.send(b"x").unwrap();
        t.at(200).next().unwrap();
        t.c.abort();
        assert_eq!(t.state(), State::Closed);
        assert!(!t.c.is_closed(), "the RST is still to be sent");
        t.expect(seg!(> R, seq ISS + 2)).expect_nothing();
        assert_eq!(t.c.stats().rst_out, 1);
        assert!(t.c.is_closed());
        t.expect_events(&[Event::Closed]);
        assert_eq!(t.deadline(), None);
        // from now on the peer's segments are strays
        t.inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 100))
            .expect(seg!(> R, seq ISS + 2));
    }

    #[test]
    fn abort_after_an_rto_resets_from_the_highest_sequence_sent() {
        let mut t = established();
        t.c.set_nodelay(true);
        t.c.send(&pattern(3000)).unwrap();
        t.at(200);
        for _ in 0..3 {
            t.next().unwrap();
        }
        // resends only the first segment: snd_nxt is back at ISS + 1461
        t.fire(1200).next().unwrap();
        t.expect_nothing();
        t.c.abort();
        // the peer may hold all 3000 bytes; an RST below its RCV.NXT would be ignored
        t.expect(seg!(> R, seq ISS + 3001)).expect_nothing();
    }

    #[test]
    fn paws_drops_old_timestamps() {
        let mut t = Tcp::connect(Config {
            timestamps: true,
            ..cfg()
        });
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, ts (ts(0)) 0));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 0))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(100)) 700))
            .expect_events(&[Event::Connected]);
        assert_eq!(t.c.mss(), 1448);
        // an older TSval: a segment from a previous wrap of the sequence space (RFC 7323 5.3)
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, ts 600 0, "stale"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(200)) 700))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.c.recv_queue(), 0);
        t.at(250)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, ts 720 0, "fresh"))
            .expect_nothing()
            .expect_events(&[Event::Readable]);
        t.fire(290)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 6, win 65530, ts (ts(290)) 720));
        assert_eq!(t.read_all(), b"fresh");
    }

    #[test]
    fn peek_and_zero_copy_reads() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "abcdef"));
        let mut buf = [0u8; 3];
        assert_eq!(t.c.peek(&mut buf), Ok(3));
        assert_eq!(&buf, b"abc");
        assert_eq!(t.c.recv_queue(), 6);
        let (a, b) = t.c.readable();
        assert_eq!([a, b].concat(), b"abcdef");
        assert_eq!(t.c.consume(4), 4);
        assert_eq!(t.read_all(), b"ef");
    }

    #[test]
    fn sequence_numbers_wrap_during_a_transfer() {
        let cfg = Config::default();
        let iss_a = SeqNumber(u32::MAX - 10_000);
        let iss_b = SeqNumber(u32::MAX - 20_000);
        let mut a = Connection::connect(cfg, US, PEER, iss_a);
        let syn = a.poll_transmit(Instant::ZERO).unwrap();
        let b = Connection::accept(cfg, PEER, US, iss_b, Instant::ZERO, &syn.repr);
        let mut p = Pair {
            a,
            b,
            now: Instant::ZERO,
            log: Vec::new(),
        };
        let to_b = pattern(300_000);
        let to_a: Vec<u8> = pattern(200_003).into_iter().rev().collect();
        let (mut sent_a, mut sent_b) = (0, 0);
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 8192];
        p.drive(
            |a, b| {
                if a.is_established() {
                    sent_a += a.send(&to_b[sent_a..]).unwrap_or(0);
                    sent_b += b.send(&to_a[sent_b..]).unwrap_or(0);
                }
                while let Ok(n @ 1..) = a.recv(&mut buf) {
                    got_a.extend_from_slice(&buf[..n]);
                }
                while let Ok(n @ 1..) = b.recv(&mut buf) {
                    got_b.extend_from_slice(&buf[..n]);
                }
            },
            |a, b| {
                b.rcv_nxt() == iss_a + 1 + to_b.len()
                    && a.rcv_nxt() == iss_b + 1 + to_a.len()
                    && a.bytes_in_flight() == 0
                    && b.bytes_in_flight() == 0
            },
        );
        assert!(got_b == to_b, "A -> B delivered {} bytes", got_b.len());
        assert!(got_a == to_a, "B -> A delivered {} bytes", got_a.len());
        assert_eq!(p.a.snd_una(), iss_a + 1 + to_b.len());
        assert_eq!(p.b.rcv_nxt(), iss_a + 1 + to_b.len());
        assert_eq!(p.b.snd_una(), iss_b + 1 + to_a.len());
        // both sequence spaces really crossed zero
        for from_a in [true, false] {
            let seqs: Vec<u32> = p
                .log
                .iter()
                .filter(|&&(f, _, len)| f == from_a && len > 0)
                .map(|&(_, s, _)| s.0)
                .collect();
            let before = seqs.iter().position(|&s| s > u32::MAX - 30_000).unwrap();
            let after = seqs.iter().position(|&s| s < 300_000).unwrap();
            assert!(before < after, "from_a={from_a}: {seqs:?}");
        }
        assert_eq!(p.a.stats().retrans_segs, 0);
        assert_eq!(p.b.stats().retrans_segs, 0);
        // and a clean close across the wrapped space
        p.a.close();
        p.b.close();
        p.drive(|_, _| {}, |a, b| a.is_closed() && b.is_closed());
        assert_eq!(p.a.state(), State::Closed);
        assert_eq!(p.b.state(), State::Closed);
    }
}

mod fin_wait_1 {
    use super::*;

    #[test]
    fn close_sends_fin() {
        let mut t = established();
        t.at(200).c.close();
        assert_eq!(t.state(), State::FinWait1);
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(1200)));
        assert_eq!(t.c.send(b"x"), Err(Error::BrokenPipe));
        assert!(t.c.is_write_shut());
    }

    #[test]
    fn fin_rides_on_the_last_data() {
        let mut t = established();
        t.c.send(b"bye").unwrap();
        t.c.close();
        t.at(200)
            .expect(seg!(> FP., seq ISS + 1, ack IRS + 1, win 65535, "bye"))
            .expect_nothing();
    }

    #[test]
    fn close_flushes_what_nagle_was_holding() {
        let mut t = established();
        t.c.send(b"a").unwrap();
        t.at(200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "a"));
        t.c.send(b"b").unwrap();
        t.c.close();
        // closing ends the stream: the last bytes and the FIN go at once
        t.expect(seg!(> FP., seq ISS + 2, ack IRS + 1, win 65535, "b"))
            .expect_nothing();
    }

    #[test]
    fn ack_of_fin_moves_to_fin_wait_2() {
        let mut t = established();
        t.at(200).c.close();
        t.next().unwrap();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.state(), State::FinWait2);
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn fin_with_ack_of_our_fin_moves_straight_to_time_wait() {
        let mut t = established();
        t.at(200).c.close();
        t.next().unwrap();
        t.at(300)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 2, win 65535))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534))
            .expect_nothing()
            .expect_events(&[Event::PeerClosed]);
        assert_eq!(t.state(), State::TimeWait);
        assert_eq!(t.deadline(), Some(ms(300 + TWO_MSL)));
    }

    #[test]
    fn fin_is_retransmitted_on_rto() {
        let mut t = established();
        t.at(200).c.close();
        let fin = seg!(> F., seq ISS + 1, ack IRS + 1, win 65535);
        t.expect(fin);
        t.fire(1200).expect(fin).expect_nothing();
        assert_eq!(t.deadline(), Some(ms(3200)));
        assert_eq!(t.state(), State::FinWait1);
    }

    #[test]
    fn data_is_still_received() {
        let mut t = established();
        t.at(200).c.close();
        t.next().unwrap();
        t.inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "hi"))
            .expect_events(&[Event::Readable]);
        assert_eq!(t.state(), State::FinWait1);
        assert_eq!(t.read_all(), b"hi");
    }
}

mod fin_wait_2 {
    use super::*;

    /// Closed at 200 ms, FIN acknowledged at 300 ms.
    pub(super) fn fin_wait_2() -> Tcp {
        let mut t = established();
        t.at(200).c.close();
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 1, win 65535));
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535));
        assert_eq!(t.state(), State::FinWait2);
        t
    }

    #[test]
    fn data_still_flows_in_after_our_half_close() {
        let mut t = fin_wait_2();
        t.at(400)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 2, win 65535, "more data"))
            .expect_nothing()
            .expect_events(&[Event::Readable]);
        t.fire(440)
            .expect(seg!(> ., seq ISS + 2, ack IRS + 10, win 65526));
        assert_eq!(t.read_all(), b"more data");
        assert_eq!(t.state(), State::FinWait2);
    }

    #[test]
    fn fin_moves_to_time_wait() {
        let mut t = fin_wait_2();
        t.at(400)
            .inject(seg!(< FP., seq IRS + 1, ack ISS + 2, win 65535, "tail"))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 6, win 65530))
            .expect_nothing()
            .expect_events(&[Event::Readable, Event::PeerClosed]);
        assert_eq!(t.state(), State::TimeWait);
        assert_eq!(t.deadline(), Some(ms(400 + TWO_MSL)));
        assert_eq!(t.read_all(), b"tail");
        assert_eq!(t.c.recv(&mut [0; 4]), Ok(0));
    }
}

mod close_wait {
    use super::*;

    /// The peer's FIN arrives at 200 ms.
    pub(super) fn close_wait() -> Tcp {
        let mut t = established();
        t.at(200)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 1, win 65535))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_nothing()
            .expect_events(&[Event::PeerClosed]);
        assert_eq!(t.state(), State::CloseWait);
        t
    }

    #[test]
    fn fin_moves_to_close_wait_and_reads_end() {
        let mut t = close_wait();
        assert_eq!(t.c.recv(&mut [0; 4]), Ok(0));
        assert!(t.c.at_eof());
        assert_eq!(t.c.rcv_nxt(), SeqNumber(IRS + 2));
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn data_before_the_fin_is_read_first() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< FP., seq IRS + 1, ack ISS + 1, win 65535, "last"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 6, win 65530))
            .expect_events(&[Event::Readable, Event::PeerClosed]);
        assert_eq!(t.state(), State::CloseWait);
        assert_eq!(t.read_all(), b"last");
        assert_eq!(t.c.recv(&mut [0; 4]), Ok(0));
    }

    #[test]
    fn fin_ahead_of_a_hole_waits_for_it() {
        let mut t = established();
        t.at(200)
            .inject(seg!(< F., seq IRS + 4, ack ISS + 1, win 65535))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_events(&[]);
        assert_eq!(t.state(), State::Established);
        t.inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "abc"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 5, win 65531))
            .expect_events(&[Event::Readable, Event::PeerClosed]);
        assert_eq!(t.state(), State::CloseWait);
    }

    #[test]
    fn we_can_still_send_after_the_peer_closed() {
        let mut t = close_wait();
        t.c.send(b"reply").unwrap();
        t.at(300)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 2, win 65534, "reply"))
            .expect_nothing();
        t.at(400)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 6, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Writable]);
        assert_eq!(t.state(), State::CloseWait);
        assert_eq!(t.c.bytes_in_flight(), 0);
    }

    #[test]
    fn close_sends_fin_and_moves_to_last_ack() {
        let mut t = close_wait();
        t.at(300).c.close();
        assert_eq!(t.state(), State::LastAck);
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(1300)));
    }

    #[test]
    fn retransmitted_fin_is_acked() {
        let mut t = close_wait();
        t.at(300)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 1, win 65535))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.state(), State::CloseWait);
    }
}

mod closing {
    use super::*;

    /// We close at 200 ms; the peer's FIN, not acknowledging ours, arrives at 250 ms.
    pub(super) fn closing() -> Tcp {
        let mut t = established();
        t.at(200).c.close();
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 1, win 65535));
        t.at(250)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 1, win 65535))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534))
            .expect_nothing()
            .expect_events(&[Event::PeerClosed]);
        assert_eq!(t.state(), State::Closing);
        t
    }

    #[test]
    fn ack_of_fin_moves_to_time_wait() {
        let mut t = closing();
        t.at(300)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 2, win 65535))
            .expect_nothing();
        assert_eq!(t.state(), State::TimeWait);
        assert_eq!(t.deadline(), Some(ms(300 + TWO_MSL)));
    }

    #[test]
    fn fin_is_retransmitted_on_rto() {
        let mut t = closing();
        t.fire(1200)
            .expect(seg!(> F., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_nothing();
        assert_eq!(t.state(), State::Closing);
    }

    #[test]
    fn simultaneous_close_of_two_connections() {
        let cfg = cfg();
        let mut a = Connection::connect(cfg, US, PEER, SeqNumber(ISS));
        let syn = a.poll_transmit(Instant::ZERO).unwrap();
        let b = Connection::accept(cfg, PEER, US, SeqNumber(IRS), Instant::ZERO, &syn.repr);
        let mut p = Pair {
            a,
            b,
            now: Instant::ZERO,
            log: Vec::new(),
        };
        p.drive(|_, _| {}, |a, b| a.is_established() && b.is_established());
        p.now = ms(100);
        p.a.close();
        p.b.close();
        let fin_a = p.a.poll_transmit(p.now).unwrap().repr;
        let fin_b = p.b.poll_transmit(p.now).unwrap().repr;
        p.a.handle_segment(p.now, *PEER.ip(), &fin_b);
        p.b.handle_segment(p.now, *US.ip(), &fin_a);
        assert_eq!(p.a.state(), State::Closing);
        assert_eq!(p.b.state(), State::Closing);
        p.step();
        assert_eq!(p.a.state(), State::TimeWait);
        assert_eq!(p.b.state(), State::TimeWait);
        assert_eq!(p.a.poll_timeout(), Some(ms(100 + TWO_MSL)));
        p.drive(|_, _| {}, |_, _| false);
        assert!(p.a.is_closed() && p.b.is_closed());
        assert_eq!(p.now, ms(100 + TWO_MSL));
        for c in [&mut p.a, &mut p.b] {
            assert_eq!(
                events(c),
                [Event::Connected, Event::PeerClosed, Event::Closed]
            );
        }
    }
}

mod last_ack {
    use super::*;

    /// The peer's FIN at 200 ms, our close and FIN at 300 ms.
    pub(super) fn last_ack(cfg: Config) -> Tcp {
        let mut t = open(cfg, 65535);
        t.at(200)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 1, win 65535))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_events(&[Event::PeerClosed]);
        t.at(300).c.close();
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 2, win 65534));
        assert_eq!(t.state(), State::LastAck);
        t
    }

    #[test]
    fn ack_of_fin_closes() {
        let mut t = last_ack(cfg());
        t.at(400)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 2, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Closed]);
        assert_eq!(t.state(), State::Closed);
        assert!(t.c.is_closed());
        assert_eq!(t.deadline(), None);
        assert_eq!(t.c.take_error(), None);
    }

    #[test]
    fn fin_is_retransmitted_then_gives_up() {
        let mut t = last_ack(Config {
            max_retries: 1,
            ..cfg()
        });
        t.fire(1300)
            .expect(seg!(> F., seq ISS + 1, ack IRS + 2, win 65534))
            .expect_nothing();
        t.fire(3300).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Error(Error::TimedOut), Event::Closed]);
    }
}

mod time_wait {
    use super::*;

    /// FIN-WAIT-2 at 300 ms, the peer's FIN at 400 ms.
    pub(super) fn time_wait() -> Tcp {
        time_wait_with(cfg())
    }

    /// [`time_wait`] with RFC 1337's remedy off (Linux's default `tcp_rfc1337 = 0`).
    pub(super) fn time_wait_without_rfc1337() -> Tcp {
        time_wait_with(Config {
            rfc1337: false,
            ..cfg()
        })
    }

    fn time_wait_with(cfg: Config) -> Tcp {
        let mut t = open(cfg, 65535);
        t.at(200).c.close();
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 1, win 65535));
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535));
        t.at(400)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 2, win 65535))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534))
            .expect_nothing()
            .expect_events(&[Event::PeerClosed]);
        assert_eq!(t.state(), State::TimeWait);
        t
    }

    #[test]
    fn lasts_exactly_two_msl() {
        let mut t = time_wait();
        let end = ms(400 + TWO_MSL);
        assert_eq!(t.deadline(), Some(end));
        t.now = end.checked_sub(Duration::from_nanos(1)).unwrap();
        t.c.handle_timeout(t.now);
        assert_eq!(t.state(), State::TimeWait);
        t.fire(400 + TWO_MSL).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Closed]);
        assert!(t.c.is_closed());
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn retransmitted_fin_is_acked_and_restarts_the_timer() {
        let mut t = time_wait();
        t.at(10_400)
            .inject(seg!(< F., seq IRS + 1, ack ISS + 2, win 65535))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.state(), State::TimeWait);
        assert_eq!(t.deadline(), Some(ms(10_400 + TWO_MSL)));
    }

    #[test]
    fn exact_rst_is_ignored() {
        // RFC 1337: an RST (an old duplicate, maybe) must not cut TIME-WAIT short, or old
        // segments of this connection may reach the next incarnation of its 4-tuple
        let mut t = time_wait();
        t.at(10_400)
            .inject(seg!(< R, seq IRS + 2))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.state(), State::TimeWait);
        assert_eq!(t.deadline(), Some(ms(400 + TWO_MSL)), "the full 2 MSL");
        t.fire(400 + TWO_MSL).expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Closed]);
    }

    #[test]
    fn application_calls_after_close() {
        let mut t = time_wait();
        assert_eq!(t.c.send(b"x"), Err(Error::BrokenPipe));
        assert_eq!(t.c.recv(&mut [0; 4]), Ok(0));
        t.c.close();
        t.c.abort();
        t.expect_nothing();
        assert_eq!(t.state(), State::Closed);
        t.expect_events(&[Event::Closed]);
    }
}

/// RFC 7323 on one connection: TS.Recent moves only with accepted segments, PAWS forgets a
/// TS.Recent 24 days old, and our TSval runs on a clock of its own.
mod timestamps {
    use super::*;

    /// Established at 100 ms with timestamps; TS.Recent is the peer's 700.
    fn with_ts() -> Tcp {
        let mut t = Tcp::connect(Config {
            timestamps: true,
            ..cfg()
        });
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, ts (ts(0)) 0));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 0))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(100)) 700))
            .expect_events(&[Event::Connected]);
        t
    }

    #[test]
    fn forged_in_window_segments_leave_ts_recent_alone() {
        // at RCV.NXT, so covering Last.ACK.sent, with a TSval far in the future: were it
        // recorded, PAWS would drop every real segment after it
        const FAR: u32 = 700 + (1 << 30);
        let forged = [
            // acknowledging data never sent (RFC 5961 5.2)
            seg!(< P., seq IRS + 1, ack ISS + 50_000, win 65535, ts FAR 0, "evil"),
            // a SYN in a synchronized state (RFC 5961 4.2)
            seg!(< S., seq IRS + 1, ack ISS + 1, win 65535, ts FAR 0),
            // no ACK bit
            seg!(< P, seq IRS + 1, win 65535, ts FAR 0, "evil"),
            // an RST inside the window but not at RCV.NXT (RFC 5961 3.2)
            seg!(< R., seq IRS + 100, ack ISS + 1, win 65535, ts FAR 0),
        ];
        for (i, f) in forged.into_iter().enumerate() {
            let mut t = with_ts();
            t.at(200).inject(f);
            // a challenge ACK, if any, still echoes the peer's real value
            if let Some(s) = t.next() {
                assert_eq!(s.repr.options.timestamp, Some((ts(200), 700)), "case {i}");
            }
            t.expect_nothing();
            assert_eq!(t.state(), State::Established, "case {i}");
            // the peer's next real segment passes PAWS, and its value is echoed
            t.at(250)
                .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, ts 720 (ts(200)), "real"))
                .expect_nothing()
                .expect_events(&[Event::Readable]);
            t.fire(290)
                .expect(seg!(> ., seq ISS + 1, ack IRS + 5, win 65531, ts (ts(290)) 720));
            assert_eq!(t.read_all(), b"real", "case {i}");
        }
    }

    #[test]
    fn paws_accepts_any_value_once_ts_recent_is_24_days_old() {
        const DAY_MS: u64 = 24 * 3600 * 1000;
        let mut t = with_ts();
        // TS.Recent (700) was taken at 100 ms; 1 ms short of 24 days later it still holds, and
        // an older value (the peer's clock wrapped meanwhile) is dropped
        let stale_at = 100 + 24 * DAY_MS;
        t.at(stale_at - 1)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, ts 600 0, "old"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(stale_at - 1)) 700))
            .expect_nothing()
            .expect_events(&[]);
        assert_eq!(t.c.recv_queue(), 0);
        // at 24 days TS.Recent is invalid (RFC 7323 5.5): the segment is taken, and its value
        // becomes TS.Recent
        t.at(stale_at)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, ts 600 0, "new"))
            .expect_nothing()
            .expect_events(&[Event::Readable]);
        t.fire(stale_at + 40)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 4, win 65532, ts (ts(stale_at + 40)) 600));
        assert_eq!(t.read_all(), b"new");
        // and PAWS holds again from that value on
        t.at(stale_at + 50)
            .inject(seg!(< P., seq IRS + 4, ack ISS + 1, win 65535, ts 599 0, "x"))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 4, win 65535, ts (ts(stale_at + 50)) 600));
        assert_eq!(t.c.recv_queue(), 0);
    }

    #[test]
    fn tsval_is_offset_per_connection_not_the_engine_clock() {
        let other = SocketAddrV4::new(*PEER.ip(), PEER.port() + 1);
        let (a, b) = (ts_clock(US, PEER, 0), ts_clock(US, other, 0));
        // two connections opened at the same instant of a clock that started at 0: their
        // values tell nothing of that clock, nor of each other
        assert_ne!(a, 0);
        assert_ne!(b, 0);
        assert_ne!(a, b);
        // a later incarnation of the same 4-tuple continues the same clock (PAWS, RFC 6191)
        let mut c = Connection::connect(cfg_all_options(), US, PEER, SeqNumber(77));
        let syn = c.poll_transmit(ms(5000)).expect("SYN");
        assert_eq!(syn.repr.options.timestamp, Some((a.wrapping_add(5000), 0)));
        // another secret, another clock
        let mut d = Connection::connect(
            Config {
                secret: Secret::from_seed(1),
                ..cfg_all_options()
            },
            US,
            PEER,
            SeqNumber(77),
        );
        let syn = d.poll_transmit(ms(0)).expect("SYN");
        assert_ne!(syn.repr.options.timestamp.map(|(v, _)| v), Some(a));
    }
}

/// Congestion control across losses and idleness: ssthresh once per loss episode (RFC 5681
/// 3.1), the undo of spurious recovery (RFC 3522 with timestamps, D-SACK), window validation
/// (RFC 7661) and the restart window after idle (RFC 5681 4.1).
mod congestion {
    use super::*;
    use xdp_tcp::tcp::Algorithm;

    const MSS: usize = 1460;

    /// Everything sent now: (seq, payload length) of each segment.
    fn flush(t: &mut Tcp) -> Vec<(SeqNumber, usize)> {
        std::iter::from_fn(|| t.next())
            .map(|s| (s.repr.seq, s.payload.len()))
            .collect()
    }

    /// The peer acknowledges everything below `ack` (a byte offset of our stream) now.
    fn ack(t: &mut Tcp, ack: usize) {
        t.inject(seg!(< ., seq IRS + 1, ack ISS + 1 + ack as u32, win 65535));
    }

    #[test]
    fn ssthresh_is_set_once_for_repeated_timeouts() {
        // CUBIC: 0.7 of the 10 segments in flight; NewReno: half of them
        for (alg, want) in [(Algorithm::Cubic, 7 * MSS), (Algorithm::NewReno, 5 * MSS)] {
            let mut t = open(
                Config {
                    congestion: alg,
                    ..cfg()
                },
                65535,
            );
            t.c.send(&pattern(10 * MSS)).unwrap();
            assert_eq!(t.at(200).c.cwnd(), 10 * MSS);
            assert_eq!(flush(&mut t).len(), 10);
            // three timeouts of one episode, nothing acknowledged in between
            for (k, at) in [1200, 3200, 7200].into_iter().enumerate() {
                t.fire(at);
                assert_eq!(flush(&mut t), [(SeqNumber(ISS + 1), MSS)], "{alg:?} {k}");
                assert_eq!(
                    (t.c.cwnd(), t.c.ssthresh()),
                    (MSS, want),
                    "{alg:?} after timeout {}",
                    k + 1
                );
            }
        }
    }

    #[test]
    fn a_timeout_during_fast_recovery_keeps_its_ssthresh() {
        let mut t = open(
            Config {
                congestion: Algorithm::NewReno,
                ..cfg()
            },
            65535,
        );
        t.c.send(&pattern(20 * MSS)).unwrap();
        t.at(200);
        assert_eq!(flush(&mut t).len(), 10);
        // three duplicate ACKs: fast retransmit, ssthresh half the flight
        t.at(300);
        for _ in 0..3 {
            ack(&mut t, 0);
        }
        assert_eq!(flush(&mut t), [(SeqNumber(ISS + 1), MSS)]);
        assert_eq!(t.c.ssthresh(), 5 * MSS);
        // seven more: each lets a new segment out past the 5-segment window (RFC 6582)
        for _ in 0..7 {
            ack(&mut t, 0);
        }
        assert_eq!(flush(&mut t).len(), 5);
        assert_eq!(t.c.bytes_in_flight(), 15 * MSS);
        // the retransmission is lost too: the timeout keeps the episode's ssthresh rather than
        // halve the 15 segments now in flight
        let rto = t.deadline().unwrap();
        t.fire(rto.as_millis());
        assert_eq!((t.c.cwnd(), t.c.ssthresh()), (MSS, 5 * MSS));
    }

    /// Timestamps without SACK, a 200 ms floor: RTO 300 ms after the 100 ms handshake sample.
    fn ts_cfg() -> Config {
        Config {
            timestamps: true,
            rto_min: Duration::from_millis(200),
            ..cfg()
        }
    }

    #[test]
    fn spurious_timeout_detected_by_timestamps_is_undone() {
        let mut t = Tcp::connect(ts_cfg());
        t.next().unwrap();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 0));
        flush(&mut t);
        let mss = t.c.mss();
        t.c.send(&pattern(10 * mss)).unwrap();
        t.at(200);
        assert_eq!(flush(&mut t).len(), 10);
        let (cwnd, ssthresh) = (t.c.cwnd(), t.c.ssthresh());
        assert_eq!((cwnd, ssthresh), (10 * mss, usize::MAX));
        t.fire(500);
        assert_eq!(flush(&mut t), [(SeqNumber(ISS + 1), mss)]);
        assert_eq!((t.c.cwnd(), t.c.ssthresh()), (mss, 7 * mss));
        // the originals were only delayed: the ACK of all of them echoes the TSval they carried
        // (200), older than the retransmission's (500)
        t.at(520).inject(
            seg!(< ., seq IRS + 1, ack ISS + 1 + 10 * mss as u32, win 65535, ts 710 (ts(200))),
        );
        assert_eq!((t.c.cwnd(), t.c.ssthresh()), (cwnd, ssthresh));
        let st = t.c.stats();
        assert_eq!((st.rto_events, st.undo_rto, st.undo_fast), (1, 1, 0));
    }

    #[test]
    fn needed_timeout_is_not_undone() {
        let mut t = Tcp::connect(ts_cfg());
        t.next().unwrap();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 0));
        flush(&mut t);
        let mss = t.c.mss();
        t.c.send(&pattern(10 * mss)).unwrap();
        t.at(200);
        flush(&mut t);
        t.fire(500);
        flush(&mut t);
        // the retransmission filled the hole: the ACK echoes its TSval
        t.at(520).inject(
            seg!(< ., seq IRS + 1, ack ISS + 1 + 10 * mss as u32, win 65535, ts 710 (ts(500))),
        );
        assert_eq!(t.c.ssthresh(), 7 * mss);
        assert_eq!(t.c.stats().undo_rto, 0);
    }

    #[test]
    fn spurious_fast_retransmit_reported_by_dsack_is_undone() {
        let mut t = Tcp::connect(Config {
            sack: true,
            ..cfg()
        });
        t.next().unwrap();
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, sackOK));
        flush(&mut t);
        assert!(t.c.sack_enabled());
        t.c.send(&pattern(10 * MSS)).unwrap();
        t.at(200);
        assert_eq!(flush(&mut t).len(), 10);
        // segments 2 to 4 arrive before the first: each SACK grows the window by a segment
        // (slow start), the third marks the first lost, 13 segments reduced to 0.7 of them
        t.at(300);
        for k in 2..=4u32 {
            let mut a = seg!(< ., seq IRS + 1, ack ISS + 1, win 65535);
            a.options.sack_blocks[0] = (
                SeqNumber(ISS + 1 + MSS as u32),
                SeqNumber(ISS + 1 + k * MSS as u32),
            );
            a.options.sack_len = 1;
            t.inject(a);
        }
        assert_eq!(flush(&mut t)[0], (SeqNumber(ISS + 1), MSS));
        assert_eq!(t.c.stats().fast_recoveries, 1);
        assert_eq!((t.c.cwnd(), t.c.ssthresh()), (9 * MSS, 9 * MSS));
        let (cwnd, ssthresh) = (13 * MSS, usize::MAX);
        // the first segment was only late: everything is acknowledged, then the retransmission
        // arrives as a duplicate and the peer reports it (RFC 2883)
        t.at(310);
        ack(&mut t, 10 * MSS);
        assert_eq!(t.c.ssthresh(), 9 * MSS, "the episode ended reduced");
        let mut d = seg!(< ., seq IRS + 1, ack ISS + 1 + 10 * MSS as u32, win 65535);
        d.options.sack_blocks[0] = (SeqNumber(ISS + 1), SeqNumber(ISS + 1 + MSS as u32));
        d.options.sack_len = 1;
        t.at(311).inject(d);
        assert_eq!((t.c.cwnd(), t.c.ssthresh()), (cwnd, ssthresh));
        let st = t.c.stats();
        assert_eq!((st.dsack_in, st.undo_fast, st.undo_rto), (1, 1, 0));
    }

    #[test]
    fn cwnd_does_not_grow_while_the_application_is_the_limit() {
        let mut t = established();
        // one segment per round trip, far below the 10-segment window: 20 round trips
        for k in 0..20 {
            let at = 200 + 200 * k as u64;
            t.c.send(&pattern(MSS)).unwrap();
            t.at(at);
            assert_eq!(flush(&mut t).len(), 1);
            t.at(at + 100);
            ack(&mut t, (k + 1) * MSS);
        }
        assert_eq!(t.c.cwnd(), 10 * MSS, "application-limited");
        // filling the window, the sender is network-limited: slow start grows it again
        t.c.send(&pattern(10 * MSS)).unwrap();
        t.at(4200);
        assert_eq!(flush(&mut t).len(), 10);
        t.at(4300);
        ack(&mut t, 30 * MSS);
        assert_eq!(t.c.cwnd(), 11 * MSS);
    }

    /// The window grown to 20 segments by a cwnd-limited flight of 10, sent at 200 ms and
    /// acknowledged one by one at 300 ms.
    fn grown() -> Tcp {
        let mut t = established();
        t.c.send(&pattern(10 * MSS)).unwrap();
        t.at(200);
        assert_eq!(flush(&mut t).len(), 10);
        t.at(300);
        for k in 1..=10 {
            ack(&mut t, k * MSS);
        }
        assert_eq!(t.c.cwnd(), 20 * MSS);
        assert_eq!(t.c.rto(), Duration::from_secs(1));
        t
    }

    #[test]
    fn the_window_restarts_from_the_initial_one_after_an_idle_rto() {
        let mut t = grown();
        // nothing sent for more than the RTO (1 s): at most the initial window leaves at once
        t.c.send(&pattern(30 * MSS)).unwrap();
        t.at(1201);
        assert_eq!(flush(&mut t).len(), 10);
        assert_eq!(t.c.cwnd(), 10 * MSS);
        // ssthresh keeps 3/4 of the window before (CUBIC's was never set)
        assert_eq!(t.c.ssthresh(), usize::MAX);
        // a shorter pause keeps the whole window
        let mut t = grown();
        t.c.send(&pattern(30 * MSS)).unwrap();
        t.at(1200);
        assert_eq!(flush(&mut t).len(), 20);
    }

    #[test]
    fn the_restart_keeps_three_quarters_of_the_window_in_ssthresh() {
        let mut t = open(
            Config {
                congestion: Algorithm::NewReno,
                ..cfg()
            },
            65535,
        );
        // a timeout sets ssthresh to 5 segments
        t.c.send(&pattern(10 * MSS)).unwrap();
        t.at(200);
        flush(&mut t);
        t.fire(1200);
        flush(&mut t);
        assert_eq!(t.c.ssthresh(), 5 * MSS);
        t.at(1300);
        ack(&mut t, 10 * MSS);
        // then round trips that fill the window, every segment acknowledged on its own, grow
        // it past the initial window (slow start to 5, then a segment per window)
        let (mut now, mut acked) = (1400, 10 * MSS);
        let mut round = |t: &mut Tcp, more: bool| {
            t.at(now);
            if more && t.c.send_queue() < 30 * MSS {
                t.c.send(&pattern(20 * MSS)).unwrap();
            }
            let sent = flush(t);
            t.at(now + 100);
            for (seq, len) in sent {
                acked = (seq - SeqNumber(ISS + 1)) + len;
                ack(t, acked);
            }
            now += 200;
        };
        while t.c.cwnd() < 14 * MSS {
            round(&mut t, true);
        }
        // the application stops; what it queued drains
        while t.c.send_queue() > 0 {
            round(&mut t, false);
        }
        let cwnd = t.c.cwnd();
        assert!(cwnd >= 14 * MSS && cwnd / 4 * 3 > 5 * MSS);
        // nothing sent since the last round for longer than the RTO
        let last_sent = now - 200;
        t.c.send(&pattern(20 * MSS)).unwrap();
        t.at(last_sent + t.c.rto().as_millis() + 1);
        assert_eq!(flush(&mut t).len(), 10, "restarts from the initial window");
        assert_eq!(t.c.cwnd(), 10 * MSS);
        assert_eq!(t.c.ssthresh(), cwnd / 4 * 3);
    }
}

/// An RST received in each state, as one table.
#[path = "tcp_states/rst.rs"]
mod rst;

/// Giving up as Linux does: keep-alive timeout, data after close, backed-off window probes.
#[path = "tcp_states/given_up.rs"]
mod given_up;

/// RFC 6298 on scripted RTT samples: each ACK arrives a chosen time after the segment it
/// acknowledges, and SRTT, RTTVAR and RTO must equal the values worked out by hand (all exact in
/// nanoseconds). Karn's rule: an ACK of a retransmitted segment gives no sample, unless its
/// timestamp echo (RFC 7323) proves which transmission it answers.
mod rtt_estimation {
    use super::*;

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    /// A floor low enough that no RTO in these tests is clamped.
    fn rtt_cfg(timestamps: bool) -> Config {
        Config {
            rto_min: Duration::from_millis(10),
            nodelay: true,
            timestamps,
            ..cfg()
        }
    }

    /// SRTT, RTTVAR and RTO in nanoseconds.
    #[track_caller]
    fn check(t: &Tcp, srtt: u64, rttvar: u64, rto: u64) {
        let i = t.c.info();
        assert_eq!(
            (i.srtt, i.rttvar, i.rto),
            (Some(ns(srtt)), ns(rttvar), ns(rto)),
            "at {:?}",
            t.now
        );
    }

    /// Sends one byte at `at` ms (after `sent_before` bytes); the peer acknowledges it at
    /// `ack_at` ms.
    fn exchange(t: &mut Tcp, at: u64, ack_at: u64, sent_before: u32) {
        t.at(at);
        t.c.send(b"x").unwrap();
        let s = t.next().expect("data sent");
        assert_eq!(s.repr.seq, SeqNumber(ISS + 1 + sent_before));
        t.at(ack_at)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2 + sent_before, win 65535))
            .expect_nothing();
    }

    #[test]
    fn samples_follow_rfc6298_and_karn_skips_retransmissions() {
        let mut t = open(rtt_cfg(false), 65535);
        // first sample, the handshake's R = 100: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR
        check(&t, 100_000_000, 50_000_000, 300_000_000);
        // R = 60: RTTVAR = 3/4 50 + 1/4 |100 - 60| = 47.5; SRTT = 7/8 100 + 1/8 60 = 95
        exchange(&mut t, 200, 260, 0);
        check(&t, 95_000_000, 47_500_000, 285_000_000);
        // R = 120: RTTVAR = 3/4 47.5 + 1/4 25 = 41.875; SRTT = 7/8 95 + 1/8 120 = 98.125;
        // RTO = 98.125 + 167.5
        exchange(&mut t, 300, 420, 1);
        check(&t, 98_125_000, 41_875_000, 265_625_000);
        // Karn: the segment times out and is resent; the ACK after that is ambiguous and gives
        // no sample, so the backoff stays until the next sample
        t.at(500);
        t.c.send(b"x").unwrap();
        t.next().unwrap();
        let rto_at = ms(500) + ns(265_625_000);
        assert_eq!(t.deadline(), Some(rto_at));
        t.now = rto_at;
        t.c.handle_timeout(t.now);
        let re = t.next().expect("retransmission");
        assert_eq!((re.repr.seq, re.payload.len()), (SeqNumber(ISS + 3), 1));
        assert_eq!(t.c.info().backoff, 1);
        check(&t, 98_125_000, 41_875_000, 531_250_000);
        assert_eq!(t.deadline(), Some(rto_at + ns(531_250_000)));
        t.at(800)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 4, win 65535))
            .expect_nothing();
        assert_eq!(t.c.info().backoff, 1);
        check(&t, 98_125_000, 41_875_000, 531_250_000);
        // the next clean sample, R = 100, ends it: RTTVAR = 3/4 41.875 + 1/4 1.875 = 31.875;
        // SRTT = 7/8 98.125 + 1/8 100 = 98.359375; RTO = 98.359375 + 127.5
        exchange(&mut t, 900, 1000, 3);
        assert_eq!(t.c.info().backoff, 0);
        check(&t, 98_359_375, 31_875_000, 225_859_375);
    }

    /// Handshake with timestamps at 0 / 100 ms, then one byte sent at 200 ms that times out at
    /// 500 ms and is resent with TSval 500.
    fn timed_out_with_timestamps() -> Tcp {
        let mut t = Tcp::connect(rtt_cfg(true));
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, ts (ts(0)) 0));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 0))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(100)) 700))
            .expect_events(&[Event::Connected]);
        check(&t, 100_000_000, 50_000_000, 300_000_000);
        t.at(200);
        t.c.send(b"x").unwrap();
        t.expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(200)) 700, "x"));
        t.fire(500)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(500)) 700, "x"));
        check(&t, 100_000_000, 50_000_000, 600_000_000);
        t
    }

    #[test]
    fn timestamp_echo_of_the_retransmission_gives_a_valid_sample() {
        let mut t = timed_out_with_timestamps();
        // TSecr 500 answers the retransmission sent at 500: R = 540 - 500 = 40.
        // RTTVAR = 3/4 50 + 1/4 60 = 52.5; SRTT = 7/8 100 + 1/8 40 = 92.5; RTO = 92.5 + 210
        t.at(540)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535, ts 710 (ts(500))))
            .expect_nothing();
        check(&t, 92_500_000, 52_500_000, 302_500_000);
    }

    #[test]
    fn timestamp_echo_of_the_original_is_timed_from_the_original() {
        let mut t = timed_out_with_timestamps();
        // TSecr 200: the ACK answers the first transmission, sent at 200 (RFC 7323 4.1), so
        // R = 540 - 200 = 340 and the backoff ends. RTTVAR = 3/4 50 + 1/4 240 = 97.5;
        // SRTT = 7/8 100 + 1/8 340 = 130; RTO = 130 + 390
        t.at(540)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535, ts 710 (ts(200))))
            .expect_nothing();
        assert_eq!(t.c.info().backoff, 0);
        check(&t, 130_000_000, 97_500_000, 520_000_000);
    }

    #[test]
    fn rto_for_data_is_three_seconds_after_a_lost_syn() {
        let mut t = Tcp::connect(cfg());
        let syn = seg!(> S, seq ISS, win 65535, mss 1460);
        t.expect(syn);
        t.fire(1000).expect(syn);
        // no timestamps: the SYN-ACK may answer either SYN, so there is no sample (Karn)
        t.at(1100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_events(&[Event::Connected]);
        assert_eq!(t.c.rtt().srtt(), None);
        assert_eq!((t.c.rto(), t.c.info().backoff), (Duration::from_secs(3), 0));
        t.c.send(b"x").unwrap();
        t.at(1200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "x"))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(4200)));
        t.fire(4200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "x"));
        assert_eq!(t.deadline(), Some(ms(10_200)));
    }

    #[test]
    fn rto_for_data_is_three_seconds_after_a_lost_syn_ack() {
        let syn = seg!(< S, seq IRS, win 65535, mss 1460);
        let mut t = Tcp::accept(cfg(), &syn);
        let syn_ack = seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460);
        t.expect(syn_ack);
        t.fire(1000).expect(syn_ack);
        t.at(1100)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535))
            .expect_events(&[Event::Connected]);
        assert_eq!(t.state(), State::Established);
        assert_eq!((t.c.rto(), t.c.info().backoff), (Duration::from_secs(3), 0));
        t.c.send(b"x").unwrap();
        t.at(1200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, "x"))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(4200)));
    }

    #[test]
    fn syn_ack_echoing_the_retransmitted_syn_is_timed() {
        let mut t = Tcp::connect(rtt_cfg(true));
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, ts (ts(0)) 0));
        t.fire(1000)
            .expect(seg!(> S, seq ISS, win 65535, mss 1460, ts (ts(1000)) 0));
        // the echo names the second SYN: R = 1100 - 1000, and no 3 s fallback
        t.at(1100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 (ts(1000))))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(1100)) 700))
            .expect_events(&[Event::Connected]);
        assert_eq!(t.c.info().backoff, 0);
        check(&t, 100_000_000, 50_000_000, 300_000_000);
    }
}

/// The peer's window from the sender's side: which segments it is taken from (RFC 9293
/// 3.10.7.4 with Linux's `tcp_may_update_window`), a window that shrinks below what was sent
/// (RFC 9293 3.8.6), windows smaller than a segment (silly-window avoidance and its override
/// timeout, RFC 9293 3.8.6.2.1) and zero windows of a connection the application closed.
mod peer_window {
    use super::*;

    fn nodelay() -> Config {
        Config {
            nodelay: true,
            ..cfg()
        }
    }

    #[test]
    fn a_reordered_update_at_the_same_point_is_taken_only_if_it_grew_or_closed() {
        let mut t = open(cfg(), 65535);
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 3000))
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 2000))
            .expect_nothing();
        // the same sequence and ACK with a smaller window may be an older update arriving late
        assert_eq!(t.c.snd_wnd(), 3000);
        t.inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 4000));
        assert_eq!(t.c.snd_wnd(), 4000);
        t.inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 0));
        assert_eq!(t.c.snd_wnd(), 0, "a closed window is always news");
        // a newer segment's window is taken whatever its size
        t.inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 1000, "x"));
        assert_eq!(t.c.snd_wnd(), 1000);
    }

    #[test]
    fn a_shrunk_window_keeps_the_ack_inside_it_and_resends_what_lay_beyond() {
        let mut t = open(nodelay(), 65535);
        let data = pattern(3000);
        t.c.send(&data).unwrap();
        t.at(200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1460]))
            .expect(seg!(> ., seq ISS + 1461, ack IRS + 1, win 65535, data &data[1460..2920]))
            .expect(seg!(> P., seq ISS + 2921, ack IRS + 1, win 65535, data &data[2920..]))
            .expect_nothing();
        // the peer moves its right edge from 65536 left to 1961, inside the second segment
        // (a receiver SHOULD NOT, a sender MUST cope: RFC 9293 3.8.6)
        t.at(300)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1461, win 500, "x"))
            .expect_nothing();
        assert_eq!(t.c.stats().window_shrunk, 1);
        assert_eq!(
            t.c.info().lost_bytes,
            80,
            "the segment past the edge is out of flight"
        );
        // the ACK carries the right edge, not the highest sequence number sent: a peer drops a
        // segment beyond its window, ACK and all (Linux's tcp_acceptable_seq)
        t.fire(340)
            .expect(seg!(> ., seq ISS + 1961, ack IRS + 2, win 65534))
            .expect_nothing();
        // the window opens again: the segment that lay beyond the edge goes again at once
        t.at(400)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 1961, win 2000))
            .expect(seg!(> P., seq ISS + 2921, ack IRS + 2, win 65534, data &data[2920..]))
            .expect_nothing();
        t.at(450)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 3001, win 2000))
            .expect_nothing();
        assert_eq!((t.c.bytes_in_flight(), t.deadline()), (0, None));
    }

    #[test]
    fn the_retransmission_timer_trims_its_segment_to_a_small_window() {
        let mut t = open(nodelay(), 65535);
        let data = pattern(1460);
        t.c.send(&data).unwrap();
        t.at(200)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, data &data[..]))
            .expect_nothing();
        // the peer's data brings a window of 500 bytes, less than the segment in flight
        t.at(300)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 500, "x"))
            .expect_nothing();
        t.fire(340)
            .expect(seg!(> ., seq ISS + 501, ack IRS + 2, win 65534))
            .expect_nothing();
        // the segment is lost: the timer resends what of it the window takes, not nothing
        t.fire(1200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2, win 65534, data &data[..500]))
            .expect_nothing();
        assert_eq!(t.c.stats().retrans_rto, 1);
        t.at(1300)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 501, win 2000))
            .expect(seg!(> P., seq ISS + 501, ack IRS + 2, win 65534, data &data[500..]))
            .expect_nothing();
        t.at(1400)
            .inject(seg!(< ., seq IRS + 2, ack ISS + 1461, win 2000))
            .expect_nothing();
        assert_eq!((t.c.bytes_in_flight(), t.deadline()), (0, None));
    }

    #[test]
    fn data_held_from_a_small_window_goes_after_the_override_timeout() {
        let mut t = open(cfg(), 4000);
        let data = pattern(5000);
        t.c.send(&data).unwrap();
        // 1080 bytes of window left, less than a segment and than half the largest window:
        // silly-window avoidance holds the rest (RFC 9293 3.8.6.2.1)
        t.at(200)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1460]))
            .expect(seg!(> ., seq ISS + 1461, ack IRS + 1, win 65535, data &data[1460..2920]))
            .expect_nothing();
        // everything acknowledged, and a window of 1000: still too small to be worth a segment,
        // and no ACK will come to say more: the window update that follows may be lost
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2921, win 1000))
            .expect_nothing()
            .expect_events(&[Event::Writable]);
        // the override timeout (one RTO here, at most 1 s) sends what the window takes
        t.fire(1300)
            .expect(seg!(> P., seq ISS + 2921, ack IRS + 1, win 65535, data &data[2920..3920]))
            .expect_nothing();
        assert_eq!(t.c.stats().small_window_sends, 1);
        assert_eq!(t.c.stats().zero_window_probes, 0);
        t.at(1400)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 3921, win 4000))
            .expect(seg!(> P., seq ISS + 3921, ack IRS + 1, win 65535, data &data[3920..]))
            .expect_nothing();
    }

    #[test]
    fn an_ack_for_bytes_forgotten_in_a_shut_window_is_taken() {
        let mut t = open(nodelay(), 65535);
        let data = pattern(3000);
        t.c.send(&data).unwrap();
        t.at(200);
        for _ in 0..3 {
            t.next().unwrap();
        }
        // a zero window at the same point (an older update, reordered): what was sent is
        // beyond the edge; then it opens to one segment, and sending starts again from SND.UNA
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 0))
            .expect_nothing();
        t.at(310)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 1460))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1460]))
            .expect_nothing();
        // the peer had taken all three segments after all: its ACK is for more than we have
        // sent since, but not more than we ever sent, so it is acceptable (RFC 5961 5.2)
        t.at(320)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 3001, win 65535))
            .expect_nothing();
        assert_eq!(t.c.snd_una(), SeqNumber(ISS + 3001));
        assert_eq!((t.c.bytes_in_flight(), t.c.stats().challenge_acks), (0, 0));
        assert_eq!(t.deadline(), None);
    }

    /// A zero window answered to every probe; the first probe at 1300 ms. Returns the probes
    /// sent until the connection gave up or `max` were sent.
    fn probe_a_shut_window(orphaned: bool, max: usize) -> (Tcp, usize) {
        let mut t = open(cfg(), 1000);
        let data = pattern(2000);
        t.c.send(&data).unwrap();
        t.at(200).next().unwrap();
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0))
            .expect_nothing();
        t.c.close();
        if orphaned {
            t.c.orphan();
        }
        let probe = seg!(> P., seq ISS + 1001, ack IRS + 1, win 65535, data &data[1000..1001]);
        let mut probes = 0;
        while probes < max {
            let at = t.deadline().expect("a timer").as_millis();
            t.fire(at);
            if t.state() == State::Closed {
                break;
            }
            t.expect(probe).expect_nothing();
            probes += 1;
            t.at(at + 50)
                .inject(seg!(< ., seq IRS + 1, ack ISS + 1001, win 0));
        }
        (t, probes)
    }

    #[test]
    fn an_orphaned_connection_gives_up_probing_a_shut_window() {
        // answered probes keep a connection alive as long as the peer likes (RFC 9293 3.8.6.1)
        let (t, probes) = probe_a_shut_window(false, 12);
        assert_eq!((probes, t.state()), (12, State::FinWait1));
        // but nobody waits for an orphan's data: after 8 probes (Linux's tcp_orphan_retries)
        // it gives up on the next expiry, sending nothing
        let (mut t, probes) = probe_a_shut_window(true, 12);
        assert_eq!(probes, 8);
        assert_eq!(t.c.stats().zero_window_probes, 8);
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.c.take_error(), Some(Error::TimedOut));
        t.expect_nothing();
    }
}

/// What the receiver reports in SACK options: blocks by recency (RFC 2018 4) and D-SACK for a
/// duplicate of out-of-order data (RFC 2883 4).
mod sack_reports {
    use super::*;

    /// ESTABLISHED with SACK (and no timestamps: four blocks fit).
    fn open_sack() -> Tcp {
        let mut t = Tcp::connect(Config {
            sack: true,
            ..cfg()
        });
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, sackOK));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, sackOK))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_events(&[Event::Connected]);
        assert!(t.c.sack_enabled());
        t
    }

    /// `r` carrying SACK blocks at these offsets of the peer's stream.
    fn sacks(mut r: TcpRepr<'static>, blocks: &[(u32, u32)]) -> TcpRepr<'static> {
        for (i, &(l, e)) in blocks.iter().enumerate() {
            r.options.sack_blocks[i] = (SeqNumber(IRS + 1 + l), SeqNumber(IRS + 1 + e));
        }
        r.options.sack_len = blocks.len() as u8;
        r
    }

    /// The peer's bytes `from..to` of `data` arrive now.
    fn bytes(t: &mut Tcp, data: &[u8], from: u32, to: u32) {
        let d = &data[from as usize..to as usize];
        t.inject(seg!(< ., seq IRS + 1 + from, ack ISS + 1, win 65535, data d));
    }

    #[test]
    fn blocks_follow_the_first_by_recency_and_duplicates_get_a_dsack() {
        let mut t = open_sack();
        let data = pattern(1000);
        let ack = seg!(> ., seq ISS + 1, ack IRS + 1, win 65535);
        t.at(200);
        bytes(&mut t, &data, 100, 200);
        t.expect(sacks(ack, &[(100, 200)]));
        bytes(&mut t, &data, 300, 400);
        t.expect(sacks(ack, &[(300, 400), (100, 200)]));
        bytes(&mut t, &data, 500, 600);
        t.expect(sacks(ack, &[(500, 600), (300, 400), (100, 200)]));
        // a segment into the oldest block puts it first; the others follow as reported last,
        // not in ascending order
        bytes(&mut t, &data, 200, 250);
        t.expect(sacks(ack, &[(100, 250), (500, 600), (300, 400)]));
        // a duplicate of out-of-order data: the D-SACK block is the duplicate, the block
        // holding it follows (RFC 2883 4, second case)
        bytes(&mut t, &data, 320, 350);
        t.expect(sacks(
            ack,
            &[(320, 350), (300, 400), (100, 250), (500, 600)],
        ))
        .expect_nothing();
        assert_eq!(t.c.stats().dsack_out, 1);
        // partly new, partly held: the held part is the duplicate
        bytes(&mut t, &data, 580, 650);
        t.expect(sacks(
            ack,
            &[(580, 600), (500, 650), (300, 400), (100, 250)],
        ))
        .expect_nothing();
        assert_eq!(t.c.stats().dsack_out, 2);
        // the hole filled: what is left beyond the new RCV.NXT, still by recency
        bytes(&mut t, &data, 0, 100);
        t.expect(sacks(
            seg!(> ., seq ISS + 1, ack IRS + 251, win 65535 - 250),
            &[(500, 650), (300, 400)],
        ))
        .expect_nothing();
    }

    #[test]
    fn a_paws_rejected_duplicate_of_held_data_gets_a_dsack() {
        let mut t = Tcp::connect(Config {
            sack: true,
            timestamps: true,
            ..cfg()
        });
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, sackOK, ts (ts(0)) 0));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, sackOK, ts 700 0))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(100)) 700))
            .expect_events(&[Event::Connected]);
        let data = pattern(200);
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535, ts 710 0, data &data[..100]));
        t.at(201)
            .inject(seg!(< ., seq IRS + 101, ack ISS + 1, win 65535, ts 720 0, data &data[100..]))
            .expect_nothing();
        // TS.Recent stays 710: the second segment began past the last ACK sent (RFC 7323 4.3)
        t.fire(240)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 201, win 65535 - 200, ts (ts(240)) 710));
        // the peer's next segment (a pure ACK) moves TS.Recent on
        t.at(250)
            .inject(seg!(< ., seq IRS + 201, ack ISS + 1, win 65535, ts 730 0))
            .expect_nothing();
        assert_eq!(t.read_all(), data);
        // the first segment again, delayed on the path: its TSval is older than TS.Recent, so
        // PAWS drops it, and the ACK reports it as a duplicate (Linux's tcp_send_dupack)
        t.at(300)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535, ts 710 0, data &data[..100]))
            .expect(sacks(
                seg!(> ., seq ISS + 1, ack IRS + 201, win 65535, ts (ts(300)) 730),
                &[(0, 100)],
            ))
            .expect_nothing();
        let st = t.c.stats();
        assert_eq!((st.paws_drops, st.dsack_out), (1, 1));
    }
}

/// When the receiver acknowledges: full-sized by the receive MSS (the largest segment seen, as
/// Linux's `rcv_mss`), and quick-ACK mode at the start and after idle (as Linux's
/// `tcp_enter_quickack_mode`).
mod quick_acks {
    use super::*;

    #[test]
    fn full_sized_is_what_the_peer_sends_not_our_mss() {
        // the peer announced MSS 1460 but its path carries 1360-byte segments (a 1400-byte MTU)
        let mut t = open(cfg(), 65535);
        assert_eq!(t.c.mss(), 1460);
        let data = pattern(2 * 1360);
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 65535, data &data[..1360]))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(240)));
        // the second full-sized segment is acknowledged at once (RFC 9293 3.8.6.3 / RFC 5681 4.2)
        t.at(201)
            .inject(seg!(< ., seq IRS + 1361, ack ISS + 1, win 65535, data &data[1360..]))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 2721, win 65535 - 2720))
            .expect_nothing();
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn every_segment_is_acked_at_once_at_the_start_and_after_idle() {
        let mut t = open(
            Config {
                quick_ack: true,
                ..cfg()
            },
            65535,
        );
        let data = pattern(2000);
        // min(65535 / (2 * 536), 16) = 16 segments get their ACK at once, short as they are
        let mut at = 200;
        for i in 0..16u32 {
            let d = &data[(i * 100) as usize..(i * 100 + 100) as usize];
            t.at(at)
                .inject(seg!(< P., seq IRS + 1 + i * 100, ack ISS + 1, win 65535, data d))
                .expect(
                    seg!(> ., seq ISS + 1, ack IRS + 101 + i * 100, win (65435 - i * 100) as u16),
                )
                .expect_nothing();
            at += 10;
        }
        assert_eq!(t.c.stats().quick_acks, 16);
        // then the delayed ACK again
        t.at(at)
            .inject(seg!(< P., seq IRS + 1601, ack ISS + 1, win 65535, data &data[1600..1700]))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(at + 40)));
        t.fire(at + 40)
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1701, win 65535 - 1700));
        // more than an RTO (1 s) without data: quick-ACK mode again
        at += 1100;
        t.at(at)
            .inject(seg!(< P., seq IRS + 1701, ack ISS + 1, win 65535, data &data[1700..1800]))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1801, win 65535 - 1800))
            .expect_nothing();
        assert_eq!(t.c.stats().quick_acks, 17);
        assert_eq!(t.read_all(), &data[..1800]);
    }

    #[test]
    fn an_interactive_connection_waits_for_its_reply_instead_of_quick_acking() {
        // Linux's ping-pong mode: once the application answers within the delayed-ACK time,
        // quick ACKs are suspended so the answer can carry the ACK; the delayed-ACK timer firing
        // (no answer came) ends the mode
        let mut t = open(
            Config {
                quick_ack: true,
                ..cfg()
            },
            65535,
        );
        let req = pattern(300);
        t.at(200)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, data &req[..100]))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 101, win 65435))
            .expect_nothing();
        // the answer 10 ms later: interactive from now on
        assert_eq!(t.at(210).c.send(b"reply"), Ok(5));
        t.expect(seg!(> P., seq ISS + 1, ack IRS + 101, win 65435, "reply"));
        // the next request waits for the application, though quick ACKs remain
        t.at(300)
            .inject(seg!(< P., seq IRS + 101, ack ISS + 6, win 65535, data &req[100..200]))
            .expect_nothing();
        assert_eq!(t.deadline(), Some(ms(340)));
        assert_eq!(t.at(310).c.send(b"again"), Ok(5));
        t.expect(seg!(> P., seq ISS + 6, ack IRS + 201, win 65335, "again"))
            .expect_nothing();
        // a request nobody answers gets its ACK from the timer, which ends the mode
        t.at(400)
            .inject(seg!(< P., seq IRS + 201, ack ISS + 11, win 65535, data &req[200..300]))
            .expect_nothing();
        t.fire(440)
            .expect(seg!(> ., seq ISS + 11, ack IRS + 301, win 65235));
        t.at(500)
            .inject(seg!(< P., seq IRS + 301, ack ISS + 11, win 65535, "x"))
            .expect(seg!(> ., seq ISS + 11, ack IRS + 302, win 65234))
            .expect_nothing();
        assert_eq!(t.c.stats().quick_acks, 2);
    }
}
