//! The control socket ([`StackBuilder::control_socket`](super::StackBuilder::control_socket)):
//! a unix stream socket served by a thread of its own, never by an engine, which answers
//! `xdp-tcp stat PATH`.
//!
//! Protocol: one request line per connection, one answer, then the server closes.
//! - `stats`: the [`StackStats`](super::StackStats) as JSON ([`StackStats::to_json`]).
//! - `pcap start SNAPLEN MAX_BYTES MAX_PACKETS FILE`: starts a capture into `FILE` (the rest of
//!   the line, an absolute path; a bound of 0 means none), see [`super::capture`].
//! - `pcap stop`: stops it. `pcap status`: how it goes. All three answer
//!   `{"pcap": {"state": "running"|"stopped"|"limit"|"failed", "file", "packets", "bytes"}}`
//!   (`"error"` too when it failed).
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

use super::capture::{Capture, CaptureOptions, CaptureState, CaptureStatus};
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
    pub fn start(
        path: &Path,
        source: Arc<StatsSource>,
        capture: Arc<Capture>,
    ) -> io::Result<ControlServer> {
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
            .spawn(move || serve(listener, &source, &capture, &flag))?;
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

fn serve(listener: UnixListener, source: &StatsSource, capture: &Capture, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(c) = conn {
            let _ = answer(c, source, capture);
        }
    }
}

fn answer(conn: UnixStream, source: &StatsSource, capture: &Capture) -> io::Result<()> {
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
        other => match other.strip_prefix("pcap ") {
            Some(req) => pcap(capture, req),
            None => error_json(&format!("unknown request {other:?}; try \"stats\"")),
        },
    };
    let mut w = &conn;
    w.write_all(reply.as_bytes())?;
    w.write_all(b"\n")
}

fn pcap(capture: &Capture, req: &str) -> String {
    let status = match req {
        "stop" => capture.stop(),
        "status" => capture
            .status()
            .ok_or_else(|| io::Error::other("no capture was started")),
        _ => match parse_start(req) {
            Ok((file, opts)) => capture.start(file, opts).and_then(|()| {
                capture
                    .status()
                    .ok_or_else(|| io::Error::other("capture vanished"))
            }),
            Err(e) => return error_json(&e),
        },
    };
    match status {
        Ok(s) => status_json(&s),
        Err(e) => error_json(&e.to_string()),
    }
}

/// `start SNAPLEN MAX_BYTES MAX_PACKETS FILE`.
fn parse_start(req: &str) -> Result<(&Path, CaptureOptions), String> {
    let usage =
        "want \"pcap start SNAPLEN MAX_BYTES MAX_PACKETS FILE\", \"pcap stop\" or \"pcap status\"";
    let mut it = req.splitn(5, ' ');
    if it.next() != Some("start") {
        return Err(usage.into());
    }
    let mut num = || -> Result<u64, String> {
        it.next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| usage.to_string())
    };
    let (snaplen, max_bytes, max_packets) = (num()?, num()?, num()?);
    let file = Path::new(it.next().ok_or(usage)?);
    if !file.is_absolute() {
        return Err(format!("{}: not an absolute path", file.display()));
    }
    let opts = CaptureOptions {
        snaplen: u32::try_from(snaplen).map_err(|_| "snaplen too large".to_string())?,
        max_bytes: (max_bytes > 0).then_some(max_bytes),
        max_packets: (max_packets > 0).then_some(max_packets),
    };
    Ok((file, opts))
}

fn status_json(s: &CaptureStatus) -> String {
    let (state, error) = match &s.state {
        CaptureState::Running => ("running", None),
        CaptureState::Stopped => ("stopped", None),
        CaptureState::Limit => ("limit", None),
        CaptureState::Failed(e) => ("failed", Some(e.as_str())),
    };
    let mut out = format!(
        "{{\"pcap\":{{\"state\":\"{state}\",\"file\":\"{}\",\"packets\":{},\"bytes\":{}",
        escape(&s.file.to_string_lossy()),
        s.packets,
        s.bytes
    );
    if let Some(e) = error {
        out.push_str(&format!(",\"error\":\"{}\"", escape(e)));
    }
    out.push_str("}}");
    out
}

fn error_json(msg: &str) -> String {
    format!("{{\"error\":\"{}\"}}", escape(msg))
}

fn escape(msg: &str) -> String {
    msg.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect()
}
