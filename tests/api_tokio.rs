//! The tokio integration (`--features tokio`) between two stacks on the in-memory link, no
//! root: echo, half-close, end of stream, reset, `tokio::time` timeouts, cancellation safety,
//! backpressure, a waiting read polled only when woken, and 1000 concurrent tasks.

mod common;

use common::mem_stack::{self, builder, payload};

use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use xdp_tcp::api::tokio::{TcpListener, TcpStream};
use xdp_tcp::api::{Stack, StackBuilder};
use xdp_tcp::io::mem::Cable;

/// Client on `C`, server on `S`, one cable.
fn stacks_with(client: StackBuilder, server: StackBuilder) -> (Stack, Stack, Cable) {
    mem_stack::pair((client, C), (server, S))
}

const C: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const S: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

fn stacks() -> (Stack, Stack, Cable) {
    stacks_with(builder(C), builder(S))
}

/// Serves `port` with an echo task per connection, full duplex through the halves.
fn serve_echo(s: &Stack, port: u16) {
    let l = TcpListener::bind(s, port).unwrap();
    tokio::spawn(async move {
        while let Ok((st, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = st.into_split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
}

async fn connected(c: &Stack, l: &TcpListener) -> (TcpStream, TcpStream) {
    let a = TcpStream::connect(c, l.local_addr().unwrap())
        .await
        .unwrap();
    let (b, peer) = l.accept().await.unwrap();
    assert_eq!(peer, a.local_addr().unwrap());
    (a, b)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_one_mebibyte_full_duplex() {
    let (c, s, _link) = stacks();
    serve_echo(&s, 7);
    let st = TcpStream::connect(&c, format!("{S}:7")).await.unwrap();
    let (mut r, mut w) = st.into_split();
    let data = payload(1, 1 << 20);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    within(r.read_to_end(&mut got)).await.unwrap();
    assert!(got == data, "{} bytes back", got.len());
    drop(writer.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_then_eof_both_ways() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 8).unwrap();
    let (mut a, mut b) = connected(&c, &l).await;
    a.write_all(b"request").await.unwrap();
    a.shutdown().await.unwrap();
    let mut req = Vec::new();
    within(b.read_to_end(&mut req)).await.unwrap();
    assert_eq!(req, b"request");
    // Our half-closed stream still reads; the peer's FIN ends it.
    b.write_all(b"response").await.unwrap();
    drop(b);
    let mut resp = Vec::new();
    within(a.read_to_end(&mut resp)).await.unwrap();
    assert_eq!(resp, b"response");
    assert_eq!(a.read(&mut [0u8; 8]).await.unwrap(), 0, "EOF again");
    let e = a.write_all(b"more").await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_is_econnreset_once_and_refused_is_econnrefused() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 9).unwrap();
    let (mut a, b) = connected(&c, &l).await;
    b.std().set_linger(Some(Duration::ZERO)).unwrap();
    drop(b);
    let e = within(a.read(&mut [0u8; 8])).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET));
    assert_eq!(a.read(&mut [0u8; 8]).await.unwrap(), 0);
    let e = a.write_all(b"x").await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE));

    let e = within(TcpStream::connect(&c, format!("{S}:10")))
        .await
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_cancelled_reads_lose_no_byte() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 11).unwrap();
    let (mut a, b) = connected(&c, &l).await;
    // Nothing comes: tokio's timer ends the wait, the stream is fine afterwards.
    let t = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(100), a.read(&mut [0u8; 8])).await;
    assert!(r.is_err() && t.elapsed() >= Duration::from_millis(100));
    // The peer writes in bursts while reads are cancelled every few milliseconds: every byte
    // arrives once, in order.
    let data = payload(2, 256 * 1024);
    let sent = data.clone();
    let (_br, mut bw) = b.into_split();
    let writer = tokio::spawn(async move {
        for part in sent.chunks(3000) {
            bw.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
        bw.shutdown().await.unwrap();
        bw
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1000];
    let mut cancelled = 0;
    loop {
        tokio::select! {
            r = a.read(&mut buf) => {
                let n = r.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            _ = tokio::time::sleep(Duration::from_micros(500)) => cancelled += 1,
        }
    }
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    assert!(cancelled > 0, "no read was cancelled");
    drop(writer.await.unwrap());
}

/// Counts the polls of a read that has nothing to read for a while.
struct Counted<'a> {
    s: &'a mut TcpStream,
    polls: Arc<AtomicUsize>,
}

impl std::future::Future for Counted<'_> {
    type Output = std::io::Result<usize>;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let mut b = [0u8; 16];
        let mut rb = ReadBuf::new(&mut b);
        Pin::new(&mut *self.s)
            .poll_read(cx, &mut rb)
            .map_ok(|()| rb.filled().len())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_read_is_polled_when_woken_not_in_a_loop() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 12).unwrap();
    let (mut a, mut b) = connected(&c, &l).await;
    let polls = Arc::new(AtomicUsize::new(0));
    let p = Arc::clone(&polls);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.write_all(b"late").await.unwrap();
        b
    });
    let n = within(Counted {
        s: &mut a,
        polls: p,
    })
    .await
    .unwrap();
    assert!(n > 0);
    // One poll to find nothing, one when the bytes came (a spurious one at most).
    assert!(polls.load(Ordering::SeqCst) <= 3, "{polls:?} polls");
    drop(writer.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_for_send_buffer_space() {
    let sndbuf = 64 * 1024;
    let (c, s, _link) = stacks_with(
        builder(C).send_buffer(sndbuf),
        // (pinned: the bridge taking bytes into its reader's credit looks like a reader keeping
        // up, and auto-tuning would otherwise grow the window past what the bound below counts)
        builder(S).recv_buffer(32 * 1024).recv_buffer_max(32 * 1024),
    );
    let l = TcpListener::bind(&s, 13).unwrap();
    let (mut a, mut b) = connected(&c, &l).await;
    // The peer does not read: writes stop after twice SO_SNDBUF plus what the peer's buffers
    // took (its receive buffer and as much handed on to its reader).
    let chunk = vec![5u8; 16 * 1024];
    let mut written = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), a.write(&chunk)).await {
            Ok(r) => written += r.unwrap(),
            Err(_) => break,
        }
        assert!(written < 8 << 20, "no backpressure");
    }
    assert!(
        written <= 2 * sndbuf + 2 * 32 * 1024 + chunk.len(),
        "{written}"
    );
    assert!(written >= 2 * sndbuf, "{written}");
    // Once the peer reads, the writer goes on.
    let reader = tokio::spawn(async move {
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match b.read(&mut buf).await.unwrap() {
                0 => return got,
                n => got += n,
            }
        }
    });
    within(a.write_all(&chunk)).await.unwrap();
    a.shutdown().await.unwrap();
    assert_eq!(within(reader).await.unwrap(), written + chunk.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_tasks() {
    const TASKS: usize = 1000;
    let small = |b: StackBuilder| b.send_buffer(16 * 1024).recv_buffer(16 * 1024);
    let (c, s, _link) = stacks_with(small(builder(C)), small(builder(S)).backlog(TASKS));
    serve_echo(&s, 14);
    let c = Arc::new(c);
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let mut st = TcpStream::connect(&c, (S, 14)).await?;
                let data = payload(i, 2000 + i % 3000);
                st.write_all(&data).await?;
                st.shutdown().await?;
                let mut got = Vec::new();
                st.read_to_end(&mut got).await?;
                Ok::<bool, std::io::Error>(got == data)
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("task finished in time")
            .unwrap()
            .expect("no error")
        {
            ok += 1;
        }
    }
    assert_eq!(ok, TASKS, "byte-exact echoes");
}
