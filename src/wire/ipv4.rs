//! TODO(wire helper).
pub struct IpProtocol;
pub struct Ipv4Packet;
pub struct Ipv4Repr;
