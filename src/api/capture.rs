//! A pcap capture of a running stack, switched on and off by [`Stack::capture_start`] and
//! [`Stack::capture_stop`] (and through the control socket: `xdp-tcp pcap PATH --start FILE`).
//!
//! The engines copy frames into a bounded queue ([`crate::engine::capture`]); a writer thread
//! of its own, never an engine, writes them to a classic pcap file (nanosecond timestamps from
//! the engines' clocks, LINKTYPE_ETHERNET) and ends the capture itself at the byte or packet
//! bound. One capture at a time per stack. Records of several engines interleave in the order
//! the writer pops them, which may differ from their timestamps' by a few microseconds.
//!
//! [`Stack::capture_start`]: super::Stack::capture_start
//! [`Stack::capture_stop`]: super::Stack::capture_stop

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::capture::CaptureRing;
use crate::io::pcap::{self, TsPrecision, FILE_HEADER_LEN, MAX_SNAPLEN, RECORD_HEADER_LEN};

/// How to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Bytes kept of each frame (1..=262144).
    pub snaplen: u32,
    /// The file stops growing before this many bytes (headers included).
    pub max_bytes: Option<u64>,
    /// The capture ends after this many frames.
    pub max_packets: Option<u64>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            snaplen: MAX_SNAPLEN,
            max_bytes: None,
            max_packets: None,
        }
    }
}

/// Where a capture is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureState {
    /// Writing.
    Running,
    /// Stopped by [`Stack::capture_stop`](super::Stack::capture_stop).
    Stopped,
    /// Ended by itself at its byte or packet bound.
    Limit,
    /// Ended by a write error (the message).
    Failed(String),
}

/// A capture's file and what went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureStatus {
    /// Running, or how it ended.
    pub state: CaptureState,
    /// The file.
    pub file: PathBuf,
    /// Frames written.
    pub packets: u64,
    /// Bytes of the file, headers included.
    pub bytes: u64,
}

impl super::Stack {
    /// Starts capturing every frame the engines receive from their devices and send, into a
    /// new pcap file at `file` (truncated if it exists), written by a thread of its own; see
    /// the [module docs](self). The engines drop (and count, `engine.capture_dropped`) frames
    /// the writer cannot keep up with. `AddrInUse` while a capture runs.
    pub fn capture_start(&self, file: impl AsRef<Path>, opts: CaptureOptions) -> io::Result<()> {
        self.capture.start(file.as_ref(), opts)
    }

    /// Stops the running capture (the engines stop copying at their next iteration, the writer
    /// writes what they queued before and closes the file) and returns what it wrote; with
    /// none running, how the last one ended. `NotFound` if none was started.
    pub fn capture_stop(&self) -> io::Result<CaptureStatus> {
        self.capture.stop()
    }

    /// The running capture's progress, or how the last one ended.
    pub fn capture_status(&self) -> Option<CaptureStatus> {
        self.capture.status()
    }
}

/// The writer's progress, shared with whoever asks.
#[derive(Debug, Default)]
struct Progress {
    stop: AtomicBool,
    packets: AtomicU64,
    bytes: AtomicU64,
}

struct Writer {
    file: PathBuf,
    session: u32,
    progress: Arc<Progress>,
    thread: JoinHandle<CaptureState>,
}

/// A stack's capture: the engines' ring and the writer of the current (or last) capture.
pub(crate) struct Capture {
    ring: Arc<CaptureRing>,
    /// Taken by the caller's thread only (start, stop, status), never by an engine.
    writer: Mutex<(Option<Writer>, Option<CaptureStatus>)>,
}

impl Capture {
    pub fn new(ring: Arc<CaptureRing>) -> Self {
        Capture {
            ring,
            writer: Mutex::new((None, None)),
        }
    }

