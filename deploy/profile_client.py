#!/usr/bin/env python3
"""The kernel client of deploy/profile: a fixed number of requests, then exit.

    profile_client.py IP PORT pingpong|rr64|bulk|churn COUNT [LINGER] [--server-pid PID] [--burst N]

pingpong: one connection, COUNT round trips of 64 bytes.
rr64:     64 connections, one 64-byte request in flight on each, COUNT responses in all.
bulk:     one connection, COUNT MiB written, then shutdown; waits for the server's close.
          With --server-pid (the profiled server's process, which this client may signal), in
          bursts of N (45) full segments, each sent while the server is stopped (SIGSTOP) and
          acknowledged before the next: every burst reaches the server as one receive batch, so
          the batches per MiB, and with them the ACKs and loop iterations, do not depend on the
          two sides' speeds. Needs root (TCP_CONGESTION cubic) and a send window and congestion
          window of a burst (deploy/profile sets initcwnd 64 on the route). Prints a `bursts`
          line: how many, and how many were not whole (each wait is bounded; the server is
          resumed on every exit path, SIGTERM included).
          Without --server-pid, as fast as the kernel sends (batching then varies between runs).
churn:    COUNT connections, 16 at a time: connect, 64 bytes each way, the server closes first.

Prints `completed N` (requests, or MiB for bulk) once the last answer is in, keeps its
connections open LINGER more seconds (0 by default) so the server can be watched idle in the
state the load left it, and exits non-zero on any error or short answer. Bounded: every socket
has a 60 s timeout, so a dead server ends the run.
"""
import argparse
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys
import time

SIZE = 64
TIMEOUT = 60.0


LINGER = 0.0


def finished(n):
    print(f"completed {n}", flush=True)
    time.sleep(LINGER)


def connect(addr):
    s = socket.create_connection(addr, timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    got = 0
    while got < n:
        b = s.recv(n - got)
        if not b:
            raise RuntimeError(f"connection closed after {got} of {n} bytes")
        got += len(b)


def pingpong(addr, count):
    s = connect(addr)
    msg = b"p" * SIZE
    for _ in range(count):
        s.sendall(msg)
        recv_exact(s, SIZE)
    finished(count)
    s.close()
    return count


def rr64(addr, count, conns=64):
    sel = selectors.DefaultSelector()
    msg = b"r" * SIZE
    socks = [connect(addr) for _ in range(conns)]
    pending = {}
    sent = 0
    for s in socks:
        if sent < count:
            s.setblocking(False)
            s.send(msg)
            sent += 1
            pending[s] = 0
            sel.register(s, selectors.EVENT_READ)
    done = 0
    while done < count:
        events = sel.select(TIMEOUT)
        if not events:
            raise RuntimeError(f"no response for {TIMEOUT} s after {done}")
        for key, _ in events:
            s = key.fileobj
            b = s.recv(SIZE - pending[s])
            if not b:
                raise RuntimeError("server closed a connection")
            pending[s] += len(b)
            if pending[s] < SIZE:
                continue
            done += 1
            pending[s] = 0
            if sent < count:
                s.send(msg)
                sent += 1
            else:
                sel.unregister(s)
    finished(done)
    for s in socks:
        s.close()
    return done


def bulk(addr, mib):
    s = connect(addr)
    chunk = b"b" * (1 << 20)
    for _ in range(mib):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    # the discard server closes once it has read everything
    if s.recv(1):
        raise RuntimeError("bulk: unexpected bytes from a discarding server")
    finished(mib)
    s.close()
    return mib


# ioctls on a TCP socket (linux/sockios.h): bytes not yet acknowledged (sent or not), bytes not
# yet sent
SIOCOUTQ = 0x5411
SIOCOUTQNSD = 0x894B
# offsets in struct tcp_info (linux/tcp.h)
TI_SND_MSS, TI_CWND, TI_TOTAL_RETRANS, TI_SEGS_IN, TI_SND_WND = 16, 80, 100, 140, 228
SENT_WAIT = 1.0  # seconds for the kernel to put a burst on the wire while the server is stopped
ACK_WAIT = 20.0  # seconds for the server to acknowledge a burst once it runs


class Stopper:
    """SIGSTOP/SIGCONT of the server process; always leaves it running."""

    def __init__(self, pid):
        self.pid = pid
        self.stopped = False

    def stop(self):
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True
        # the stop is asynchronous: wait until every thread is in the stopped state
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if all(state in ("T", "t") for state in self._states()):
                return True
            time.sleep(0.0002)
        return False

    def cont(self):
        if self.stopped:
            self.stopped = False
            os.kill(self.pid, signal.SIGCONT)

    def _states(self):
        out = []
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    # "tid (comm) S ...": the state follows the last ')'
                    out.append(f.read().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                pass
        return out


def ioctl_int(s, req):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), req, b"\0" * 4))[0]


def tcp_info(s, off, fmt="I"):
    b = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(b) < off + struct.calcsize(fmt):
        return None
    return struct.unpack_from(fmt, b, off)[0]


def wait_until(cond, limit):
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0002)
    return True


