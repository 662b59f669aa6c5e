//! TODO(wire helper).
pub struct ArpOperation;
pub struct ArpPacket;
pub struct ArpRepr;
