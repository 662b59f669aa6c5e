//! Compiles the XDP steering program (`bpf/xdp_steer.c`) into `$OUT_DIR/xdp_steer.o`, which
//! `io::xdp::program` embeds with `include_bytes!`. clang is required (xsk-rs needs it too, to
//! build libxdp); without it the build stops here with the install hint rather than later with
//! an obscure error.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "bpf/xdp_steer.c";
const HINT: &str = "install the build dependencies: `sudo deploy/install-deps.sh` \
                    (Debian: apt-get install clang llvm libbpf-dev libelf-dev zlib1g-dev m4)";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let object = out.join("xdp_steer.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // Kernel UAPI headers include <asm/types.h>, which Debian keeps under the multiarch dir.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };

    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(SOURCE)
        .arg("-o")
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            panic!("`{clang}` failed to compile {SOURCE} ({s}); if a header is missing, {HINT}")
        }
        Err(e) => panic!("cannot run `{clang}` to compile {SOURCE}: {e}; {HINT}"),
    }
}
