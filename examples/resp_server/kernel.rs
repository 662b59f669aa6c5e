//! `--kernel`: the same store and request loop ([`Conn::answer`]) on the kernel's TCP sockets,
//! one thread (tokio's current-thread runtime) as the stack runs its handler on one engine, so a
//! benchmark compares the stacks rather than the servers.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{store::Store, Conn};

async fn connection(mut s: TcpStream, store: Rc<RefCell<Store>>, start: Instant) {
    let mut c = Conn::default();
    let mut buf = vec![0u8; 64 * 1024];
    while !c.close {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        c.input.extend_from_slice(&buf[..n]);
        let now_ms = start.elapsed().as_millis() as u64;
        c.answer(&mut store.borrow_mut(), now_ms);
        if s.write_all(&c.out).await.is_err() {
            return;
        }
        c.out.clear();
    }
}

/// Serves on 0.0.0.0:`port` until Ctrl-C.
pub fn serve(port: u16) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("0.0.0.0", port)).await?;
        println!("resp on 0.0.0.0:{port} (kernel)");
        let store = Rc::new(RefCell::new(Store::default()));
        let start = Instant::now();
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let (s, _) = r?;
                    s.set_nodelay(true)?;
                    tokio::task::spawn_local(connection(s, Rc::clone(&store), start));
                }
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}
