#!/usr/bin/env python3
"""Table of deploy/profile: instructions per request by category, from the callgrind dumps.

    profile_report.py DIR RUNS WORKLOADS COUNTS

For each workload and run there are two dumps: `cg.W.R.1` covers the client's requests (from
the server's first iteration to the client's last answer), `cg.W.R.2` the two seconds after,
when nothing arrives. The second prices an empty iteration in the same state (connections and
timers as the load left them): instructions / iterations, where iterations are the calls of
`recv_batch` (once per iteration) and empty ones the calls of `Engine::idle` (once per empty
iteration). The "work" figure is then the first dump less its empty iterations at that price,
which does not depend on how fast the client answered; "all" is the first dump as it is.

Each function's own (exclusive) instructions go to one category by its name, first match wins.
Inlined code counts for the function it was inlined into (the clock read inlined into the loop
is "engine", the wire parsing inlined into the host "protocol").
"""
import re
import sys

CATEGORIES = [
    ("checksum", re.compile(r"checksum", re.I)),
    ("copy", re.compile(r"mem(cpy|move|set|cmp)|copy_from_slice|copy_within")),
    ("app", re.compile(r"xdp_tcp_bench::")),
    (
        "engine",
        re.compile(
            r"xdp_tcp::engine::|clock_gettime|__vdso|std::time|time::Timespec|"
            r"poll_timeout|next_expiry|poll_event|has_output"
        ),
    ),
    ("rings", re.compile(r"io::xdp|xsk_rs|xsk_ring|libxdp|sendto|__libc_|syscall|^poll$|__poll|recvfrom")),
    ("protocol", re.compile(r".")),
]
NAMES = ["engine", "protocol", "checksum", "copy", "rings", "app"]


def classify(name):
    for cat, rx in CATEGORIES:
        if rx.search(name):
            return cat
    return "protocol"


def parse(path):
    """Self cost per function name, and call counts per called function name."""
    names = {}
    self_cost = {}
    calls = {}
    fn = None
    pending_call = None  # the next cost line is a call's inclusive cost
    cost_line = re.compile(r"^[0-9+\-*]")

    def name_of(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?$", spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    cfn = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                fn = name_of(line[3:])
            elif line.startswith("cfn="):
                cfn = name_of(line[4:])
            elif line.startswith("calls="):
                n = int(line[6:].split()[0])
                calls[cfn] = calls.get(cfn, 0) + n
                pending_call = True
            elif cost_line.match(line):
                if pending_call:
                    pending_call = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    self_cost[fn] = self_cost.get(fn, 0) + int(parts[1])
    cats = dict.fromkeys(NAMES, 0)
    for name, c in self_cost.items():
        cats[classify(name)] += c
    return sum(cats.values()), cats, calls


def count_calls(calls, pattern):
    rx = re.compile(pattern)
    return sum(n for name, n in calls.items() if rx.search(name))


def main():
    d, runs, only, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
    counts = dict((k, int(v)) for k, v in (kv.split("=") for kv in counts.split(",")))
    btotal, bcats, bcalls = parse(f"{d}/cg.idle.1.1")
    bit = count_calls(bcalls, r"::recv_batch$")
    if bit == 0:
        # the idle run's dump caught no iteration (a loaded machine can delay the engine's start)
        print("empty iteration, busy-polling: no iteration recorded")
    else:
        print(f"empty iteration, busy-polling: {btotal / bit:.0f} instructions ("
              + ", ".join(f"{k} {v / bit:.0f}" for k, v in bcats.items() if v >= bit / 2) + ")")
    unit = {"pingpong": "round trip", "rr64": "request", "bulk": "MiB", "churn": "connection"}
    head = (f"{'workload':<9} {'run':>3} {'per':<10} {'work':>9} "
            + " ".join(f"{n:>9}" for n in NAMES)
            + f" {'iter/req':>8} {'empty/req':>9} {'empty':>6} {'all':>9} {'rx/req':>6} {'tx/req':>6}")
    print(head)
    print("-" * len(head))
    for w in only:
        works = []
        for r in range(1, runs + 1):
            total, cats, calls = parse(f"{d}/cg.{w}.{r}.1")
            itotal, icats, icalls = parse(f"{d}/cg.{w}.{r}.2")
            iit = count_calls(icalls, r"::recv_batch$")
            iempty = count_calls(icalls, r"Engine<.*>::idle$")
            if iit == 0 or iempty < 0.99 * iit:
                raise SystemExit(f"profile_report: {w} run {r}: the idle window had work "
                                 f"({iit} iterations, {iempty} empty)")
            price = {k: v / iit for k, v in icats.items()}
            it = count_calls(calls, r"::recv_batch$")
            empty = count_calls(calls, r"Engine<.*>::idle$")
            n = counts[w]
            # frames received and sent (the engine's per-frame `receive` and `transmit`, never
            # inlined; the ring accessors are inlined Rust): a kernel client's pure ACKs, which
            # come or not as its delayed-ACK timer and our speed under valgrind meet, move the
            # per-request figure with them
            rx = count_calls(calls, r"^xdp_tcp::engine::receive$")
            tx = count_calls(calls, r"^xdp_tcp::engine::transmit$")
            work = {k: (cats[k] - empty * price[k]) / n for k in NAMES}
            wsum = sum(work.values())
            works.append(wsum)
            print(f"{w:<9} {r:>3} {unit[w]:<10} {wsum:>9.0f} "
                  + " ".join(f"{work[k]:>9.0f}" for k in NAMES)
                  + f" {(it - empty) / n:>8.2f} {empty / n:>9.1f} {itotal / iit:>6.0f}"
                  + f" {total / n:>9.0f} {rx / n:>6.2f} {tx / n:>6.2f}")
        if len(works) > 1:
            lo, hi = min(works), max(works)
            print(f"{w:<9} spread of the work figure between runs: {100 * (hi - lo) / lo:.2f}%")
    print("work: instructions per unit in iterations that did something (empty ones priced apart);")
    print("iter/req: such iterations per unit; empty: instructions of one empty iteration; "
          "all: everything in Engine::poll per unit;")
    print("rx/req, tx/req: frames received and sent per unit")


if __name__ == "__main__":
    main()
