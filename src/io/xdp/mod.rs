//! AF_XDP datapath: the steering program, the UMEM and one socket per queue.

mod program;

pub use program::{
    check_object, ifindex, AttachMode, SteerConfig, SteerProgram, SteerStats, XdpMode, STEER_OBJECT,
};
