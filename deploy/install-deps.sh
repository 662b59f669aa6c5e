#!/usr/bin/env bash
# Installs the Debian 12 packages the AF_XDP build and the veth tests need.
# Idempotent and non-interactive: a fast no-op (dpkg -s only) when everything is present;
# otherwise one `apt-get update` and one `apt-get install` of exactly what is missing.
set -euo pipefail

# Build: xsk-rs 0.11 (libxdp-sys compiles libxdp/libbpf with clang, m4, libelf, zlib) and our
# XDP program (clang -target bpf, headers from libbpf-dev).
BUILD_PKGS=(build-essential pkg-config libelf-dev zlib1g-dev clang llvm m4 libbpf-dev)
# packetdrill (deploy/conformance builds it from source): its parser needs bison and flex.
BUILD_PKGS+=(bison flex)
# Tests: the testbed script (ip, ethtool), kernel-side peers and captures, wrk and curl against
# the HTTP example.
# redis-tools (redis-benchmark, redis-cli) against the RESP example, redis-server beside it in
# the bench (installed only: nothing starts it but the bench).
TEST_PKGS=(iproute2 ethtool tshark socat netcat-openbsd python3 tcpdump iputils-ping wrk curl apache2-utils redis-tools redis-server)
# Benchmark (deploy/bench): the plot, the independent ping-pong client the load generator is
# checked against, and callgrind for profiles where perf has no hardware counters (this VM).
BENCH_PKGS=(python3-matplotlib sockperf valgrind)

missing=()
for p in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${BENCH_PKGS[@]}"; do
    # `dpkg -s` alone also succeeds for removed-but-not-purged packages; check the status line.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${missing[*]}; run this script as root" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark would otherwise ask whether non-root users may capture.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
