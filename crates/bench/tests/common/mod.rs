//! The library's veth testbed helper (`tests/common/testbed.rs` at the workspace root), included
//! by path so the harness's veth tests bring testbeds up and down exactly as the library's do.
#![allow(dead_code)]

#[path = "../../../../tests/common/testbed.rs"]
pub mod testbed;

/// The engine on the testbed and the kernel-side helpers of the library's veth tests.
#[path = "../../../../tests/common/veth.rs"]
pub mod veth;

/// The engine applications of the library's tests (the echo server).
#[path = "../../../../tests/common/apps.rs"]
pub mod apps;
