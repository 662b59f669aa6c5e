//! What the application calls: sending and receiving bytes, shutting down and closing, options,
//! and the `tcp_info`-like snapshot. (ICMP reports from the host are the path's, in `path`.)
//!
//! Calls never transmit by themselves; the owner polls [`Connection::poll_transmit`] after each
//! one (the host does so for every connection it touched). Reads that free enough receive space
//! schedule a window update (receiver-side silly window avoidance).

use std::sync::Arc;

use super::space::AckState;
use super::Connection;
use crate::tcp::config::KeepAlive;
use crate::tcp::congestion::CongestionControl;
use crate::tcp::event::Error;
use crate::tcp::state::State;
use crate::tcp::stats::TcpInfo;
use crate::tcp::timers::TimerKind;
use crate::time::{Duration, Instant};
use crate::wire::{TcpFlags, TcpRepr};

/// The longest a cork holds back a partial segment (Linux's TCP_CORK limit).
pub const CORK_LIMIT: Duration = Duration::from_millis(200);

impl Connection {
    /// Queues bytes for sending, copying them into the send buffer; returns how many fit
    /// (`WouldBlock` when none did).
    #[inline]
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.may_send()?;
        let n = self.snd.buf.write(data);
        self.note_write_limit();
        if n == 0 && !data.is_empty() {
            return Err(Error::WouldBlock);
        }
        self.stats.send_buf_copied += n as u64;
        Ok(n)
    }

    /// Lends `fill` up to `max` bytes of the send buffer's room, in one piece (at most what
    /// [`Connection::send_space`] says, and 16 KiB): it writes the bytes to send in place and
    /// returns how many. The bytes stay there until acknowledged, so retransmission works as
    /// for [`Connection::send`], without the application's own buffer to copy from.
    /// `WouldBlock` (and `fill` is not called) when there is no room; errors as `send`.
    pub fn send_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, Error> {
        self.may_send()?;
        if max > 0 && self.snd.buf.free() == 0 {
            self.events.writable_wanted = true;
            return Err(Error::WouldBlock);
        }
        let n = self.snd.buf.write_with(max, fill);
        self.note_write_limit();
        Ok(n)
    }

    /// A write that left the send buffer full (or found it so) wants `Writable` once space
    /// frees, in either mode of [`Connection::set_writable_on_demand`].
    #[inline]
    fn note_write_limit(&mut self) {
        if self.snd.buf.free() == 0 {
            self.events.writable_wanted = true;
        }
    }

    /// How `Writable` is raised. By default (`false`) every acknowledgement that frees send
    /// space raises it. With `true` only the first one after a writer found the send buffer
    /// full does ([`Connection::send`] or [`Connection::send_with`] filling it, or returning
    /// `WouldBlock`), or after [`Connection::want_writable`]: the contract of an edge-triggered
    /// `EPOLLOUT` after `EAGAIN` (Linux's `SOCK_NOSPACE`). An application that writes
    /// everything it has at once then pays for no event per acknowledgement; one that waits
    /// for more room than the buffer shows (a whole record) calls `want_writable`.
    pub fn set_writable_on_demand(&mut self, on: bool) {
        self.events.writable_on_demand = on;
    }

    /// Asks for a `Writable` at the next acknowledgement that frees send space (only needed
    /// with [`Connection::set_writable_on_demand`]).
    pub fn want_writable(&mut self) {
        self.events.writable_wanted = true;
    }

    /// Queues `chunk` for sending whole, without copying it: the send buffer keeps the `Vec`
    /// until its bytes are acknowledged. For a caller that already owns the bytes in a buffer of
    /// its own, such as the threaded API's bridge. The chunk is taken even past the send
    /// buffer's capacity, so the caller bounds what it queues this way (the bridge by its send
    /// credit); [`Connection::send_space`] only says what [`Connection::send`] would take.
    /// Take emptied chunks back with [`Connection::reclaim_chunk`] to fill them again.
    pub fn send_owned(&mut self, chunk: Vec<u8>) -> Result<usize, Error> {
        self.may_send()?;
        Ok(self.snd.buf.push(chunk))
    }

    fn may_send(&self) -> Result<(), Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.snd.fin_queued {
            return Err(Error::BrokenPipe);
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => Ok(()),
            State::Closed => Err(Error::NotConnected),
            _ => Err(Error::BrokenPipe),
        }
    }

    /// A chunk of the send buffer emptied by acknowledgements (cleared, its capacity kept), to
    /// fill and queue again with [`Connection::send_owned`] so that a steady stream does not
    /// allocate. Unclaimed ones serve [`Connection::send`].
    pub fn reclaim_chunk(&mut self) -> Option<Vec<u8>> {
        self.snd.buf.take_spare()
    }

    /// Whether [`Connection::reclaim_chunk`] has one.
    pub fn has_reclaimable_chunk(&self) -> bool {
        self.snd.buf.has_spare()
    }

    /// Bytes that can be queued now.
    pub fn send_space(&self) -> usize {
        if self.state.can_send() && !self.snd.fin_queued {
            self.snd.buf.free()
        } else {
            0
        }
    }

    /// Readable bytes.
    pub fn recv_queue(&self) -> usize {
        self.rcv.buf.len()
    }

    /// Reads and consumes bytes. `Ok(0)` means end of stream (the peer's FIN, or our shutdown of
    /// reading); `Err(WouldBlock)` means nothing yet.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.recv_with(buf, false)
    }

    /// Like [`Connection::recv`] without consuming.
    pub fn peek(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.recv_with(buf, true)
    }

    fn recv_with(&mut self, buf: &mut [u8], peek: bool) -> Result<usize, Error> {
        if self.rcv.buf.is_empty() || buf.is_empty() {
            return self.recv_empty_result(buf.is_empty());
        }
        let n = if peek {
            self.rcv.buf.peek(buf)
        } else {
            self.rcv.buf.read(buf)
        };
        if !peek {
            self.after_read();
        }
        Ok(n)
    }

    /// The readable bytes as up to two slices, without copying; follow with [`Connection::consume`].
    pub fn readable(&self) -> (&[u8], &[u8]) {
        self.rcv.buf.readable()
    }

    /// Marks `n` readable bytes consumed (after [`Connection::readable`]).
    pub fn consume(&mut self, n: usize) -> usize {
        let n = self.rcv.buf.consume(n);
        self.after_read();
        n
    }

    fn recv_empty_result(&self, zero_len_buf: bool) -> Result<usize, Error> {
        if !self.rcv.buf.is_empty() && zero_len_buf {
            return Ok(0);
        }
        if self.rcv.fin_consumed || self.rcv.read_shut {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::Closed => Err(Error::NotConnected),
            _ => Err(Error::WouldBlock),
        }
    }

    /// True when a read would return end of stream.
    pub fn at_eof(&self) -> bool {
        self.rcv.buf.is_empty() && (self.rcv.fin_consumed || self.rcv.read_shut)
    }

    /// After the application freed receive space: announce a window that opened enough to matter.
    fn after_read(&mut self) {
        if self.state.can_receive() && self.rcv.window_opened(self.cfg.mss as usize) {
            self.rcv.ack = AckState::Now;
        }
    }

    /// Shuts down writing: queues a FIN after the buffered data (which a cork no longer holds).
    pub fn close(&mut self) {
        self.uncork();
        match self.state {
            State::SynSent => self.enter_closed(),
            State::SynReceived | State::Established => {
                self.snd.fin_queued = true;
                if self.state == State::Established {
                    self.state = State::FinWait1;
                }
            }
            State::CloseWait => {
                self.snd.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// The application gives the connection up (close(2) rather than shutdown(2)): from now on
    /// FIN-WAIT-2 lasts at most [`Config::fin_timeout`](crate::tcp::Config::fin_timeout), as
    /// Linux's `tcp_fin_timeout` bounds orphaned sockets, so a peer that never sends its FIN
    /// cannot hold the connection forever. A connection only shut down for writing stays in
    /// FIN-WAIT-2 as long as the peer likes.
    pub fn orphan(&mut self) {
        self.orphaned = true;
    }

    /// Shuts down reading: reads return end of stream; data still arriving is acknowledged and
    /// discarded.
    pub fn shutdown_read(&mut self) {
        self.rcv.read_shut = true;
        let n = self.rcv.buf.len();
        self.rcv.buf.consume(n);
    }

    pub fn is_write_shut(&self) -> bool {
        self.snd.fin_queued
    }

    /// Whether `seg`, a SYN for this connection's 4-tuple while it is in TIME-WAIT, may start a
    /// new incarnation: its timestamp is newer than the last one seen (RFC 6191), or, without
    /// timestamps, its sequence number lies beyond everything received (RFC 1122 4.2.2.13).
    pub fn accepts_new_syn(&self, seg: &TcpRepr) -> bool {
        if self.state != State::TimeWait || !seg.flags.syn() || seg.flags.ack() || seg.flags.rst() {
            return false;
        }
        match (self.opts.timestamps, seg.options.timestamp) {
            (true, Some((tsval, _))) => self.ts.is_newer(tsval),
            _ => seg.seq.diff(self.rcv_nxt()) > 0,
        }
    }

    /// Aborts: sends RST if the peer knows of us and drops all state.
    pub fn abort(&mut self) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            // within the peer's window, or it would ignore the reset (Linux's
            // tcp_send_active_reset uses the same sequence number as a pure ACK)
            let rst = self.bare(self.snd.acceptable_seq(), TcpFlags::RST);
            self.push_rst(self.remote, rst);
        }
        self.enter_closed();
    }

    /// Changes the send-buffer size; never below what is queued.
    pub fn set_send_capacity(&mut self, bytes: usize) {
        self.snd.buf.set_capacity(bytes);
    }

    /// Frees the emptied send-buffer chunks kept for later writes (memory pressure).
    pub fn drop_send_spares(&mut self) {
        self.snd.buf.drop_spares();
    }

    /// Changes the receive-buffer size. The window scale was fixed at the handshake, so a larger
    /// buffer helps only up to 65535 << shift.
    pub fn set_recv_capacity(&mut self, bytes: usize) {
        self.rcv.buf.set_capacity(bytes);
    }

    /// Stops receive-buffer auto-tuning ([`Config::recv_buffer_max`](crate::tcp::Config::recv_buffer_max))
    /// for this connection: its buffer keeps the size it has or is given (an application
    /// choosing a size, as `SO_RCVBUF` does on Linux).
    pub fn fix_recv_capacity(&mut self) {
        self.rcv.auto = None;
        self.rcv.auto_off = true;
    }

    /// Pauses receive-buffer auto-tuning while memory pressure clamps the buffer, or resumes it
    /// (from a fresh round trip's measure) once the clamp is lifted; as on Linux, where pressure
    /// clamps a buffer without locking its size. A size set by the application stays fixed
    /// either way.
    pub fn pause_recv_autotune(&mut self, paused: bool) {
        self.rcv.auto = None;
        self.rcv.auto_paused = paused;
    }

    /// The application's choice of receive-buffer size (`SO_RCVBUF`): `bytes`, kept from now on
    /// (auto-tuning stops, [`Connection::fix_recv_capacity`]).
    pub fn set_recv_buffer_size(&mut self, bytes: usize) {
        self.fix_recv_capacity();
        self.set_recv_capacity(bytes);
    }

    pub fn set_nodelay(&mut self, nodelay: bool) {
        if self.cfg.nodelay != nodelay {
            Arc::make_mut(&mut self.cfg).nodelay = nodelay;
        }
    }

    pub fn nodelay(&self) -> bool {
        self.cfg.nodelay
    }

    /// Sets the time-to-live of this connection's packets (`IP_TTL`; 0 for the host's).
    pub fn set_ttl(&mut self, ttl: u8) {
        if self.cfg.ttl != ttl {
            Arc::make_mut(&mut self.cfg).ttl = ttl;
        }
    }

    /// The connection's time-to-live, 0 when it uses the host's.
    pub fn ttl(&self) -> u8 {
        self.cfg.ttl
    }

    /// Corks or uncorks the connection (TCP_CORK; MSG_MORE is a cork for one write). While
    /// corked only full-MSS segments are sent, beside Nagle's algorithm; the rest of the data
    /// waits until uncorked, until our FIN ([`Connection::close`]) or until [`CORK_LIMIT`] after
    /// the cork began (200 ms as Linux), when the cork ends by itself. Corking again while
    /// corked does not extend the limit.
    pub fn set_cork(&mut self, now: Instant, cork: bool) {
        if !cork || !self.state.can_send() || self.snd.fin_queued {
            self.uncork();
        } else if !self.corked {
            self.corked = true;
            self.timers.set(TimerKind::Cork, now + CORK_LIMIT);
        }
    }

    /// Whether partial segments are held back now (see [`Connection::set_cork`]).
    pub fn is_corked(&self) -> bool {
        self.corked
    }

    fn uncork(&mut self) {
        self.corked = false;
        self.timers.clear(TimerKind::Cork);
    }

    /// Enables (or with `None` disables) keep-alive probing (SO_KEEPALIVE with TCP_KEEPIDLE,
    /// TCP_KEEPINTVL, TCP_KEEPCNT).
    pub fn set_keepalive(&mut self, now: Instant, ka: Option<KeepAlive>) {
        self.keepalive.set(now, ka, self.state, &mut self.timers);
    }

    pub fn keepalive(&self) -> Option<KeepAlive> {
        self.keepalive.params()
    }

    /// A snapshot of the connection's state and counters, like Linux `tcp_info`.
    pub fn info(&self) -> TcpInfo {
        let stats = self.stats.snapshot();
        TcpInfo {
            state: self.state,
            bytes_sent: stats.bytes_out + stats.bytes_retrans,
            bytes_acked: stats.bytes_acked,
            bytes_received: stats.bytes_received,
            total_retrans: stats.retrans_segs,
            send_queue: self.send_queue(),
            recv_queue: self.recv_queue(),
            reordering: stats.reorder_seen,
            delivery_rate: self.delivery_rate,
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            rto: self.rtt.rto(),
            min_rtt: self.recovery.min_rtt(),
            mss: self.opts.mss,
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            snd_wnd: self.snd.wnd,
            rcv_wnd: self.rcv.buf.window(),
            bytes_in_flight: self.bytes_in_flight(),
            pipe: self.sb.pipe(),
            sacked_bytes: self.sb.sacked_bytes(),
            lost_bytes: self.sb.lost_bytes(),
            in_recovery: self.recovery.in_recovery(),
            backoff: self.rtt.backoff(),
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{established, from_peer, ms, IRS, ISS, PEER};
    use super::*;
    use crate::tcp::config::Config;

    /// The payloads sent at `now`, written out as the host would.
    fn payloads(c: &mut Connection, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(t) = c.poll_transmit(now) {
            let mut p = vec![0u8; t.payload_len];
            c.write_payload(&t, &mut p);
            out.extend(p);
        }
        out
    }

    #[test]
    fn owned_chunks_go_out_uncopied_and_come_back_emptied() {
        let cfg = Config {
            nodelay: true,
            send_buffer: 4096,
            ..Config::default()
        };
        let mut c = established(cfg, false);
        assert_eq!(c.send(b"copied "), Ok(7));
        let chunk = b"owned".repeat(1000);
        assert_eq!(c.send_owned(chunk.clone()), Ok(5000));
        // past the capacity: the chunk was taken whole, the copying path takes nothing
        assert_eq!((c.send_queue(), c.send_space()), (5007, 0));
        assert_eq!(c.send(b"x"), Err(Error::WouldBlock));
        assert_eq!(c.stats().send_buf_copied, 7);
        let sent = payloads(&mut c, ms(110));
        assert_eq!(sent[..7], *b"copied ");
        assert_eq!(sent[7..], chunk[..]);
        assert!(!c.has_reclaimable_chunk());
        let ack = from_peer(IRS + 1, ISS + 1 + 5007, TcpFlags::ACK);
        c.handle_segment(ms(210), *PEER.ip(), &ack);
        assert_eq!(c.send_queue(), 0);
        // the owned chunk is bigger than the buffer's capacity, so only the small one is kept
        let spare = c.reclaim_chunk().expect("an emptied chunk");
        assert!(spare.is_empty() && spare.capacity() >= 7);
        assert_eq!(c.reclaim_chunk(), None);
        c.close();
        assert_eq!(c.send_owned(vec![1]), Err(Error::BrokenPipe));
    }
}
