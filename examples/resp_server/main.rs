//! A Redis-protocol (RESP2) key-value server on the run-to-completion handler API: PING, ECHO,
//! GET, SET with EX/PX (and NX/XX), DEL, INCR, MGET, MSET, EXISTS; pipelined requests are
//! answered in order from one read; unknown commands get Redis's error; a malformed request an
//! error and the connection closed. Serve it to `redis-cli` or `redis-benchmark`.
//!
//! Run as root: `resp_server IFACE [PORT]` (default 6379); Ctrl-C stops it cleanly. The store
//! lives in the handler of the engine, so this runs one queue (the default); with several, each
//! engine would hold its own store.

mod proto;
mod store;

use std::collections::HashMap;
use std::time::Instant;

use xdp_tcp::api::{Cx, Handler, Stack};
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
            let mut reqs = Vec::new();
            let mut bad = None;
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
            let mut used = 0;
            loop {
                match proto::parse(&c.input[used..]) {
                    Ok(Some((args, n))) => {
                        reqs.push(args);
                        used += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        bad = Some(e);
                        break;
                    }
                }
            }
            c.input.drain(..used);
            for args in &reqs {
                self.store.execute(args, now_ms, &mut c.out);
            }
            if let Some(proto::ProtocolError(why)) = bad {
                proto::error(&mut c.out, &format!("ERR Protocol error: {why}"));
                c.close = true;
            }
            if reqs.is_empty() {
                break;
            }
        }
        self.flush(cx, conn);
    }
}

impl Handler for Resp {
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
    let mut args = std::env::args().skip(1);
    let iface = args.next().expect("usage: resp_server IFACE [PORT]");
    let port: u16 = args.next().map_or(6379, |p| p.parse().expect("port"));
    let stack = Stack::builder()
        .interface(&iface)
        .handler(port, Resp::new)
        .start()?;
    stack.shutdown_on_ctrl_c()?;
    println!("resp on {}:{port}", stack.addr());
    stack.wait();
    let panicked = stack.handler_panicked();
    drop(stack);
    std::process::exit(i32::from(panicked));
}
