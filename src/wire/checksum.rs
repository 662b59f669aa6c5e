//! TODO(wire helper).
