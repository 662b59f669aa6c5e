//! HTTP/1.1 server on the run-to-completion API: a fixed body, keep-alive (HTTP/1.0 only when
//! asked; `Connection: close` honoured), pipelined and partial requests, no request bodies.
//! Run as root: `http_server IFACE [PORT]` (default 8080); Ctrl-C stops it cleanly.

use std::collections::HashMap;

use xdp_tcp::api::{Cx, Handler, Stack};
use xdp_tcp::host::ConnId;

const KEEP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\nHello from xdp-tcp!\n";
const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\nHello from xdp-tcp!\n";
const MAX_HEAD: usize = 16 * 1024; // a longer request head is refused (reset)

/// Whether the connection ends after answering this request head.
fn wants_close(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let http10 = head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
    let conn = |v: &str| {
        head.lines()
            .any(|l| l.starts_with("connection:") && l.contains(v))
    };
    conn("close") || (http10 && !conn("keep-alive"))
}

#[derive(Default)] // per connection: responses owed, bytes of the first written, close after
struct Http(HashMap<ConnId, (usize, usize, bool)>);

impl Http {
    // writes owed responses while the send buffer has room; closes after the last if asked
    fn flush(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let (n, off, close) = self.0.entry(conn).or_default();
        while *n > 0 {
            let resp = if *n == 1 && *close { CLOSE } else { KEEP };
            match cx.write(conn, &resp[*off..]) {
                Ok(w) if *off + w == resp.len() => (*n, *off) = (*n - 1, 0),
                Ok(w) => *off += w,
                Err(_) => return, // full: on_writable comes back
            }
        }
        if *close {
            self.0.remove(&conn);
            cx.close(conn);
        }
    }
}

impl Handler for Http {
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let (mut requests, mut too_long, mut close) = (0, false, false);
        let r = cx.read(conn, |a, b| {
            let joined; // the ring wrapped: look at one contiguous copy (rare)
            let data = if b.is_empty() {
                a
            } else {
                joined = [a, b].concat();
                &joined[..]
            };
            let mut used = 0;
            while let Some(end) = data[used..].windows(4).position(|w| w == b"\r\n\r\n") {
                close = wants_close(&data[used..used + end]);
                (used, requests) = (used + end + 4, requests + 1);
                if close {
                    return data.len(); // nothing after a closing request is answered
                }
            }
            too_long = data.len() - used > MAX_HEAD;
            used
        });
        match r {
            _ if too_long => return cx.abort(conn),
            Ok(0) if cx.at_eof(conn) => return cx.close(conn), // on_closed forgets it
            Err(_) => return, // WouldBlock, or an error that on_error reports
            Ok(_) => {}
        }
        let owed = self.0.entry(conn).or_default();
        (owed.0, owed.2) = (owed.0 + requests, owed.2 | close);
        self.flush(cx, conn);
    }
    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.flush(cx, conn);
    }
    fn on_closed(&mut self, _: &mut Cx<'_>, conn: ConnId) {
        self.0.remove(&conn);
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().expect("usage: http_server IFACE [PORT]");
    let port: u16 = args.next().map_or(8080, |p| p.parse().expect("port"));
    let builder = Stack::builder().interface(&iface);
    let stack = builder.handler(port, Http::default).start()?;
    stack.shutdown_on_ctrl_c()?;
    println!("http on {}:{port}", stack.addr());
    stack.wait();
    let panicked = stack.handler_panicked();
    drop(stack); // closes connections, detaches the XDP program
    std::process::exit(i32::from(panicked));
}
