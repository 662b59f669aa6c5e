//! Receive-side scaling: which queue, and so which engine, a flow's frames arrive on.
//!
//! Sans-IO: nothing here reads a device. [`Toeplitz`] is the hash NICs compute over a received
//! IPv4 TCP frame's source address, destination address, source port and destination port (in
//! that order, network byte order), with a secret key of 40 bytes; an [`Indirection`] table maps
//! the hash's low bits to a queue. [`FlowSteer`] joins the two and answers the two questions an
//! engine asks:
//!
//! - **who owns this flow?** ([`FlowSteer::owner`]): the engine whose queue the NIC puts the
//!   flow's received frames on. Every engine computes it with the same key and table, so they
//!   agree without sharing any state on the data path.
//! - **which local port makes a new flow mine?** ([`FlowSteer::owns`], used by the host's port
//!   chooser): an active open from engine `e` picks a source port `p` such that the reply the
//!   peer sends, `(remote ip, our ip, remote port, p)` as the NIC sees it, hashes to a table
//!   entry naming `e`. Two engines never pick the same 4-tuple, since each 4-tuple has one
//!   owner.
//!
//! With a NIC whose RSS key and table the stack read ([`crate::io::ethtool`]), the owner is
//! the queue the frame really arrives on and no frame needs forwarding. Without RSS (veth, or a
//! key that cannot be read) the stack's own key and a round-robin table define ownership, and
//! frames that arrive elsewhere are forwarded to their owner (`engine::mesh`).
//!
//! The hash is linear over XOR, so [`Toeplitz::new`] precomputes, for each of the 12 input byte
//! positions, the hash of each byte value alone: a 4-tuple's hash is 12 table look-ups.

use std::net::Ipv4Addr;

/// Length of an RSS key (the common size: Intel, Mellanox, virtio, Microsoft's suite).
pub const KEY_LEN: usize = 40;

/// The key of Microsoft's RSS verification suite, which many drivers also use by default.
pub const MICROSOFT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Bytes of an IPv4 TCP hash input: source and destination address, source and destination
/// port.
const INPUT_LEN: usize = 12;

/// The Toeplitz hash with a fixed key, precomputed per input byte.
#[derive(Clone)]
pub struct Toeplitz {
    key: [u8; KEY_LEN],
    /// `table[i][b]`: the hash of an input that is zero except byte `i`, which is `b`.
    table: Box<[[u32; 256]; INPUT_LEN]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// The hash for `key` (at least 16 bytes are needed for a 12-byte input; shorter keys are
    /// padded with zeros).
    pub fn new(key: &[u8]) -> Self {
        let mut k = [0u8; KEY_LEN];
        let n = key.len().min(KEY_LEN);
        k[..n].copy_from_slice(&key[..n]);
        let mut table = Box::new([[0u32; 256]; INPUT_LEN]);
        for (i, row) in table.iter_mut().enumerate() {
            for bit in 0..8 {
                // the 32-bit window of the key that input bit (8i + bit) XORs in
                let w = window(&k, i * 8 + bit);
                for (b, h) in row.iter_mut().enumerate() {
                    if b & (0x80 >> bit) != 0 {
                        *h ^= w;
                    }
                }
            }
        }
        Toeplitz { key: k, table }
    }

    /// The key.
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The hash of up to 12 input bytes, bit by bit as the specification states it (for tests
    /// and for inputs of other lengths, up to `KEY_LEN - 4` bytes).
    pub fn hash_bytes(&self, input: &[u8]) -> u32 {
        let mut h = 0u32;
        for (i, &b) in input.iter().enumerate().take(KEY_LEN - 4) {
            for bit in 0..8 {
                if b & (0x80 >> bit) != 0 {
                    h ^= window(&self.key, i * 8 + bit);
                }
            }
        }
        h
    }

    /// The hash of a received IPv4 TCP frame from `src:sport` to `dst:dport`.
    #[inline]
    pub fn hash_v4_tcp(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        let s = src.octets();
        let d = dst.octets();
        let sp = sport.to_be_bytes();
        let dp = dport.to_be_bytes();
        let input = [
            s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], sp[0], sp[1], dp[0], dp[1],
        ];
        let t = &self.table;
        input
            .iter()
            .enumerate()
            .fold(0, |h, (i, &b)| h ^ t[i][usize::from(b)])
    }
}

/// The 32 key bits starting at bit `pos` (bit 0 = the most significant bit of `key[0]`).
fn window(key: &[u8; KEY_LEN], pos: usize) -> u32 {
    let byte = pos / 8;
    let shift = pos % 8;
    let mut five = [0u8; 8];
    for (j, slot) in five.iter_mut().take(5).enumerate() {
        *slot = key.get(byte + j).copied().unwrap_or(0);
    }
    let v = u64::from_be_bytes(five);
    ((v << shift) >> 32) as u32
}

