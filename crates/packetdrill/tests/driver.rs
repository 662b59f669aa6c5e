//! The driver as packetdrill uses it, from two threads, against a peer that is another
//! xdp-tcp host: the virtual clock never goes backwards, blocking calls sleep until the network
//! or the clock wakes them and return at the exact virtual time they were woken, and the clock
//! runs itself forward to the stack's next timer when a packet is expected.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::thread;

use xdp_tcp::host::{Host, HostConfig};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp_packetdrill::{Driver, MsgFlags, PollFd, SockAddr, EPOCH};

const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PORT: u16 = 8080;
const TICK: Duration = Duration::from_micros(1);

fn driver() -> Arc<Driver> {
    Arc::new(Driver::new("profile=linux local_ip=192.168.0.2").unwrap())
}

fn now(d: &Driver) -> Instant {
    d.with(|a| a.now())
}

/// What gettimeofday reads at virtual time `t`.
fn wall(t: Instant) -> Duration {
    EPOCH + (t - Instant::ZERO)
}

/// The other end: an xdp-tcp host on the driver's clock.
struct Peer {
    host: Host,
}

impl Peer {
    fn new() -> Self {
        Peer {
            host: Host::new(HostConfig::new(PEER)),
        }
    }

    /// Everything the peer has to send, into the adapter; how many datagrams.
    fn send_all(&mut self, d: &Driver) -> usize {
        let t = now(d);
        let mut buf = vec![0u8; 2048];
        let mut n = 0;
        while let Some(tx) = self.host.poll_transmit(t, &mut buf) {
            d.netdev_send(&buf[..tx.len]).unwrap();
            n += 1;
        }
        n
    }

    /// One datagram from the adapter into the peer; returns when the adapter sent it.
    fn recv_one(&mut self, d: &Driver) -> Instant {
        let mut buf = vec![0u8; 70000];
        let (n, usecs) = d.netdev_receive(&mut buf).unwrap();
        self.host.handle_ipv4(now(d), &buf[..n]);
        Instant::ZERO + (Duration::from_micros(usecs) - EPOCH)
    }
}

fn listener(d: &Driver) -> i32 {
    let fd = d.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    d.bind(fd, SockAddr::V4(SocketAddrV4::new(ME, PORT)))
        .unwrap();
    d.listen(fd, 4).unwrap();
    fd
}

/// Waits (in real time) until a call sleeps on another thread.
fn wait_blocked(d: &Driver) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.has_blocked_call() {
        assert!(std::time::Instant::now() < until, "the call never blocked");
        thread::yield_now();
    }
}

/// A connection accepted from the peer, after a 100 ms handshake.
fn established(d: &Driver, peer: &mut Peer) -> i32 {
    let l = listener(d);
    peer.host
        .connect(now(d), SocketAddrV4::new(ME, PORT))
        .unwrap();
    peer.send_all(d);
    peer.recv_one(d);
    d.usleep(100_000);
    peer.send_all(d);
    d.accept(l).unwrap().0
}

#[test]
fn virtual_time_never_goes_backwards() {
    let d = driver();
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let d = d.clone();
            thread::spawn(move || {
                let mut last = Duration::ZERO;
                for i in 0..3000 {
                    let t = d.gettimeofday();
                    assert!(t > last, "reader {k}: {t:?} after {last:?}");
                    last = t;
                    if k == 1 && i % 10 == 0 {
                        d.usleep(37);
                    }
                }
            })
        })
        .collect();
    // meanwhile this thread drives a connection: every datagram is stamped no later than the
    // clock read after it, and no earlier than the one before
    let mut peer = Peer::new();
    let fd = established(&d, &mut peer);
    let mut last_sent = Instant::ZERO;
    for _ in 0..50 {
        assert_eq!(d.send(fd, &[7; 500], MsgFlags::default()), Ok(500));
        let sent = peer.recv_one(&d);
        assert!(sent >= last_sent);
        assert!(wall(sent) < d.gettimeofday());
        last_sent = sent;
        d.usleep(10_000);
        peer.send_all(&d);
    }
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn blocking_accept_wakes_at_the_handshake_s_last_ack() {
    let d = driver();
    let l = listener(&d);
    let t = {
        let d = d.clone();
        thread::spawn(move || {
            let r = d.accept(l);
            (r, d.gettimeofday())
        })
    };
    wait_blocked(&d);
    let mut peer = Peer::new();
    let id = peer
        .host
        .connect(now(&d), SocketAddrV4::new(ME, PORT))
        .unwrap();
    peer.send_all(&d);
    peer.recv_one(&d);
    d.usleep(100_000);
    assert!(
        d.has_blocked_call(),
        "still asleep: the handshake is not complete"
    );
    let ack_at = now(&d);
    peer.send_all(&d);
    // the woken accept reads the clock before this thread can move it on, however far
    d.usleep(1_000_000);
    let (r, woke) = t.join().unwrap();
    let (fd, remote) = r.unwrap();
    assert!(fd >= 0);
    assert_eq!(remote, peer.host.conn(id).unwrap().local());
    assert_eq!(woke, wall(ack_at + TICK));
    assert_eq!(now(&d), ack_at + TICK + Duration::from_secs(1));
}

