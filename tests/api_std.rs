//! The std::net-like API as a `std::net` user reaches for it, between two stacks on the
//! in-memory link (no root): `&Stack` shared by threads, streams split into halves read and
//! written from different threads at once, `Read`/`Write` for `&TcpStream`, `try_clone`,
//! `connect` with `"ip:port"`, `SO_LINGER` as Linux, and the readiness descriptor under
//! `poll(2)`. The descriptors' close-on-exec on a real interface is in `api_veth.rs`.

mod common;

use common::mem_stack::{self, builder, payload};

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xdp_tcp::api::{
    Cx, Handler, OwnedReadHalf, OwnedWriteHalf, Stack, StackBuilder, TcpListener, TcpStream,
};
use xdp_tcp::host::ConnId;
use xdp_tcp::io::mem::Cable;

/// Client on `C`, server on `S`, one cable.
fn stacks_with(client: StackBuilder, server: StackBuilder) -> (Stack, Stack, Cable) {
    mem_stack::pair((client, C), (server, S))
}

const C: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const S: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);

fn connected(c: &Stack, l: &TcpListener) -> (TcpStream, TcpStream) {
    let a = TcpStream::connect(c, l.local_addr().unwrap()).expect("connect");
    let (b, _) = l.accept().expect("accept");
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (a, b)
}

/// Echo in the engine's loop: whatever arrives goes back as far as the send buffer allows.
struct Echo;

impl Handler for Echo {
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let room = cx.send_space(conn).min(buf.len());
            if room == 0 {
                return;
            }
            match cx.recv(conn, &mut buf[..room]) {
                Ok(0) => {
                    if cx.at_eof(conn) {
                        cx.close(conn);
                    }
                    return;
                }
                Ok(n) => {
                    let _ = cx.write(conn, &buf[..n]);
                }
                Err(_) => return,
            }
        }
    }

    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.on_readable(cx, conn);
    }
}

const fn assert_sync<T: Sync + Send>() {}
const _: () = assert_sync::<Stack>();
const _: () = assert_sync::<TcpStream>();
const _: () = assert_sync::<TcpListener>();

