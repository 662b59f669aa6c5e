//! Pieces the integration tests share: the simulator's pair of hosts (`sim_pair`), the
//! applications and stream checks of the engine tests (`apps`), raw TCP frames (`rawtcp`) and
//! the veth testbed (`testbed`). Each test binary uses some of them.
#![allow(dead_code)]

pub mod apps;
pub mod mem_stack;
pub mod rawtcp;
pub mod sim_pair;
pub mod testbed;
pub mod veth;