    /// Creates `file` and starts capturing into it.
    pub fn start(&self, file: &Path, opts: CaptureOptions) -> io::Result<()> {
        if opts.snaplen == 0 || opts.snaplen > MAX_SNAPLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("snaplen {} not in 1..={MAX_SNAPLEN}", opts.snaplen),
            ));
        }
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.0.take() {
            if !w.thread.is_finished() {
                guard.0 = Some(w);
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a capture is running; stop it first",
                ));
            }
            guard.1 = Some(finish(w));
        }
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(file)?);
        out.write_all(&pcap::file_header(TsPrecision::Nanos, opts.snaplen))?;
        let progress = Arc::new(Progress::default());
        progress
            .bytes
            .store(FILE_HEADER_LEN as u64, Ordering::Relaxed);
        let session = self.ring.start(opts.snaplen);
        let (ring, p) = (Arc::clone(&self.ring), Arc::clone(&progress));
        let thread = std::thread::Builder::new()
            .name("xdp-tcp-pcap".into())
            .spawn(move || write_loop(&ring, session, out, opts, &p));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                self.ring.stop(session);
                return Err(e);
            }
        };
        guard.0 = Some(Writer {
            file: file.to_path_buf(),
            session,
            progress,
            thread,
        });
        Ok(())
    }

    /// Stops the running capture and returns what it wrote; with none running, the last one's
    /// status, or `NotFound` if there was none.
    pub fn stop(&self) -> io::Result<CaptureStatus> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.0.take() {
            self.ring.stop(w.session);
            w.progress.stop.store(true, Ordering::Release);
            w.thread.thread().unpark();
            guard.1 = Some(finish(w));
        }
        guard
            .1
            .clone()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no capture was started"))
    }

    /// The running capture's progress, or how the last one ended.
    pub fn status(&self) -> Option<CaptureStatus> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.0.take() {
            if !w.thread.is_finished() {
                let s = CaptureStatus {
                    state: CaptureState::Running,
                    file: w.file.clone(),
                    packets: w.progress.packets.load(Ordering::Relaxed),
                    bytes: w.progress.bytes.load(Ordering::Relaxed),
                };
                guard.0 = Some(w);
                return Some(s);
            }
            guard.1 = Some(finish(w));
        }
        guard.1.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn finish(w: Writer) -> CaptureStatus {
    let state = w
        .thread
        .join()
        .unwrap_or_else(|_| CaptureState::Failed("the writer panicked".into()));
    CaptureStatus {
        state,
        file: w.file,
        packets: w.progress.packets.load(Ordering::Relaxed),
        bytes: w.progress.bytes.load(Ordering::Relaxed),
    }
}

/// The writer thread: drains the ring until stopped or at a bound, flushing whenever the queue
/// runs empty, sleeping a millisecond (or until unparked) when there was nothing.
fn write_loop(
    ring: &CaptureRing,
    session: u32,
    mut out: BufWriter<File>,
    opts: CaptureOptions,
    progress: &Progress,
) -> CaptureState {
    let mut unflushed = false;
    let end = loop {
        // read before draining: what the engines pushed before the stop is written
        let stop = progress.stop.load(Ordering::Acquire);
        match drain(ring, session, &mut out, opts, progress) {
            Ok(Drained { limit: true, .. }) => break CaptureState::Limit,
            Ok(Drained { written, .. }) => {
                if stop {
                    break CaptureState::Stopped;
                }
                if written > 0 {
                    unflushed = true;
                } else {
                    if unflushed {
                        if let Err(e) = out.flush() {
                            break CaptureState::Failed(e.to_string());
                        }
                        unflushed = false;
                    }
                    std::thread::park_timeout(Duration::from_millis(1));
                }
            }
            Err(e) => break CaptureState::Failed(e.to_string()),
        }
    };
    ring.stop(session);
    match (out.flush(), end) {
        (Err(e), CaptureState::Stopped | CaptureState::Limit) => {
            CaptureState::Failed(e.to_string())
        }
        (_, end) => end,
    }
}

struct Drained {
    written: u64,
    limit: bool,
}

