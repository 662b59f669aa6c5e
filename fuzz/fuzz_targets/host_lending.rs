#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xdp_tcp_fuzz::host_lending(data));
