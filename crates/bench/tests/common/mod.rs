//! The library's veth testbed helper (`tests/common/testbed.rs` at the workspace root), included
//! by path so the harness's veth tests bring testbeds up and down exactly as the library's do.
#![allow(dead_code)]

#[path = "../../../../tests/common/testbed.rs"]
pub mod testbed;