/// Writes every record of `session` now in the ring (discarding older sessions' records) until
/// the ring is empty or a bound is reached.
fn drain(
    ring: &CaptureRing,
    session: u32,
    out: &mut impl Write,
    opts: CaptureOptions,
    progress: &Progress,
) -> io::Result<Drained> {
    let mut written = 0;
    while let Some(rec) = ring.pop() {
        if rec.session != session {
            ring.recycle(rec.data);
            continue;
        }
        let packets = progress.packets.load(Ordering::Relaxed);
        let bytes = progress.bytes.load(Ordering::Relaxed);
        let size = (RECORD_HEADER_LEN + rec.data.len()) as u64;
        if opts.max_packets.is_some_and(|m| packets >= m)
            || opts.max_bytes.is_some_and(|m| bytes + size > m)
        {
            ring.recycle(rec.data);
            return Ok(Drained {
                written,
                limit: true,
            });
        }
        let hdr = pcap::record_header(
            TsPrecision::Nanos,
            rec.ts_unix_nanos,
            rec.data.len() as u32,
            rec.orig_len,
        );
        let res = out.write_all(&hdr).and_then(|()| out.write_all(&rec.data));
        ring.recycle(rec.data);
        res?;
        progress.packets.store(packets + 1, Ordering::Relaxed);
        progress.bytes.store(bytes + size, Ordering::Relaxed);
        written += 1;
        if opts.max_packets.is_some_and(|m| packets + 1 >= m) {
            return Ok(Drained {
                written,
                limit: true,
            });
        }
    }
    Ok(Drained {
        written,
        limit: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::capture::Active;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xdp-tcp-{}-cap-{name}.pcap", std::process::id()))
    }

    fn frame(i: u8, len: usize) -> Vec<u8> {
        (0..len).map(|j| i.wrapping_add(j as u8)).collect()
    }

    /// Waits (bounded) until the writer has taken everything from the ring.
    fn settle(cap: &Capture, packets: u64) {
        let t = std::time::Instant::now();
        while cap
            .status()
            .is_some_and(|s| s.state == CaptureState::Running && s.packets < packets)
        {
            assert!(t.elapsed() < Duration::from_secs(10), "writer stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_file_holds_the_header_and_each_record_cut_at_the_snap_length() {
        let ring = CaptureRing::new(16);
        // a record of an earlier session, still queued, is not written
        let old = Active {
            session: ring.start(100),
            snaplen: 100,
        };
        assert!(ring.push(old, 1, &frame(0, 30)));
        let cap = Capture::new(Arc::clone(&ring));
        let path = temp("format");
        let opts = CaptureOptions {
            snaplen: 64,
            ..Default::default()
        };
        cap.start(&path, opts).unwrap();
        assert!(cap.start(&path, opts).is_err(), "one capture at a time");
        let a = ring.active().expect("on");
        assert_eq!(a.snaplen, 64);
        let ts = 1_700_000_000_123_456_789;
        let frames = [frame(1, 60), frame(2, 1514), frame(3, 64)];
        for (i, f) in frames.iter().enumerate() {
            assert!(ring.push(a, ts + i as u64, f));
        }
        settle(&cap, 3);
        let st = cap.stop().unwrap();
        assert_eq!(ring.active(), None, "stop turns the engines' copying off");
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(st.state, CaptureState::Stopped);
        assert_eq!((st.packets, st.bytes), (3, bytes.len() as u64));
        assert_eq!(bytes.len(), 24 + 3 * 16 + 60 + 64 + 64);
        assert_eq!(
            &bytes[..4],
            &0xa1b2_3c4du32.to_le_bytes(),
            "nanosecond magic"
        );
        let (hdr, recs) = pcap::parse(&bytes).unwrap();
        assert_eq!((hdr.snaplen, hdr.linktype), (64, pcap::LINKTYPE_ETHERNET));
        assert_eq!(recs.len(), 3);
        for (i, (r, f)) in recs.iter().zip(&frames).enumerate() {
            assert_eq!(r.ts_unix_nanos, ts + i as u64);
            assert_eq!(r.orig_len as usize, f.len());
            assert_eq!(r.data, &f[..f.len().min(64)]);
        }
        assert_eq!(cap.status(), Some(st), "the last capture's status stays");
    }

    #[test]
    fn the_capture_ends_itself_at_its_packet_or_byte_bound() {
        for (opts, want) in [
            (
                CaptureOptions {
                    max_packets: Some(4),
                    ..Default::default()
                },
                4,
            ),
            // header + 2 records of 16 + 100 fit, not a third
            (
                CaptureOptions {
                    max_bytes: Some(24 + 3 * 116 - 1),
                    ..Default::default()
                },
                2,
            ),
        ] {
            let ring = CaptureRing::new(32);
            let cap = Capture::new(Arc::clone(&ring));
            let path = temp("bound");
            cap.start(&path, opts).unwrap();
            let a = ring.active().unwrap();
            for i in 0..10u8 {
                assert!(ring.push(a, u64::from(i), &frame(i, 100)));
            }
            // The writer stops the ring at the bound, then flushes and returns; the status
            // says Running until its thread has returned, so wait on the status itself.
            let t = std::time::Instant::now();
            let st = loop {
                let st = cap.status().unwrap();
                if st.state != CaptureState::Running {
                    break st;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "never reached the bound"
                );
                std::thread::sleep(Duration::from_millis(1));
            };
            assert!(ring.active().is_none(), "the ring still on after the bound");
            let bytes = std::fs::read(&path).unwrap();
            let _ = std::fs::remove_file(&path);
            assert_eq!((st.state, st.packets), (CaptureState::Limit, want));
            let recs = pcap::parse(&bytes).unwrap().1;
            assert_eq!(recs.len() as u64, want);
            assert_eq!(st.bytes, bytes.len() as u64);
            if let Some(m) = opts.max_bytes {
                assert!(st.bytes <= m);
            }
            assert_eq!(cap.stop().unwrap().state, CaptureState::Limit);
        }
    }

    #[test]
    fn bad_snap_length_and_unwritable_file_are_refused_and_leave_the_engines_off() {
        let ring = CaptureRing::new(4);
        let cap = Capture::new(Arc::clone(&ring));
        let zero = CaptureOptions {
            snaplen: 0,
            ..Default::default()
        };
        assert!(cap.start(&temp("zero"), zero).is_err());
        let dir = std::env::temp_dir().join("xdp-tcp-no-such-dir/x.pcap");
        assert!(cap.start(&dir, CaptureOptions::default()).is_err());
        assert_eq!(ring.active(), None);
        assert_eq!(
            cap.stop().unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "nothing was started"
        );
    }
}
