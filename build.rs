//! Compiles each BPF program in `bpf/` into `$OUT_DIR/<name>.o`, which the loaders embed with
//! `include_bytes!`: `xdp_steer.c` (`io::xdp::program`), `fault.c` (`io::fault_bpf`) and
//! `synflood.c` (`io::synflood_bpf`). clang is required (xsk-rs needs it too, to
//! build libxdp); without it the build stops here with the install hint rather than later with
//! an obscure error.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCES: &[&str] = &["bpf/xdp_steer.c", "bpf/fault.c", "bpf/synflood.c"];
const HINT: &str = "install the build dependencies: `sudo deploy/install-deps.sh` \
                    (Debian: apt-get install clang llvm libbpf-dev libelf-dev zlib1g-dev m4)";

fn main() {
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // Kernel UAPI headers include <asm/types.h>, which Debian keeps under the multiarch dir.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };

    for source in SOURCES {
        let stem = std::path::Path::new(source)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("source names are UTF-8");
        compile(&clang, multiarch, source, &out.join(format!("{stem}.o")));
    }
}

fn compile(clang: &str, multiarch: &str, source: &str, object: &std::path::Path) {
    let status = Command::new(clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            panic!("`{clang}` failed to compile {source} ({s}); if a header is missing, {HINT}")
        }
        Err(e) => panic!("cannot run `{clang}` to compile {source}: {e}; {HINT}"),
    }
}
