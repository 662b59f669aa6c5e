//! HTTP/1.1 server on the run-to-completion API: answers every request with the same body,
//! keeps connections alive, and handles pipelined and partial requests (only whole request
//! heads, up to the blank line, are consumed; request bodies are not supported). Run as root:
//! `http_server IFACE [PORT]` (default 8080); Ctrl-C stops it cleanly.

use std::collections::HashMap;

use xdp_tcp::api::{Cx, Handler, Stack};
use xdp_tcp::flow::ConnId;

/// The one response: its body is the last line, 20 bytes.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\nHello from xdp-tcp!\n";
/// A request head longer than this is refused (connection reset).
const MAX_HEAD: usize = 16 * 1024;

#[derive(Default)]
struct Http {
    /// Per connection: responses owed and how much of the first one is already written.
    owed: HashMap<ConnId, (usize, usize)>,
    scratch: Vec<u8>,
}

impl Http {
    /// Writes owed responses while the send buffer has room.
    fn flush(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let (n, off) = self.owed.entry(conn).or_default();
        while *n > 0 {
            match cx.write(conn, &RESPONSE[*off..]) {
                Ok(w) if *off + w == RESPONSE.len() => (*n, *off) = (*n - 1, 0),
                Ok(w) => *off += w,
                Err(_) => return, // full: on_writable comes back
            }
        }
    }
}

impl Handler for Http {
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let (mut requests, mut too_long) = (0, false);
        let scratch = &mut self.scratch;
        let r = cx.read(conn, |a, b| {
            // The ring wrapped: look at one contiguous copy (rare).
            let data = if b.is_empty() {
                a
            } else {
                scratch.clear();
                scratch.extend_from_slice(a);
                scratch.extend_from_slice(b);
                &scratch[..]
            };
            let mut used = 0;
            while let Some(end) = data[used..].windows(4).position(|w| w == b"\r\n\r\n") {
                used += end + 4;
                requests += 1;
            }
            too_long = data.len() - used > MAX_HEAD;
            used
        });
        match r {
            _ if too_long => return cx.abort(conn),
            Ok(0) if cx.at_eof(conn) => {
                self.owed.remove(&conn);
                return cx.close(conn);
            }
            Err(_) => return, // WouldBlock, or an error that on_error reports
            Ok(_) => {}
        }
        self.owed.entry(conn).or_default().0 += requests;
        self.flush(cx, conn);
    }
    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.flush(cx, conn);
    }
    fn on_closed(&mut self, _cx: &mut Cx<'_>, conn: ConnId) {
        self.owed.remove(&conn);
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().expect("usage: http_server IFACE [PORT]");
    let port: u16 = args.next().map_or(8080, |p| p.parse().expect("port"));
    let stack = Stack::builder()
        .interface(&iface)
        .handler(port, Http::default)
        .start()?;
    stack.shutdown_on_ctrl_c()?;
    println!("http on {}:{port}", stack.addr());
    stack.wait();
    let panicked = stack.handler_panicked();
    drop(stack); // closes connections, detaches the XDP program
    std::process::exit(i32::from(panicked));
}
