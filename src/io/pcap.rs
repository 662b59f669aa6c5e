//! A capture tap: wraps any [`PacketIo`] and writes every frame received and transmitted through
//! it to a classic libpcap file (LINKTYPE_ETHERNET) that tcpdump, tshark and Wireshark read.
//!
//! Timestamps: the tap never reads a clock (only the engine does). Frames are stamped with the
//! time last given to [`PcapTap::set_time`] (our [`Instant`] plus [`PcapConfig::epoch_unix_nanos`],
//! the wall-clock time of `Instant::ZERO`) or [`PcapTap::set_unix_nanos`]. The engine calls one of
//! them once per loop iteration, before its rx and tx batches; a test on virtual time passes its
//! virtual `now`. Without a call every frame is stamped with the epoch.
//!
//! What is captured: a received frame as the inner device hands it out (before any parsing); a
//! transmitted frame as the caller's closure wrote it, when the closure returns a length the
//! buffer can hold. Classic pcap has no direction field: tell rx from tx by addresses. The order
//! of wrapping decides what the file shows: `PcapTap<FaultInjector<XdpSocket>>` records frames
//! before the injector drops or corrupts them, `FaultInjector<PcapTap<..>>` what really went out.
//!
//! Writes go through a [`BufWriter`]; [`PcapTap::flush`] pushes them out, dropping the tap flushes
//! too (ignoring errors: call `flush` or [`PcapTap::finish`] to see them). Records are cut at
//! [`PcapConfig::snaplen`] bytes; the original length is kept. The first write error stops the
//! capture (frames keep flowing through) and is returned by the next `flush`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::PacketIo;
use crate::time::Instant;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Bytes of each record's header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Large enough for any frame a 4096-byte UMEM frame holds, and for a 64 KiB GSO frame.
pub const DEFAULT_SNAPLEN: u32 = 65_535;
/// Upper bound on the snap length (what tcpdump accepts).
pub const MAX_SNAPLEN: u32 = 262_144;

/// Resolution of the timestamps in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TsPrecision {
    /// Magic `0xa1b2c3d4`: the format every reader knows.
    Micros,
    /// Magic `0xa1b23c4d`: read by libpcap >= 1.5, tshark, Wireshark.
    #[default]
    Nanos,
}

/// How to capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcapConfig {
    /// At most this many bytes of each frame are stored (1..=[`MAX_SNAPLEN`]).
    pub snaplen: u32,
    pub precision: TsPrecision,
    /// Unix time in nanoseconds at [`Instant::ZERO`]; added to the instants given to
    /// [`PcapTap::set_time`].
    pub epoch_unix_nanos: u64,
}

impl Default for PcapConfig {
    fn default() -> Self {
        PcapConfig {
            snaplen: DEFAULT_SNAPLEN,
            precision: TsPrecision::Nanos,
            epoch_unix_nanos: 0,
        }
    }
}

/// What the tap wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Frames stored shorter than they were (snaplen).
    pub truncated: u64,
    /// Frames not stored because an earlier write failed.
    pub lost: u64,
}

/// The tap. `W` is where the file goes (a [`File`] for [`PcapTap::create`]).
#[derive(Debug)]
pub struct PcapTap<P, W: Write = File> {
    inner: P,
    out: BufWriter<W>,
    config: PcapConfig,
    now_unix_nanos: u64,
    stats: PcapStats,
    error: Option<io::Error>,
}

impl<P: PacketIo> PcapTap<P, File> {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(inner: P, path: impl AsRef<Path>, config: PcapConfig) -> io::Result<Self> {
        Self::new(inner, File::create(path)?, config)
    }
}

impl<P: PacketIo, W: Write> PcapTap<P, W> {
    /// Writes the file header to `out` and starts capturing what passes through `inner`.
    pub fn new(inner: P, out: W, config: PcapConfig) -> io::Result<Self> {
        if config.snaplen == 0 || config.snaplen > MAX_SNAPLEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("snaplen {} not in 1..={MAX_SNAPLEN}", config.snaplen),
            ));
        }
        let mut out = BufWriter::with_capacity(256 * 1024, out);
        out.write_all(&file_header(config.precision, config.snaplen))?;
        Ok(PcapTap {
            inner,
            out,
            config,
            now_unix_nanos: config.epoch_unix_nanos,
            stats: PcapStats::default(),
            error: None,
        })
    }

    /// Stamps the following frames with `now` (engine time) plus the configured epoch.
    pub fn set_time(&mut self, now: Instant) {
        self.now_unix_nanos = self.config.epoch_unix_nanos.saturating_add(now.as_nanos());
    }

    /// Stamps the following frames with this Unix time.
    pub fn set_unix_nanos(&mut self, unix_nanos: u64) {
        self.now_unix_nanos = unix_nanos;
    }

    /// Pushes buffered records to the writer; returns the first write error, if one happened.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }

    /// Flushes and gives back the device and the writer.
    pub fn finish(mut self) -> io::Result<(P, W)> {
        self.flush()?;
        let out = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok((self.inner, out))
    }

    pub fn stats(&self) -> PcapStats {
        self.stats
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
}

