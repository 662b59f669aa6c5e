#!/usr/bin/env python3
"""The kernel client of deploy/profile: a fixed number of requests, then exit.

    profile_client.py IP PORT pingpong|rr64|bulk|churn COUNT [LINGER]

pingpong: one connection, COUNT round trips of 64 bytes.
rr64:     64 connections, one 64-byte request in flight on each, COUNT responses in all.
bulk:     one connection, COUNT MiB written, then shutdown; waits for the server's close.
churn:    COUNT connections, 16 at a time: connect, 64 bytes each way, the server closes first.

Prints `completed N` (requests, or MiB for bulk) once the last answer is in, keeps its
connections open LINGER more seconds (0 by default) so the server can be watched idle in the
state the load left it, and exits non-zero on any error or short answer. Bounded: every socket has a 60 s timeout, so a dead server ends the run.
"""
import selectors
import socket
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
    ip, port, workload, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if len(sys.argv) > 5:
        LINGER = float(sys.argv[5])
    addr = (ip, port)
    run = {"pingpong": pingpong, "rr64": rr64, "bulk": bulk, "churn": churn}[workload]
    run(addr, count)


if __name__ == "__main__":
    main()
