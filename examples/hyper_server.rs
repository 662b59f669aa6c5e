//! HTTP/1.1 on hyper over the tokio integration (`--features tokio`): the handler is plain
//! hyper code, unaware of the stack; the same binary serves on tokio's kernel sockets with
//! `--kernel`, for comparison.
//!
//! `hyper_server IFACE [PORT] [--kernel]` (default port 8080; as root for the stack). Ctrl-C
//! stops it cleanly.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use xdp_tcp::api::{tokio::TcpListener, Stack};

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("Content-Type", "text/plain")
        .body(Full::new(Bytes::from_static(b"Hello from xdp-tcp!\n")))
        .expect("a valid response"))
}

/// Serves one connection of either back-end.
fn serve<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(io), service_fn(hello))
            .await;
    });
}

async fn on_stack(iface: &str, port: u16) -> std::io::Result<()> {
    let stack = Arc::new(Stack::builder().interface(iface).start()?);
    stack.shutdown_on_ctrl_c()?;
    let listener = TcpListener::bind(&stack, port)?;
    println!("hyper on {}:{port} (xdp-tcp)", stack.addr());
    let waiter = Arc::clone(&stack);
    let mut stop = tokio::task::spawn_blocking(move || waiter.wait());
    loop {
        tokio::select! {
            // the stop first: once the stack shuts down, accept() fails too (ECONNABORTED)
            biased;
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    s.set_nodelay(true)?;
                    serve(s);
                }
                // shutting down: `stop` is about to be ready
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => break,
                Err(e) => return Err(e),
            },
        }
    }
    drop(listener);
    stack.shutdown()
}

async fn on_kernel(port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("hyper on 0.0.0.0:{port} (kernel)");
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (s, _) = r?;
                s.set_nodelay(true)?;
                serve(s);
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kernel = args.iter().any(|a| a == "--kernel");
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let iface = pos
        .next()
        .expect("usage: hyper_server IFACE [PORT] [--kernel]")
        .clone();
    let port: u16 = pos.next().map_or(8080, |p| p.parse().expect("port"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if kernel {
            on_kernel(port).await
        } else {
            on_stack(&iface, port).await
        }
    })
}
