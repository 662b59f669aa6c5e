//! TODO(wire helper).
pub struct Icmpv4Packet;
pub struct Icmpv4Repr;