/// The 24-byte file header (little-endian, LINKTYPE_ETHERNET).
pub fn file_header(precision: TsPrecision, snaplen: u32) -> [u8; FILE_HEADER_LEN] {
    let magic = match precision {
        TsPrecision::Micros => MAGIC_MICROS,
        TsPrecision::Nanos => MAGIC_NANOS,
    };
    let mut hdr = [0u8; FILE_HEADER_LEN];
    hdr[0..4].copy_from_slice(&magic.to_le_bytes());
    hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
    hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0
    hdr[16..20].copy_from_slice(&snaplen.to_le_bytes());
    hdr[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    hdr
}

/// The 16-byte header of a record of `caplen` stored bytes taken at `unix_nanos` from a frame
/// of `orig_len`.
pub fn record_header(
    precision: TsPrecision,
    unix_nanos: u64,
    caplen: u32,
    orig_len: u32,
) -> [u8; RECORD_HEADER_LEN] {
    let secs = unix_nanos / 1_000_000_000;
    let sub = unix_nanos % 1_000_000_000;
    let frac = match precision {
        TsPrecision::Micros => sub / 1_000,
        TsPrecision::Nanos => sub,
    };
    let mut hdr = [0u8; RECORD_HEADER_LEN];
    // The classic format has 32-bit seconds: wraps in 2106.
    hdr[0..4].copy_from_slice(&(secs as u32).to_le_bytes());
    hdr[4..8].copy_from_slice(&(frac as u32).to_le_bytes());
    hdr[8..12].copy_from_slice(&caplen.to_le_bytes());
    hdr[12..16].copy_from_slice(&orig_len.to_le_bytes());
    hdr
}

/// Appends one record; a free function so callers can borrow the device and the writer apart.
fn record<W: Write>(
    out: &mut BufWriter<W>,
    config: &PcapConfig,
    now_unix_nanos: u64,
    stats: &mut PcapStats,
    error: &mut Option<io::Error>,
    frame: &[u8],
) {
    if error.is_some() {
        stats.lost += 1;
        return;
    }
    let caplen = frame.len().min(config.snaplen as usize);
    if caplen < frame.len() {
        stats.truncated += 1;
    }
    let hdr = record_header(
        config.precision,
        now_unix_nanos,
        caplen as u32,
        frame.len().min(u32::MAX as usize) as u32,
    );
    let res = out
        .write_all(&hdr)
        .and_then(|()| out.write_all(&frame[..caplen]));
    if let Err(e) = res {
        stats.lost += 1;
        *error = Some(e);
    }
}

impl<P: PacketIo, W: Write> PacketIo for PcapTap<P, W> {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, mut f: F) -> usize {
        let PcapTap {
            inner,
            out,
            config,
            now_unix_nanos,
            stats,
            error,
        } = self;
        inner.recv_batch(budget, |frame| {
            record(out, config, *now_unix_nanos, stats, error, frame);
            stats.rx_frames += 1;
            f(frame)
        })
    }

    fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        self.send_batch_hinted(budget, |buf| f(buf).map(|len| (len, true)))
    }

    /// Passes the "no more" hint through to the device (the trait's default would only stop
    /// offering buffers, and a UMEM device would lend one more frame per batch for nothing).
    fn send_batch_hinted<F: FnMut(&mut [u8]) -> Option<(usize, bool)>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        let PcapTap {
            inner,
            out,
            config,
            now_unix_nanos,
            stats,
            error,
        } = self;
        inner.send_batch_hinted(budget, |buf| {
            let (len, more) = f(buf)?;
            if len > 0 && len <= buf.len() {
                record(out, config, *now_unix_nanos, stats, error, &buf[..len]);
                stats.tx_frames += 1;
            }
            Some((len, more))
        })
    }

    fn frame_capacity(&self) -> usize {
        self.inner.frame_capacity()
    }

    fn wait_rx(&mut self, timeout: core::time::Duration) -> bool {
        self.inner.wait_rx(timeout)
    }

    fn set_time(&mut self, now: Instant) {
        PcapTap::set_time(self, now);
        self.inner.set_time(now);
    }

    fn device_stats(&self) -> Option<super::xdp::DeviceStats> {
        self.inner.device_stats()
    }
}

