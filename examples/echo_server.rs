//! Echo server on the run-to-completion API: every byte received is written back from inside
//! the engine's loop. Run as root: `echo_server IFACE [PORT [CONTROL_SOCKET]]` (default port 7);
//! Ctrl-C stops it cleanly (connections closed, XDP program detached). With a control socket
//! path, `xdp-tcp stat PATH` shows its connections and counters.
//!
//! Zero-copy receive: in-order bytes are echoed from the received frame itself (`on_data`),
//! which copies each byte once, into the send buffer; bytes it cannot take at once (send buffer
//! full) wait in the receive buffer and go back through `on_readable`/`on_writable`.

use xdp_tcp::api::{Cx, Handler, Lent, Stack};
use xdp_tcp::host::ConnId;

/// Echoes; closes once the peer's FIN is reached and everything before it echoed.
struct Echo;

impl Echo {
    fn pump(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        loop {
            // Take no more than the send buffer can hold, so nothing has to wait here.
            let room = cx.send_space(conn);
            let mut copied = Vec::new();
            let r = cx.read(conn, |a, b| {
                let n = (a.len() + b.len()).min(room);
                let x = a.len().min(n);
                copied.extend_from_slice(&a[..x]);
                copied.extend_from_slice(&b[..n - x]);
                n
            });
            match r {
                Ok(0) if cx.at_eof(conn) => {
                    cx.close(conn);
                    return;
                }
                Ok(0) => return, // send buffer full: on_writable resumes
                Ok(_) => {
                    let _ = cx.write(conn, &copied);
                }
                Err(_) => return, // WouldBlock, or an error that on_error reports
            }
        }
    }
}

impl Handler for Echo {
    fn on_accept(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let _ = cx.set_nodelay(conn, true);
    }
    fn lends(&self) -> bool {
        true
    }
    fn on_data(&mut self, out: &mut Lent<'_>, _: ConnId, data: &[u8]) -> usize {
        out.write(data).unwrap_or(0)
    }
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.pump(cx, conn);
    }
    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.pump(cx, conn);
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: echo_server IFACE [PORT [CONTROL_SOCKET]]";
    let iface = args.next().expect(usage);
    let port: u16 = args.next().map_or(7, |p| p.parse().expect("port"));
    let mut builder = Stack::builder().interface(&iface).handler(port, || Echo);
    // `xdp-tcp stat PATH` lists its connections and counters
    if let Some(path) = args.next() {
        builder = builder.control_socket(path);
    }
    let stack = builder.start()?;
    stack.shutdown_on_ctrl_c()?;
    println!("echo on {}:{port}", stack.addr());
    stack.wait();
    let panicked = stack.handler_panicked();
    drop(stack); // closes connections, detaches the XDP program
    std::process::exit(i32::from(panicked));
}