#[test]
fn blocking_read_wakes_when_data_arrives() {
    let d = driver();
    let mut peer = Peer::new();
    let fd = established(&d, &mut peer);
    let t = {
        let d = d.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 100];
            let r = d.recv(fd, &mut buf, MsgFlags::default());
            (r, buf, d.gettimeofday())
        })
    };
    wait_blocked(&d);
    d.usleep(250_000);
    assert!(d.has_blocked_call());
    let id = peer
        .host
        .lookup(SocketAddrV4::new(ME, PORT), 32768)
        .unwrap();
    peer.host.send(id, b"hello").unwrap();
    let data_at = now(&d);
    assert_eq!(peer.send_all(&d), 1);
    d.usleep(1_000_000);
    let (r, buf, woke) = t.join().unwrap();
    assert_eq!(r, Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(woke, wall(data_at + TICK));
}

#[test]
fn blocking_connect_wakes_on_the_syn_ack_or_fails_on_a_reset() {
    let d = driver();
    let mut peer = Peer::new();
    peer.host.listen(PORT, 4);
    let fd = d.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    let remote = SockAddr::V4(SocketAddrV4::new(PEER, PORT));
    let t = {
        let d = d.clone();
        thread::spawn(move || (d.connect(fd, remote), d.gettimeofday()))
    };
    wait_blocked(&d);
    peer.recv_one(&d); // our SYN
    d.usleep(50_000);
    let synack_at = now(&d);
    peer.send_all(&d);
    d.usleep(1_000_000);
    let (r, woke) = t.join().unwrap();
    assert_eq!(r, Ok(()));
    assert_eq!(woke, wall(synack_at + TICK));

    // a second socket to a port nobody listens on: the peer answers with RST
    let fd = d.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
    let closed = SockAddr::V4(SocketAddrV4::new(PEER, PORT + 1));
    let t = {
        let d = d.clone();
        // as packetdrill does, the thread reads the clock when its call returns
        thread::spawn(move || (d.connect(fd, closed), d.gettimeofday()))
    };
    wait_blocked(&d);
    peer.recv_one(&d); // the handshake's ACK of the first connection
    peer.recv_one(&d); // the new SYN
    let rst_at = now(&d);
    peer.send_all(&d);
    d.usleep(1_000_000);
    let (r, woke) = t.join().unwrap();
    assert_eq!(r, Err(libc::ECONNREFUSED));
    assert_eq!(woke, wall(rst_at + TICK));
}

#[test]
fn a_poll_timeout_ends_at_its_deadline_while_the_clock_runs_past_it() {
    let d = driver();
    let mut peer = Peer::new();
    let fd = established(&d, &mut peer);
    let start = now(&d);
    let t = {
        let d = d.clone();
        thread::spawn(move || {
            let mut fds = [PollFd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            (d.poll(&mut fds, 500), d.gettimeofday())
        })
    };
    wait_blocked(&d);
    d.usleep(2_000_000);
    let (r, woke) = t.join().unwrap();
    assert_eq!(r, Ok(0));
    assert_eq!(woke, wall(start + Duration::from_millis(500) + TICK));
    assert_eq!(now(&d), start + Duration::from_secs(2));
}

#[test]
fn on_the_main_thread_a_blocking_call_runs_the_clock_itself() {
    let d = driver();
    let mut peer = Peer::new();
    let fd = established(&d, &mut peer);
    let start = now(&d);
    let mut fds = [PollFd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    assert_eq!(d.poll(&mut fds, 300), Ok(0));
    assert_eq!(now(&d), start + Duration::from_millis(300));
    // nothing armed and nothing that could ever wake it: an error instead of a hang
    let mut buf = [0u8; 10];
    assert_eq!(d.recv(fd, &mut buf, MsgFlags::default()), Err(libc::EAGAIN));
}

#[test]
fn netdev_receive_runs_the_clock_to_the_stack_s_next_timer() {
    let d = driver();
    let _l = listener(&d);
    let mut peer = Peer::new();
    peer.host
        .connect(now(&d), SocketAddrV4::new(ME, PORT))
        .unwrap();
    peer.send_all(&d);
    let first = peer.recv_one(&d);
    // nobody answers the SYN-ACK: its retransmission 1 s later is the next datagram
    let mut buf = vec![0u8; 2048];
    let (_, usecs) = d.netdev_receive(&mut buf).unwrap();
    assert_eq!(
        Duration::from_micros(usecs),
        wall(first + Duration::from_secs(1))
    );

    // nothing to send and no timer at all: an error, not a hang
    let quiet = driver();
    assert!(quiet.netdev_receive(&mut buf).is_err());
}
