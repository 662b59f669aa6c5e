//! TODO(wire helper).
pub struct EthernetAddress;
pub struct EthernetFrame;
pub struct EthernetRepr;
pub struct EtherType;
