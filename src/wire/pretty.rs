//! One-line, tcpdump-like text for segments and frames, for logs and test failure messages.
//!
//! `TcpRepr` prints as `S. seq 0 ack 1 win 65535 <mss 1460,sackOK,TS 1 0,wscale 7> len 0`:
//! flags as [`TcpFlags`]'s `Debug` spells them, `ack` only when ACK is set, `urg` only when URG
//! is set, the option list only when there is one. [`Frame`] prints a whole Ethernet frame
//! without ever failing: what does not parse is shown as `[bad: <error>]`, and a checksum that
//! does not verify as `[bad cksum]`.

use core::fmt;

use super::{
    ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

impl fmt::Display for TcpRepr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} seq {}", self.flags, self.seq)?;
        if self.flags.ack() {
            write!(f, " ack {}", self.ack)?;
        }
        write!(f, " win {}", self.window)?;
        if self.flags.contains(TcpFlags::URG) {
            write!(f, " urg {}", self.urgent)?;
        }
        if self.options != TcpOptions::default() {
            write!(f, " <{}>", self.options)?;
        }
        write!(f, " len {}", self.payload.len())
    }
}

impl fmt::Display for TcpOptions {
    /// The options, comma-separated, without the angle brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut next = |f: &mut fmt::Formatter<'_>| {
            let s = sep;
            sep = ",";
            f.write_str(s)
        };
        if let Some(mss) = self.mss {
            next(f)?;
            write!(f, "mss {mss}")?;
        }
        if self.sack_permitted {
            next(f)?;
            f.write_str("sackOK")?;
        }
        if let Some((val, ecr)) = self.timestamp {
            next(f)?;
            write!(f, "TS {val} {ecr}")?;
        }
        if let Some(shift) = self.window_scale {
            next(f)?;
            write!(f, "wscale {shift}")?;
        }
        if !self.sack().is_empty() {
            next(f)?;
            write!(f, "sack {} ", self.sack().len())?;
            for (left, right) in self.sack() {
                write!(f, "{{{left}:{right}}}")?;
            }
        }
        Ok(())
    }
}

/// A whole Ethernet frame as one line, e.g.
/// `IP 10.0.0.1.40000 > 10.0.0.2.80: S. seq 0 win 64240 <mss 1460> len 0`.
#[derive(Clone, Copy)]
pub struct Frame<'a>(pub &'a [u8]);

impl fmt::Display for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = match EthernetFrame::new_checked(self.0) {
            Ok(frame) => frame,
            Err(e) => return write!(f, "ethernet [bad: {e}] ({} bytes)", self.0.len()),
        };
        match frame.ethertype() {
            EtherType::Ipv4 => fmt_ipv4(f, frame.payload()),
            EtherType::Arp => {
                match ArpPacket::new_checked(frame.payload()).and_then(|p| ArpRepr::parse(&p)) {
                    Ok(arp) => write!(f, "{arp}"),
                    Err(e) => write!(f, "ARP [bad: {e}]"),
                }
            }
            other => write!(
                f,
                "{} > {} ethertype {other} length {}",
                frame.src_addr(),
                frame.dst_addr(),
                frame.payload().len()
            ),
        }
    }
}

fn fmt_ipv4(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const LAX: ChecksumCaps = ChecksumCaps {
        verify_rx: false,
        compute_tx: false,
    };
    let packet = match Ipv4Packet::new_checked(bytes) {
        Ok(p) => p,
        Err(e) => return write!(f, "IP [bad: {e}]"),
    };
    let ip = match Ipv4Repr::parse(&packet, &LAX) {
        Ok(ip) => ip,
        Err(e) => {
            return write!(
                f,
                "IP {} > {} [bad: {e}]",
                packet.src_addr(),
                packet.dst_addr()
            )
        }
    };
    let bad_ip_cksum = !packet.verify_checksum();
    let payload = packet.payload();
    match ip.protocol {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(payload);
            match tcp
                .and_then(|p| TcpRepr::parse(&p, ip.src_addr, ip.dst_addr, &LAX).map(|r| (p, r)))
            {
                Ok((p, r)) => {
                    write!(
                        f,
                        "IP {}.{} > {}.{}: {r}",
                        ip.src_addr, r.src_port, ip.dst_addr, r.dst_port
                    )?;
                    if !p.verify_checksum(ip.src_addr, ip.dst_addr) {
                        f.write_str(" [bad cksum]")?;
                    }
                }
                Err(e) => write!(f, "IP {} > {}: tcp [bad: {e}]", ip.src_addr, ip.dst_addr)?,
            }
        }
        IpProtocol::Icmp => {
            let icmp = Icmpv4Packet::new_checked(payload);
            match icmp.and_then(|p| Icmpv4Repr::parse(&p, &LAX).map(|r| (p, r))) {
                Ok((p, r)) => {
                    write!(f, "IP {} > {}: {r}", ip.src_addr, ip.dst_addr)?;
                    if !p.verify_checksum() {
                        f.write_str(" [bad cksum]")?;
                    }
                }
                Err(e) => write!(f, "IP {} > {}: icmp [bad: {e}]", ip.src_addr, ip.dst_addr)?,
            }
        }
        _ => write!(f, "{ip}")?,
    }
    if bad_ip_cksum {
        f.write_str(" [bad ip cksum]")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{SeqNumber, MAX_SACK_BLOCKS};

    fn repr(flags: TcpFlags, options: TcpOptions) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq: SeqNumber(0),
            ack: SeqNumber(1),
            flags,
            window: 65535,
            urgent: 0,
            options,
            payload: &[],
        }
    }

    #[test]
    fn tcpdump_like() {
        let opts = TcpOptions {
            mss: Some(1460),
            sack_permitted: true,
            timestamp: Some((1, 0)),
            window_scale: Some(7),
            ..TcpOptions::default()
        };
        assert_eq!(
            repr(TcpFlags::SYN | TcpFlags::ACK, opts).to_string(),
            "S. seq 0 ack 1 win 65535 <mss 1460,sackOK,TS 1 0,wscale 7> len 0"
        );
        assert_eq!(
            repr(TcpFlags::SYN, TcpOptions::default()).to_string(),
            "S seq 0 win 65535 len 0"
        );
        let sack = TcpOptions::with_sack(&[
            (SeqNumber(10), SeqNumber(20)),
            (SeqNumber(30), SeqNumber(40)),
        ]);
        assert_eq!(
            repr(TcpFlags::ACK, sack).to_string(),
            ". seq 0 ack 1 win 65535 <sack 2 {10:20}{30:40}> len 0"
        );
        assert_eq!(MAX_SACK_BLOCKS, 4);
    }

    #[test]
    fn frames_never_fail() {
        assert_eq!(
            Frame(&[1, 2, 3]).to_string(),
            "ethernet [bad: truncated] (3 bytes)"
        );
        let mut frame = [0u8; 34];
        frame[12] = 0x08;
        frame[14] = 0x45;
        frame[16] = 0xff;
        assert_eq!(Frame(&frame).to_string(), "IP [bad: truncated]");
    }
}