/// The file header, as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcapHeader {
    pub precision: TsPrecision,
    pub snaplen: u32,
    pub linktype: u32,
    /// The file was written big-endian.
    pub big_endian: bool,
}

/// One record, as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcapRecord<'a> {
    /// Unix time in nanoseconds (microsecond files are scaled).
    pub ts_unix_nanos: u64,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// The stored bytes (at most the snap length).
    pub data: &'a [u8],
}

/// Parses a whole classic pcap file (either byte order, either precision). For tests and tools;
/// not a general-purpose reader (no pcapng).
pub fn parse(file: &[u8]) -> io::Result<(PcapHeader, Vec<PcapRecord<'_>>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if file.len() < FILE_HEADER_LEN {
        return Err(bad("shorter than a pcap file header"));
    }
    let magic_le = u32::from_le_bytes(file[0..4].try_into().unwrap());
    let magic_be = u32::from_be_bytes(file[0..4].try_into().unwrap());
    let (big_endian, precision) = match (magic_le, magic_be) {
        (MAGIC_MICROS, _) => (false, TsPrecision::Micros),
        (MAGIC_NANOS, _) => (false, TsPrecision::Nanos),
        (_, MAGIC_MICROS) => (true, TsPrecision::Micros),
        (_, MAGIC_NANOS) => (true, TsPrecision::Nanos),
        _ => return Err(bad("not a classic pcap magic number")),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a: [u8; 4] = b[i..i + 4].try_into().unwrap();
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let header = PcapHeader {
        precision,
        snaplen: u32_at(file, 16),
        linktype: u32_at(file, 20),
        big_endian,
    };
    let mut records = Vec::new();
    let mut rest = &file[FILE_HEADER_LEN..];
    while !rest.is_empty() {
        if rest.len() < RECORD_HEADER_LEN {
            return Err(bad("truncated record header"));
        }
        let secs = u64::from(u32_at(rest, 0));
        let frac = u64::from(u32_at(rest, 4));
        let caplen = u32_at(rest, 8) as usize;
        let orig_len = u32_at(rest, 12);
        if caplen > header.snaplen as usize || caplen > orig_len as usize {
            return Err(bad(
                "record longer than the snap length or its original length",
            ));
        }
        let end = RECORD_HEADER_LEN + caplen;
        if rest.len() < end {
            return Err(bad("truncated record data"));
        }
        let scale = match precision {
            TsPrecision::Micros => 1_000,
            TsPrecision::Nanos => 1,
        };
        records.push(PcapRecord {
            ts_unix_nanos: secs * 1_000_000_000 + frac * scale,
            orig_len,
            data: &rest[RECORD_HEADER_LEN..end],
        });
        rest = &rest[end..];
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::MemIo;
    use crate::wire::{
        EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Addr, Ipv4Packet, TcpFlags,
        TcpPacket,
    };
    use std::process::Command;

    const A: Ipv4Addr = Ipv4Addr::new(10, 9, 8, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 9, 8, 2);

    /// An Ethernet/IPv4/TCP frame with correct checksums.
    fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let tcp_len = 20 + payload.len();
        let mut f = vec![0u8; 14 + 20 + tcp_len];
        let mut eth = EthernetFrame::new_checked(&mut f[..]).unwrap();
        eth.set_dst_addr(EthernetAddress([2, 0, 0, 0, 0, dst.octets()[3]]));
        eth.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, src.octets()[3]]));
        eth.set_ethertype(EtherType::Ipv4);
        let ip_buf = &mut f[14..];
        ip_buf[0] = 0x45;
        ip_buf[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        let mut ip = Ipv4Packet::new_checked(&mut ip_buf[..]).unwrap();
        ip.set_unfragmented_df();
        ip.set_ttl(64);
        ip.set_protocol(IpProtocol::Tcp);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
        let tcp_buf = &mut f[34..];
        tcp_buf[12] = 5 << 4;
        let mut tcp = TcpPacket::new_checked(&mut tcp_buf[..]).unwrap();
        tcp.set_src_port(sport);
        tcp.set_dst_port(dport);
        tcp.set_flags(TcpFlags::ACK | TcpFlags::PSH);
        tcp.set_window_len(1000);
        tcp.payload_mut().copy_from_slice(payload);
        tcp.fill_checksum(src, dst);
        f
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("xdp-tcp-{}-{name}.pcap", std::process::id()))
    }

    /// Receives `rx` and sends `tx` through a tap on a MemIo, at distinct times.
    fn capture<W: Write>(out: W, cfg: PcapConfig, rx: &[Vec<u8>], tx: &[Vec<u8>]) -> (MemIo, W) {
        let mut mem = MemIo::new(2048);
        for f in rx {
            mem.push_rx(f.clone());
        }
        let mut tap = PcapTap::new(mem, out, cfg).unwrap();
        tap.set_time(Instant::from_micros(1_500));
        let mut seen = 0;
        assert_eq!(tap.recv_batch(64, |_| seen += 1), rx.len());
        assert_eq!(seen, rx.len());
        tap.set_time(Instant::from_nanos(2_000_123_456));
        let mut it = tx.iter();
        let sent = tap.send_batch(64, |buf| {
            let f = it.next()?;
            buf[..f.len()].copy_from_slice(f);
            Some(f.len())
        });
        assert_eq!(sent, tx.len());
        let stats = tap.stats();
        assert_eq!(
            (stats.rx_frames, stats.tx_frames),
            (rx.len() as u64, tx.len() as u64)
        );
        tap.finish().unwrap()
    }

    #[test]
    fn records_rx_then_tx_with_times_and_lengths() {
        let rx = vec![
            tcp_frame(A, B, 1000, 80, b"hello"),
            tcp_frame(A, B, 1000, 80, b""),
        ];
        let tx = vec![tcp_frame(B, A, 80, 1000, b"world!")];
        let cfg = PcapConfig {
            epoch_unix_nanos: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let (mem, buf) = capture(Vec::new(), cfg, &rx, &tx);
        assert_eq!(
            mem.tx.iter().collect::<Vec<_>>(),
            tx.iter().collect::<Vec<_>>()
        );
        let (hdr, recs) = parse(&buf).unwrap();
        assert_eq!(
            hdr,
            PcapHeader {
                precision: TsPrecision::Nanos,
                snaplen: DEFAULT_SNAPLEN,
                linktype: LINKTYPE_ETHERNET,
                big_endian: false
            }
        );
        assert_eq!(recs.len(), 3);
        for (r, f) in recs.iter().zip(rx.iter().chain(&tx)) {
            assert_eq!(r.data, &f[..]);
            assert_eq!(r.orig_len as usize, f.len());
        }
        assert_eq!(recs[0].ts_unix_nanos, 1_700_000_000_000_000_000 + 1_500_000);
        assert_eq!(
            recs[2].ts_unix_nanos,
            1_700_000_000_000_000_000 + 2_000_123_456
        );
    }

    #[test]
    fn micros_truncate_the_fraction_and_snaplen_cuts_records() {
        let big = tcp_frame(A, B, 1, 2, &[7u8; 200]);
        let cfg = PcapConfig {
            snaplen: 64,
            precision: TsPrecision::Micros,
            epoch_unix_nanos: 0,
        };
        let (_, buf) = capture(Vec::new(), cfg, &[], std::slice::from_ref(&big));
        let (hdr, recs) = parse(&buf).unwrap();
        assert_eq!((hdr.precision, hdr.snaplen), (TsPrecision::Micros, 64));
        assert_eq!(recs[0].data, &big[..64]);
        assert_eq!(recs[0].orig_len as usize, big.len());
        assert_eq!(recs[0].ts_unix_nanos, 2_000_123_000);
    }

    /// A device that counts the buffers it lends and, like the AF_XDP socket, lends none after
    /// a frame said it was the last.
    struct Lender {
        lent: usize,
        sent: usize,
    }

    impl PacketIo for Lender {
        fn recv_batch<F: FnMut(&[u8])>(&mut self, _budget: usize, _f: F) -> usize {
            0
        }
        fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(&mut self, _: usize, _: F) -> usize {
            panic!("the tap must pass the hint on");
        }
        fn send_batch_hinted<F: FnMut(&mut [u8]) -> Option<(usize, bool)>>(
            &mut self,
            budget: usize,
            mut f: F,
        ) -> usize {
            let mut buf = [0u8; 128];
            let mut n = 0;
            while n < budget {
                self.lent += 1;
                let Some((_, more)) = f(&mut buf) else { break };
                n += 1;
                if !more {
                    break;
                }
            }
            self.sent += n;
            n
        }
        fn frame_capacity(&self) -> usize {
            128
        }
    }

    #[test]
    fn the_tap_passes_the_last_frame_hint_to_the_device() {
        let frame = tcp_frame(B, A, 80, 1000, b"x");
        let mut tap =
            PcapTap::new(Lender { lent: 0, sent: 0 }, Vec::new(), Default::default()).unwrap();
        let mut left = 2;
        let n = tap.send_batch_hinted(64, |buf| {
            buf[..frame.len()].copy_from_slice(&frame);
            left -= 1;
            Some((frame.len(), left > 0))
        });
        assert_eq!(n, 2);
        assert_eq!(tap.inner().lent, 2, "no buffer lent after the last frame");
        assert_eq!(tap.stats().tx_frames, 2);
    }

    #[test]
    fn rejects_bad_snaplen_and_garbage() {
        assert!(PcapTap::new(
            MemIo::new(64),
            Vec::new(),
            PcapConfig {
                snaplen: 0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(parse(&[0u8; 24]).is_err());
        let (_, mut buf) = capture(Vec::new(), PcapConfig::default(), &[vec![1, 2, 3]], &[]);
        buf.pop();
        assert!(parse(&buf).is_err(), "truncated record accepted");
    }

    #[test]
    fn a_write_error_stops_the_capture_not_the_traffic() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // The header goes into the BufWriter: the error shows only when it is flushed.
        let mut mem = MemIo::new(64);
        mem.push_rx(vec![0u8; 60]);
        let mut tap = PcapTap::new(mem, Full, PcapConfig::default()).unwrap();
        assert!(tap.flush().is_err());
        assert_eq!(tap.recv_batch(8, |_| {}), 1);
    }

    #[test]
    fn dropping_the_tap_flushes_the_file() {
        let path = temp_path("drop-flush");
        let mut mem = MemIo::new(2048);
        mem.push_rx(tcp_frame(A, B, 1, 2, b"x"));
        let mut tap = PcapTap::create(mem, &path, PcapConfig::default()).unwrap();
        assert_eq!(tap.recv_batch(4, |_| {}), 1);
        drop(tap);
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(parse(&bytes).unwrap().1.len(), 1);
    }

    /// tshark must read what we write. It is a test dependency (deploy/install-deps.sh).
    #[test]
    fn tshark_reads_our_files() {
        let rx = vec![
            tcp_frame(A, B, 40000, 80, b"GET / HTTP/1.0\r\n\r\n"),
            tcp_frame(A, B, 40000, 80, b""),
        ];
        let tx = vec![tcp_frame(B, A, 80, 40000, b"HTTP/1.0 200 OK\r\n\r\n")];
        for precision in [TsPrecision::Micros, TsPrecision::Nanos] {
            let path = temp_path(&format!("tshark-{precision:?}"));
            let cfg = PcapConfig {
                precision,
                epoch_unix_nanos: 1_700_000_000_000_000_000,
                ..Default::default()
            };
            let file = File::create(&path).unwrap();
            drop(capture(file, cfg, &rx, &tx));
            let out = Command::new("tshark")
                .args(["-n", "-r"])
                .arg(&path)
                .args([
                    "-o",
                    "tcp.check_checksum:TRUE",
                    "-o",
                    "ip.check_checksum:TRUE",
                ])
                .args(["-T", "fields", "-E", "separator=,"])
                .args(["-e", "frame.len", "-e", "ip.src", "-e", "tcp.srcport"])
                .args([
                    "-e",
                    "tcp.len",
                    "-e",
                    "tcp.checksum.status",
                    "-e",
                    "frame.time_epoch",
                ])
                .output();
            let _ = std::fs::remove_file(&path);
            let out = out.unwrap_or_else(|e| {
                panic!("cannot run tshark ({e}): install it with `sudo deploy/install-deps.sh`")
            });
            assert!(
                out.status.success(),
                "tshark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
            assert_eq!(lines.len(), 3, "{text}");
            let want = [
                (rx[0].len(), "10.9.8.1", "40000", "18"),
                (rx[1].len(), "10.9.8.1", "40000", "0"),
                (tx[0].len(), "10.9.8.2", "80", "19"),
            ];
            for (l, w) in lines.iter().zip(want) {
                assert_eq!(l[0], w.0.to_string(), "{text}");
                assert_eq!((l[1], l[2], l[3]), (w.1, w.2, w.3), "{text}");
                // tshark's checksum status: 0 bad, 1 good, 2 unverified
                assert_eq!(l[4], "1", "checksum not verified good: {text}");
            }
            assert!(lines[0][5].starts_with("1700000000.0015"), "{text}");
            assert!(lines[2][5].starts_with("1700000002.000123"), "{text}");
        }
    }
}