#[test]
fn two_hundred_streams_shared_by_eight_threads_read_and_written_from_different_threads() {
    const STREAMS: usize = 200;
    const THREADS: usize = 8;
    const LEN: usize = 96 * 1024;
    let (c, s, _link) = stacks_with(builder(C), builder(S).handler(7, || Echo));
    let c = &c;
    let started = Instant::now();
    // Every thread opens its share through the same `&Stack`, `"ip:port"` as std takes it.
    let halves: Vec<Vec<(usize, OwnedReadHalf, OwnedWriteHalf)>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                sc.spawn(move || {
                    (t..STREAMS)
                        .step_by(THREADS)
                        .map(|i| {
                            let st = TcpStream::connect(c, format!("{S}:7")).expect("connect");
                            st.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                            st.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                            let (r, w) = st.into_split();
                            (i, r, w)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Thread t writes the streams that thread t opened; thread (t + 1) % 8 reads them, both
    // at once, each blocking on its own half.
    let mut readers: Vec<Vec<(usize, OwnedReadHalf)>> = (0..THREADS).map(|_| Vec::new()).collect();
    let mut writers: Vec<Vec<(usize, OwnedWriteHalf)>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (t, group) in halves.into_iter().enumerate() {
        for (i, r, w) in group {
            readers[(t + 1) % THREADS].push((i, r));
            writers[t].push((i, w));
        }
    }
    let checked: usize = std::thread::scope(|sc| {
        for ws in writers {
            sc.spawn(move || {
                for (i, mut w) in ws {
                    w.write_all(&payload(i, LEN)).expect("write");
                    w.shutdown().expect("shutdown");
                }
            });
        }
        let rs: Vec<_> = readers
            .into_iter()
            .map(|rs| {
                sc.spawn(move || {
                    let mut n = 0;
                    for (i, mut r) in rs {
                        let mut got = Vec::with_capacity(LEN);
                        r.read_to_end(&mut got).expect("read");
                        assert!(got == payload(i, LEN), "stream {i}: {} bytes", got.len());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        rs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(checked, STREAMS);
    eprintln!(
        "{STREAMS} streams x {LEN} bytes each way in {:?}",
        started.elapsed()
    );
    drop(s);
}

#[test]
fn read_and_write_through_shared_references_and_clones() {
    let (c, s, _link) = stacks_with(builder(C), builder(S));
    let l = TcpListener::bind(&s, 9).unwrap();
    let (a, b) = connected(&c, &l);
    let a2 = a.try_clone().unwrap();
    // One thread blocks reading through `&a` while another writes through a clone: no
    // busy-waiting, no `&mut`.
    std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut buf = [0u8; 5];
            (&a).read_exact(&mut buf).unwrap();
            buf
        });
        std::thread::sleep(Duration::from_millis(50));
        (&a2).write_all(b"hello").unwrap();
        let mut echo = [0u8; 5];
        (&b).read_exact(&mut echo).unwrap();
        (&b).write_all(&echo).unwrap();
        assert_eq!(&reader.join().unwrap(), b"hello");
    });
    // `&self` setters, getters and `take_error`, on any handle.
    a.set_nodelay(true).unwrap();
    assert!(a2.nodelay().unwrap());
    a2.set_ttl(17).unwrap();
    assert_eq!(a.ttl().unwrap(), 17);
    assert_eq!(a.set_ttl(0).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    assert!(a.take_error().unwrap().is_none());
    assert_eq!(a.peer_addr().unwrap(), l.local_addr().unwrap());
    // The connection lives until the last handle goes.
    drop(a);
    (&a2).write_all(b"still").unwrap();
    let mut buf = [0u8; 5];
    (&b).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still");
    drop(a2);
    assert_eq!(
        (&b).read(&mut buf).unwrap(),
        0,
        "FIN once the last handle is dropped"
    );
}

#[test]
fn connect_takes_what_std_resolves() {
    let (c, s, _link) = stacks_with(builder(C), builder(S));
    let l = TcpListener::bind(&s, 11).unwrap();
    for target in [
        format!("{S}:11"),
        format!("[::1]:11,{S}:11").split(',').nth(1).unwrap().into(),
    ] {
        let a = TcpStream::connect(&c, target.as_str()).unwrap();
        let (b, peer) = l.accept().unwrap();
        assert_eq!(peer, a.local_addr().unwrap());
        drop((a, b));
    }
    let a = TcpStream::connect(&c, (S, 11)).unwrap();
    drop(a);
    let e = TcpStream::connect(&c, "[::1]:11").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = TcpStream::connect(&c, "not an address").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

#[test]
fn linger_zero_resets_and_linger_t_waits_for_the_ack_at_most_t() {
    // The server's receive buffer is small and its reader slow, so that written bytes wait.
    let (c, s, _link) = stacks_with(builder(C), builder(S).recv_buffer(16 * 1024));
    let l = TcpListener::bind(&s, 13).unwrap();

    // linger 0: RST on close, the peer reads ECONNRESET.
    let (a, b) = connected(&c, &l);
    a.set_linger(Some(Duration::ZERO)).unwrap();
    (&a).write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    (&b).read_exact(&mut one).unwrap();
    drop(a);
    let e = (&b).read(&mut one).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET));

    // linger t with bytes the peer will not take: the close blocks for t, then goes on.
    let (a, b) = connected(&c, &l);
    a.set_linger(Some(Duration::from_millis(400))).unwrap();
    a.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while let Ok(n) = (&a).write(&chunk) {
        sent += n;
    }
    let t = Instant::now();
    drop(a);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Nothing was lost: the close went on in the background.
    let mut got = Vec::new();
    (&b).read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), sent);

    // linger t with a reader: the close returns once the FIN is acknowledged, well before t.
    let (a, b) = connected(&c, &l);
    a.set_linger(Some(Duration::from_secs(20))).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        (&b).read_to_end(&mut got).map(|_| got.len())
    });
    (&a).write_all(&vec![1u8; 200 * 1024]).unwrap();
    let t = Instant::now();
    drop(a);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(reader.join().unwrap().unwrap(), 200 * 1024);
}

fn poll_in(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, ours, for the call's duration.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    assert!(n >= 0, "{}", std::io::Error::last_os_error());
    n == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn the_readiness_descriptor_wakes_poll_for_reads_writes_and_accepts() {
    use std::os::fd::AsRawFd;
    let (c, s, _link) = stacks_with(builder(C), builder(S).recv_buffer(16 * 1024));
    let l = TcpListener::bind(&s, 15).unwrap();
    l.set_nonblocking(true).unwrap();
    let lfd = l.as_raw_fd();
    // Readable at first; an accept with nothing queued re-arms it.
    assert!(poll_in(lfd, 0));
    assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(!poll_in(lfd, 50));
    let a = TcpStream::connect(&c, l.local_addr().unwrap()).unwrap();
    assert!(poll_in(lfd, 5000), "a queued connection wakes poll");
    let (b, _) = l.accept().unwrap();

    b.set_nonblocking(true).unwrap();
    let fd = b.as_raw_fd();
    assert!(poll_in(fd, 0));
    let mut buf = [0u8; 64];
    assert_eq!(
        (&b).read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert!(!poll_in(fd, 50), "nothing new since EAGAIN");
    (&a).write_all(b"ping").unwrap();
    assert!(poll_in(fd, 5000), "bytes wake poll");
    assert_eq!((&b).read(&mut buf).unwrap(), 4);

    // Writes: until EAGAIN, then poll until the peer reads and credit comes back.
    let chunk = vec![3u8; 32 * 1024];
    let mut sent = 0;
    // Acknowledgements of what the peer's buffers took give credit back for a while: write
    // until EAGAIN, again after each wake-up, until no credit comes.
    let mut settled = false;
    for _ in 0..100 {
        loop {
            match (&b).write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        if !poll_in(fd, 100) {
            settled = true;
            break;
        }
    }
    assert!(
        settled,
        "credit keeps coming with a peer that does not read"
    );
    let drain = std::thread::spawn(move || {
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while got < sent {
            got += (&a).read(&mut buf).unwrap();
        }
        a
    });
    assert!(poll_in(fd, 5000), "credit wakes poll");
    assert!((&b).write(&chunk).unwrap() > 0);
    let a = drain.join().unwrap();
    // End of stream wakes it too.
    a.shutdown(Shutdown::Write).unwrap();
    loop {
        match (&b).read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(poll_in(fd, 5000), "FIN wakes poll")
            }
            Err(e) => panic!("{e}"),
        }
    }
    let _: SocketAddr = b.local_addr().unwrap();
}

#[test]
fn a_writer_blocked_for_credit_learns_of_a_reset_without_reading() {
    let (c, s, _link) = stacks_with(builder(C), builder(S).recv_buffer(16 * 1024));
    let l = TcpListener::bind(&s, 17).unwrap();
    let (a, b) = connected(&c, &l);
    let (mut r, mut w) = a.into_split();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = w.write_all(&chunk) {
                return e;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    b.set_linger(Some(Duration::ZERO)).unwrap();
    drop(b);
    let e = writer.join().unwrap();
    assert!(
        matches!(e.raw_os_error(), Some(libc::ECONNRESET) | Some(libc::EPIPE)),
        "{e}"
    );
    let mut buf = [0u8; 8];
    // The error was reported once, to the writer; the reader sees the end.
    r.set_read_timeout_for_test();
    assert_eq!(r.read(&mut buf).unwrap(), 0);
}

trait ForTest {
    fn set_read_timeout_for_test(&self);
}

impl ForTest for OwnedReadHalf {
    fn set_read_timeout_for_test(&self) {
        self.stream()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
}

#[test]
fn shutdown_from_a_shared_stack_ends_blocked_calls() {
    let (c, s, _link) = stacks_with(builder(C), builder(S));
    let l = TcpListener::bind(&s, 19).unwrap();
    let (a, _b) = connected(&c, &l);
    a.set_read_timeout(None).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let mut buf = [0u8; 8];
            tx.send((&a).read(&mut buf)).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        // `shutdown` through `&Stack`, as another thread holding it would.
        c.shutdown().unwrap();
        let r = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the read returned");
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ECONNABORTED));
    });
    assert!(TcpStream::connect(&c, format!("{S}:19")).is_err());
}