/// An RSS indirection table: entry `hash % len` names the receive queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indirection {
    entries: Vec<u32>,
}

impl Indirection {
    /// A table of `len` entries spreading over `queues` queues round-robin (`i % queues`), as
    /// drivers and `ethtool -X equal N` set it up.
    pub fn round_robin(len: usize, queues: u32) -> Self {
        let q = queues.max(1);
        Indirection {
            entries: (0..len.max(1)).map(|i| i as u32 % q).collect(),
        }
    }

    /// A table read from a device. `None` when it is empty.
    pub fn from_entries(entries: Vec<u32>) -> Option<Self> {
        (!entries.is_empty()).then_some(Indirection { entries })
    }

    /// The queue for `hash`. Devices index with the hash's low bits; for a table whose length
    /// is a power of two (all of them in practice) that is `hash % len`.
    #[inline]
    pub fn queue(&self, hash: u32) -> u32 {
        self.entries[hash as usize % self.entries.len()]
    }

    /// The entries.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The highest queue named, plus one.
    pub fn queues_used(&self) -> u32 {
        self.entries.iter().max().map_or(0, |m| m + 1)
    }
}

/// Where a flow's frames arrive, and so which engine owns it. Engine `i` serves queue `i`.
#[derive(Debug, Clone)]
pub struct FlowSteer {
    hash: Toeplitz,
    table: Indirection,
    /// Our address: the destination of every frame hashed.
    local: Ipv4Addr,
    /// Where the key and table came from.
    source: SteerSource,
}

/// Where a [`FlowSteer`]'s key and table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteerSource {
    /// Read from the NIC: the hash predicts the queue the hardware chooses.
    Device,
    /// Chosen by the stack (no RSS, or not readable): ownership is the stack's convention and
    /// frames arriving elsewhere are forwarded.
    Software,
}

impl FlowSteer {
    /// Steering with a key and table (read from a device, or of the caller's choosing).
    pub fn new(local: Ipv4Addr, key: &[u8], table: Indirection, source: SteerSource) -> Self {
        FlowSteer {
            hash: Toeplitz::new(key),
            table,
            local,
            source,
        }
    }

    /// The stack's own steering over `engines` engines: Microsoft's key and a round-robin
    /// table of 128 entries.
    pub fn software(local: Ipv4Addr, engines: u32) -> Self {
        Self::new(
            local,
            &MICROSOFT_KEY,
            Indirection::round_robin(128, engines),
            SteerSource::Software,
        )
    }

    /// Ownership over `engines` engines, one per queue of a device: the device's RSS `key`
    /// and indirection `table` when given and naming only queues below `engines`, else
    /// [`FlowSteer::software`].
    pub fn for_device(local: Ipv4Addr, engines: u32, rss: Option<(Vec<u8>, Vec<u32>)>) -> Self {
        match rss.and_then(|(key, t)| Some((key, Indirection::from_entries(t)?))) {
            Some((key, table)) if table.queues_used() <= engines && !key.is_empty() => {
                Self::new(local, &key, table, SteerSource::Device)
            }
            _ => Self::software(local, engines),
        }
    }

    /// Where the key and table came from.
    pub fn source(&self) -> SteerSource {
        self.source
    }

    /// The indirection table.
    pub fn table(&self) -> &Indirection {
        &self.table
    }

    /// The engine (queue) owning the flow between our `local_port` and `remote:remote_port`:
    /// the queue the frames the remote sends us hash to.
    #[inline]
    pub fn owner(&self, remote: Ipv4Addr, remote_port: u16, local_port: u16) -> u32 {
        let h = self
            .hash
            .hash_v4_tcp(remote, self.local, remote_port, local_port);
        self.table.queue(h)
    }

    /// Whether `engine` owns the flow (the port chooser's filter).
    #[inline]
    pub fn owns(&self, engine: u32, remote: Ipv4Addr, remote_port: u16, local_port: u16) -> bool {
        self.owner(remote, remote_port, local_port) == engine
    }

    /// The first port of `ports` (scanned from `start`, wrapping) whose flow to
    /// `remote:remote_port` lands on `engine` and for which `free` holds; `None` if none does.
    pub fn choose_port(
        &self,
        engine: u32,
        remote: Ipv4Addr,
        remote_port: u16,
        ports: (u16, u16),
        start: u16,
        mut free: impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        let (lo, hi) = ports;
        if lo > hi {
            return None;
        }
        let span = u32::from(hi - lo) + 1;
        let first = u32::from(start.clamp(lo, hi) - lo);
        (0..span)
            .map(|i| lo + ((first + i) % span) as u16)
            .find(|&p| self.owns(engine, remote, remote_port, p) && free(p))
    }
}

#[cfg(test)]
mod tests;