def bulk_bursts(addr, mib, pid, segs):
    """COUNT MiB in bursts of SEGS full segments, each received by the server in one batch.

    The server process is stopped (SIGSTOP) while the kernel puts a burst on the wire, so the
    whole burst waits in its receive ring, then resumed (SIGCONT) until the burst is
    acknowledged. A burst that is not all on the wire within SENT_WAIT (window or cwnd too small)
    or not acknowledged within ACK_WAIT is counted as not whole; the server runs on regardless.
    """
    stopper = Stopper(pid)
    s = socket.socket()
    # CUBIC, not the machine's default (BBR paces its sends); a send buffer for a whole burst
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(TIMEOUT)
    s.connect(addr)
    mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    burst = segs * mss
    total = mib << 20
    data = b"b" * burst
    # let the server take the handshake's last ACK in an iteration of its own
    time.sleep(0.2)
    bursts = broken = unsent = unacked = stop_slow = window_short = 0
    replies = {}  # segments from the server per burst -> bursts
    wnd_min = None  # the smallest send window a burst started with
    resent = []  # bursts (from 0) in which the client's kernel retransmitted
    sent = 0
    try:
        while sent < total:
            n = min(burst, total - sent)
            ok = True
            wnd = tcp_info(s, TI_SND_WND)
            if wnd is not None:
                wnd_min = wnd if wnd_min is None else min(wnd_min, wnd)
            if wnd is not None and wnd < n:
                window_short += 1
                ok = False
            segs_in = tcp_info(s, TI_SEGS_IN)
            retrans = tcp_info(s, TI_TOTAL_RETRANS)
            if not stopper.stop():
                stop_slow += 1
                ok = False
            s.sendall(data[:n])
            if not wait_until(lambda: ioctl_int(s, SIOCOUTQNSD) == 0, SENT_WAIT):
                unsent += 1
                ok = False
            # the last frames' way through the veth pair into the server's ring
            time.sleep(0.002)
            stopper.cont()
            if not wait_until(lambda: ioctl_int(s, SIOCOUTQ) == 0, ACK_WAIT):
                unacked += 1
                ok = False
            k = tcp_info(s, TI_SEGS_IN) - segs_in
            replies[k] = replies.get(k, 0) + 1
            if tcp_info(s, TI_TOTAL_RETRANS) != retrans:
                resent.append(bursts)
            bursts += 1
            broken += not ok
            sent += n
    finally:
        stopper.cont()
    s.shutdown(socket.SHUT_WR)
    if s.recv(1):
        raise RuntimeError("bulk: unexpected bytes from a discarding server")
    print(f"bursts {bursts} of up to {segs} x {mss} bytes, not whole {broken} (send window "
          f"below the burst {window_short}, server not stopped within 1 s {stop_slow}, not all "
          f"sent within {SENT_WAIT:.0f} s {unsent}, not acknowledged within {ACK_WAIT:.0f} s "
          f"{unacked}); retransmitted segments {tcp_info(s, TI_TOTAL_RETRANS)} (in bursts "
          f"{resent[:10]}), cwnd "
          f"{tcp_info(s, TI_CWND)}, smallest send window {wnd_min}; segments from the server per burst: "
          + ", ".join(f"{k} in {v}" for k, v in sorted(replies.items())), flush=True)
    finished(mib)
    s.close()
    return mib


def churn(addr, count, concurrency=16):
    sel = selectors.DefaultSelector()
    msg = b"c" * SIZE
    started = done = 0

    def start():
        nonlocal started
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(TIMEOUT)
        s.connect(addr)
        s.setblocking(False)
        s.send(msg)
        started += 1
        sel.register(s, selectors.EVENT_READ, [0])

    for _ in range(min(concurrency, count)):
        start()
    while done < count:
        events = sel.select(TIMEOUT)
        if not events:
            raise RuntimeError(f"churn: stalled after {done}")
        for key, _ in events:
            s = key.fileobj
            b = s.recv(SIZE)
            if b:
                key.data[0] += len(b)
                continue
            if key.data[0] != SIZE:
                raise RuntimeError(f"churn: closed after {key.data[0]} bytes")
            sel.unregister(s)
            s.close()
            done += 1
            if started < count:
                start()
    finished(done)
    return done


def main():
    global LINGER
    ap = argparse.ArgumentParser(description="the kernel client of deploy/profile")
    ap.add_argument("ip")
    ap.add_argument("port", type=int)
    ap.add_argument("workload", choices=["pingpong", "rr64", "bulk", "churn"])
    ap.add_argument("count", type=int)
    ap.add_argument("linger", type=float, nargs="?", default=0.0)
    ap.add_argument("--server-pid", type=int, help="bulk: send in bursts, the server stopped")
    ap.add_argument("--burst", type=int, default=45, help="bulk: segments per burst (45)")
    a = ap.parse_args()
    if not 1 <= a.burst <= 64:
        ap.error("--burst: 1..64 segments (the server takes up to 64 frames a batch)")
    LINGER = a.linger
    # `timeout` ends a stuck client with SIGTERM: unwind, so the server is resumed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("profile_client: terminated"))
    addr = (a.ip, a.port)
    if a.workload == "bulk" and a.server_pid:
        bulk_bursts(addr, a.count, a.server_pid, a.burst)
    else:
        {"pingpong": pingpong, "rr64": rr64, "bulk": bulk, "churn": churn}[a.workload](addr, a.count)


if __name__ == "__main__":
    main()
