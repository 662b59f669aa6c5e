//! A Redis-protocol (RESP2) key-value server on the run-to-completion handler API: PING, ECHO,
//! GET, SET with EX/PX (and NX/XX), DEL, INCR, MGET, MSET, EXISTS; pipelined requests are
//! answered in order from one read; unknown commands get Redis's error; a malformed request an
//! error and the connection closed. Serve it to `redis-cli` or `redis-benchmark`.
//!
//! Run as root: `resp_server IFACE [PORT] [--kernel]` (default 6379); Ctrl-C stops it cleanly.
//! With `--kernel` the same store and protocol code serve on the kernel's sockets instead (one
//! thread, as the stack's one engine; IFACE is then unused), for comparison. The store
//! lives in the handler of the engine, so this runs one queue (the default); with several, each
//! engine would hold its own store.

mod kernel;
mod proto;
mod store;

use std::collections::HashMap;
use std::time::Instant;

use xdp_tcp::api::{Cx, Handler, Lent, Stack};
use xdp_tcp::host::ConnId;

/// Replies not yet in the send buffer past this: stop reading the connection's requests until
/// they are (a client that pipelines without reading cannot make us hold more).
const MAX_OWED: usize = 1 << 20;

struct Resp {
    store: store::Store,
    start: Instant,
    /// Per connection: bytes received of an incomplete request, replies not yet written, and
    /// whether to close once they are.
    conns: HashMap<ConnId, Conn>,
}

#[derive(Default)]
struct Conn {
    input: Vec<u8>,
    out: Vec<u8>,
    close: bool,
}

impl Conn {
    /// Runs every complete request in `input`, appending the replies to `out`; a malformed one
    /// gets an error reply and marks the connection for closing. Whether any request was
    /// complete. The same code serves both back-ends.
    fn answer(&mut self, store: &mut store::Store, now_ms: u64) -> bool {
        let (used, malformed) = run_requests(&self.input, store, now_ms, &mut self.out);
        if let Some(why) = malformed {
            proto::error(&mut self.out, &format!("ERR Protocol error: {why}"));
            self.close = true;
        }
        self.input.drain(..used);
        used > 0
    }
}

/// Runs every complete request at the start of `input`, appending the replies to `out`.
/// Returns the bytes they took and, if a malformed request stopped it, why.
fn run_requests(
    input: &[u8],
    store: &mut store::Store,
    now_ms: u64,
    out: &mut Vec<u8>,
) -> (usize, Option<&'static str>) {
    let mut used = 0;
    loop {
        match proto::parse(&input[used..]) {
            Ok(Some((args, n))) => {
                store.execute(&args, now_ms, out);
                used += n;
            }
            Ok(None) => return (used, None),
            Err(proto::ProtocolError(why)) => return (used, Some(why)),
        }
    }
}

impl Resp {
    fn new() -> Self {
        Resp {
            store: store::Store::default(),
            start: Instant::now(),
            conns: HashMap::new(),
        }
    }

    fn flush(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        while !c.out.is_empty() {
            match cx.write(conn, &c.out) {
                Ok(0) | Err(_) => break, // full: on_writable comes back
                Ok(n) => {
                    c.out.drain(..n);
                }
            }
        }
        if c.out.is_empty() && c.close {
            self.conns.remove(&conn);
            cx.close(conn);
        }
    }

    fn serve(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let now_ms = self.start.elapsed().as_millis() as u64;
        let c = self.conns.entry(conn).or_default();
        while !c.close && c.out.len() < MAX_OWED {
            // The bytes join what is left of an incomplete request: one copy, simple.
            let r = cx.read(conn, |a, b| {
                c.input.extend_from_slice(a);
                c.input.extend_from_slice(b);
                a.len() + b.len()
            });
            match r {
                Ok(0) if cx.at_eof(conn) => c.close = true,
                Ok(_) => {}
                Err(_) => {}
            }
            if !c.answer(&mut self.store, now_ms) {
                break;
            }
        }
        self.flush(cx, conn);
    }
}

impl Handler for Resp {
    /// Zero-copy receive: requests complete in the received frame run straight from it; an
    /// incomplete one at its end (or a malformed one) is left to the receive buffer and
    /// `on_readable`, and so is everything while a partial request or unsent replies wait.
    fn lends(&self) -> bool {
        true
    }

    fn on_data(&mut self, out: &mut Lent<'_>, conn: ConnId, data: &[u8]) -> usize {
        let c = self.conns.entry(conn).or_default();
        if !c.input.is_empty() || !c.out.is_empty() || c.close {
            return 0;
        }
        let now_ms = self.start.elapsed().as_millis() as u64;
        let (used, _) = run_requests(data, &mut self.store, now_ms, &mut c.out);
        if let Ok(n) = out.write(&c.out) {
            c.out.drain(..n);
        }
        used
    }

    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.serve(cx, conn);
    }

    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.flush(cx, conn);
        // Requests left unread while replies were owed.
        if self.conns.get(&conn).is_some_and(|c| c.out.is_empty()) {
            self.serve(cx, conn);
        }
    }

    fn on_closed(&mut self, _: &mut Cx<'_>, conn: ConnId) {
        self.conns.remove(&conn);
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let on_kernel = args.iter().any(|a| a == "--kernel");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let iface = pos
        .next()
        .expect("usage: resp_server IFACE [PORT] [--kernel]");
    let port: u16 = pos.next().map_or(6379, |p| p.parse().expect("port"));
    if on_kernel {
        return kernel::serve(port);
    }
    let stack = Stack::builder()
        .interface(iface)
        .handler(port, Resp::new)
        .start()?;
    stack.shutdown_on_ctrl_c()?;
    println!("resp on {}:{port}", stack.addr());
    stack.wait();
    let panicked = stack.handler_panicked();
    drop(stack);
    std::process::exit(i32::from(panicked));
}
