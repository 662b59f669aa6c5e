//! The control socket ([`StackBuilder::control_socket`](super::StackBuilder::control_socket)):
//! a unix stream socket served by a thread of its own, never by an engine, which answers
//! `xdp-tcp stat PATH`.
//!
//! Protocol: one request line per connection, one answer, then the server closes.
//! - `stats`: the [`StackStats`](super::StackStats) as JSON ([`StackStats::to_json`]).
//!
//! Anything else is answered `{"error": "..."}`. A client that says nothing for a second is
//! dropped, so one stuck client delays the next by at most that.
//!
//! [`StackStats::to_json`]: super::StackStats::to_json

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::stats::StatsSource;

/// The running control socket; stopped (and its file removed) by [`ControlServer::stop`].
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file left by a process that died) and starts
    /// serving it.
    pub fn start(path: &Path, source: Arc<StatsSource>) -> io::Result<ControlServer> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists and is not a socket", path.display()),
                ));
            }
            // A live stack answers a connect; a stale socket refuses it and may go.
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another stack answers there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xdp-tcp-control".into())
            .spawn(move || serve(listener, &source, &flag))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (a connection of our own ends its `accept`) and removes the file.
    pub fn stop(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        let _ = t.join();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: UnixListener, source: &StatsSource, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(c) = conn {
            let _ = answer(c, source);
        }
    }
}

fn answer(conn: UnixStream, source: &StatsSource) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    // one line of at most 1 KiB
    BufReader::new(&conn).take(1024).read_line(&mut line)?;
    let reply = match line.trim() {
        "stats" => match source.collect(Duration::from_secs(2)) {
            Ok(s) => s.to_json(),
            Err(e) => error_json(&e.to_string()),
        },
        other => error_json(&format!("unknown request {other:?}; try \"stats\"")),
    };
    let mut w = &conn;
    w.write_all(reply.as_bytes())?;
    w.write_all(b"\n")
}

fn error_json(msg: &str) -> String {
    let escaped: String = msg
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect();
    format!("{{\"error\":\"{escaped}\"}}")
}
