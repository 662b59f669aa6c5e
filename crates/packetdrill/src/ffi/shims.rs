//! The shims: one per entry of `struct packetdrill_interface`, each turning packetdrill's
//! pointers into slices and values (under the contract in the parent module's docs), calling the
//! [`Driver`], and turning its answer into a return value and `errno`.

use std::ffi::{c_int, c_long, c_longlong, c_uint, c_ulong, c_void};

use libc::{
    epoll_event, iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timeval,
};

use super::{
    buf, buf_mut, driver, gather, iovecs, read_addr, recv_into_iov, ret_int, ret_len, write_addr,
    Ud,
};
use crate::driver::Driver;
use crate::readiness::{EpollEvent, PollFd};
use crate::sockets::MsgFlags;

pub(super) unsafe extern "C" fn pd_free(ud: Ud) {
    if ud.is_null() {
        return;
    }
    // SAFETY: `ud` came from Box::into_raw in packetdrill_interface_init and packetdrill frees it
    // exactly once, after its last call.
    let d = unsafe { Box::from_raw(ud as *mut Driver) };
    d.teardown();
}

pub(super) unsafe extern "C" fn pd_socket(ud: Ud, domain: c_int, ty: c_int, proto: c_int) -> c_int {
    // SAFETY: `ud` per the module's contract (the same in every shim below).
    let d = unsafe { driver(ud) };
    ret_int(d.socket(domain, ty, proto))
}

pub(super) unsafe extern "C" fn pd_bind(
    ud: Ud,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `addr` is null or has `len` readable bytes (contract).
    let a = unsafe { read_addr(addr, len) };
    ret_int(a.and_then(|a| d.bind(fd, a)).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_listen(ud: Ud, fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    ret_int(d.listen(fd, backlog).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_accept(
    ud: Ud,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    let r = d.accept(fd).map(|(new, remote)| {
        // SAFETY: the out-pair is null or valid (contract).
        unsafe { write_addr(remote, addr, len) };
        new
    });
    ret_int(r)
}

pub(super) unsafe extern "C" fn pd_connect(
    ud: Ud,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `addr` is null or has `len` readable bytes (contract).
    let a = unsafe { read_addr(addr, len) };
    ret_int(a.and_then(|a| d.connect(fd, a)).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_read(ud: Ud, fd: c_int, b: *mut c_void, n: size_t) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` writable bytes (contract).
    let buf = unsafe { buf_mut(b, n) };
    ret_len(d.recv(fd, buf, MsgFlags::default()))
}

pub(super) unsafe extern "C" fn pd_readv(
    ud: Ud,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `iov` holds `cnt` iovecs with writable buffers (contract).
    let r = unsafe { iovecs(iov, cnt).and_then(|v| recv_into_iov(d, fd, v, 0)) };
    ret_len(r)
}

pub(super) unsafe extern "C" fn pd_recv(
    ud: Ud,
    fd: c_int,
    b: *mut c_void,
    n: size_t,
    flags: c_int,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` writable bytes (contract).
    let buf = unsafe { buf_mut(b, n) };
    ret_len(d.recv(fd, buf, MsgFlags::from_bits(flags)))
}

pub(super) unsafe extern "C" fn pd_recvfrom(
    ud: Ud,
    fd: c_int,
    b: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` writable bytes (contract).
    let buf = unsafe { buf_mut(b, n) };
    let r = d.recv(fd, buf, MsgFlags::from_bits(flags));
    if r.is_ok() {
        if let Some(peer) = d.with(|a| a.peer(fd)) {
            // SAFETY: the out-pair is null or valid (contract).
            unsafe { write_addr(peer, addr, len) };
        }
    }
    ret_len(r)
}

pub(super) unsafe extern "C" fn pd_recvmsg(
    ud: Ud,
    fd: c_int,
    msg: *mut msghdr,
    flags: c_int,
) -> ssize_t {
    if msg.is_null() {
        return ret_len(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `msg` is a valid, writable msghdr (contract).
    let m = unsafe { &mut *msg };
    // SAFETY: its iovecs are valid with writable buffers (contract).
    let r = unsafe {
        iovecs(m.msg_iov, m.msg_iovlen as c_int).and_then(|v| recv_into_iov(d, fd, v, flags))
    };
    if r.is_ok() {
        if let Some(peer) = d.with(|a| a.peer(fd)) {
            // SAFETY: msg_name is null or has msg_namelen writable bytes (contract).
            unsafe { write_addr(peer, m.msg_name as *mut sockaddr, &mut m.msg_namelen) };
        }
        m.msg_controllen = 0;
        m.msg_flags = 0;
    }
    ret_len(r)
}

pub(super) unsafe extern "C" fn pd_write(
    ud: Ud,
    fd: c_int,
    b: *const c_void,
    n: size_t,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` readable bytes (contract).
    let data = unsafe { buf(b, n) };
    ret_len(d.send(fd, data, MsgFlags::default()))
}

pub(super) unsafe extern "C" fn pd_writev(
    ud: Ud,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `iov` holds `cnt` iovecs with readable buffers (contract).
    let data = unsafe { iovecs(iov, cnt).map(|v| gather(v)) };
    ret_len(data.and_then(|data| d.send(fd, &data, MsgFlags::default())))
}

pub(super) unsafe extern "C" fn pd_send(
    ud: Ud,
    fd: c_int,
    b: *const c_void,
    n: size_t,
    flags: c_int,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` readable bytes (contract).
    let data = unsafe { buf(b, n) };
    ret_len(d.send(fd, data, MsgFlags::from_bits(flags)))
}

pub(super) unsafe extern "C" fn pd_sendto(
    ud: Ud,
    fd: c_int,
    b: *const c_void,
    n: size_t,
    flags: c_int,
    _addr: *const sockaddr,
    _len: socklen_t,
) -> ssize_t {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` readable bytes (contract). A connected TCP socket ignores the
    // address, as Linux's does.
    let data = unsafe { buf(b, n) };
    ret_len(d.send(fd, data, MsgFlags::from_bits(flags)))
}

pub(super) unsafe extern "C" fn pd_sendmsg(
    ud: Ud,
    fd: c_int,
    msg: *const msghdr,
    flags: c_int,
) -> ssize_t {
    if msg.is_null() {
        return ret_len(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `msg` is a valid msghdr whose iovecs have readable buffers (contract).
    let data = unsafe {
        let m = &*msg;
        iovecs(m.msg_iov, m.msg_iovlen as c_int).map(|v| gather(v))
    };
    ret_len(data.and_then(|data| d.send(fd, &data, MsgFlags::from_bits(flags))))
}

pub(super) unsafe extern "C" fn pd_fcntl(ud: Ud, fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    // SAFETY: `ud` per the contract. `arg` is only used by F_SETFL, whose caller passes it (see
    // the module docs on variadic calls).
    let d = unsafe { driver(ud) };
    ret_int(d.fcntl(fd, cmd, arg))
}

pub(super) unsafe extern "C" fn pd_ioctl(
    ud: Ud,
    fd: c_int,
    request: c_ulong,
    arg: *mut c_int,
) -> c_int {
    if arg.is_null() {
        return ret_int(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: the requests the adapter handles all take a pointer to an int (module docs).
    let input = unsafe { *arg };
    let r = d.ioctl(fd, request, input).map(|v| {
        // SAFETY: as above.
        unsafe { *arg = v };
        0
    });
    ret_int(r)
}

pub(super) unsafe extern "C" fn pd_close(ud: Ud, fd: c_int) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    ret_int(d.close(fd).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_shutdown(ud: Ud, fd: c_int, how: c_int) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    ret_int(d.shutdown(fd, how).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_getsockopt(
    ud: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    if len.is_null() {
        return ret_int(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `len` is valid (contract, checked non-null).
    let cap = unsafe { *len } as i32;
    if cap < 0 {
        return ret_int(Err(libc::EINVAL));
    }
    // SAFETY: `val` has `*len` writable bytes (contract).
    let out = unsafe { buf_mut(val, cap as usize) };
    let r = d.getsockopt(fd, level, name, out).map(|n| {
        // SAFETY: `len` is valid, as above.
        unsafe { *len = n as socklen_t };
        0
    });
    ret_int(r)
}

pub(super) unsafe extern "C" fn pd_setsockopt(
    ud: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `val` has `len` readable bytes (contract).
    let v = unsafe { buf(val, len as usize) };
    ret_int(d.setsockopt(fd, level, name, v).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_poll(
    ud: Ud,
    fds: *mut pollfd,
    n: nfds_t,
    timeout: c_int,
) -> c_int {
    if n > 0 && fds.is_null() {
        return ret_int(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    let raw: &mut [pollfd] = if n == 0 {
        &mut []
    } else {
        // SAFETY: `fds` holds `n` writable pollfds (contract, checked non-null).
        unsafe { std::slice::from_raw_parts_mut(fds, n as usize) }
    };
    let mut v: Vec<PollFd> = raw
        .iter()
        .map(|p| PollFd {
            fd: p.fd,
            events: p.events,
            revents: 0,
        })
        .collect();
    let r = d.poll(&mut v, timeout);
    if r.is_ok() {
        for (p, q) in raw.iter_mut().zip(&v) {
            p.revents = q.revents;
        }
    }
    ret_int(r.map(|k| k as i32))
}

pub(super) unsafe extern "C" fn pd_netdev_send(ud: Ud, b: *const c_void, n: size_t) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `b` has `n` readable bytes (contract).
    let data = unsafe { buf(b, n) };
    match d.netdev_send(data) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xdp-tcp adapter: inbound packet refused: {e}");
            -1
        }
    }
}

pub(super) unsafe extern "C" fn pd_netdev_receive(
    ud: Ud,
    b: *mut c_void,
    n: *mut size_t,
    t: *mut c_longlong,
) -> c_int {
    if n.is_null() || t.is_null() {
        return -1;
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    // SAFETY: `n` is valid and `b` has `*n` writable bytes (contract).
    let out = unsafe { buf_mut(b, *n) };
    let (len, usecs) = match d.netdev_receive(out) {
        Ok(x) => x,
        Err(e) => {
            // a zero-length packet ends the run with an error; -1 would make packetdrill ask
            // again for ever
            eprintln!("xdp-tcp adapter: {e}");
            (0, 0)
        }
    };
    // SAFETY: `n` and `t` are valid and writable (contract, checked non-null).
    unsafe {
        *n = len;
        *t = usecs as c_longlong;
    }
    0
}

pub(super) unsafe extern "C" fn pd_usleep(ud: Ud, usec: c_uint) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    d.usleep(u64::from(usec));
    0
}

pub(super) unsafe extern "C" fn pd_gettimeofday(
    ud: Ud,
    tv: *mut timeval,
    _tz: *mut c_void,
) -> c_int {
    if tv.is_null() {
        return ret_int(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    let us = d.gettimeofday().as_micros();
    // SAFETY: `tv` is writable (contract, checked non-null).
    unsafe {
        (*tv).tv_sec = (us / 1_000_000) as libc::time_t;
        (*tv).tv_usec = (us % 1_000_000) as libc::suseconds_t;
    }
    0
}

pub(super) unsafe extern "C" fn pd_epoll_create(ud: Ud, size: c_int) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    ret_int(d.epoll_create(size))
}

pub(super) unsafe extern "C" fn pd_epoll_ctl(
    ud: Ud,
    epfd: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut epoll_event,
) -> c_int {
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    let e = (!ev.is_null()).then(|| {
        // SAFETY: `ev` is a valid epoll_event (contract, checked non-null); the struct is
        // packed on x86-64, so it is read unaligned.
        let raw = unsafe { std::ptr::read_unaligned(ev) };
        EpollEvent {
            events: raw.events,
            data: raw.u64,
        }
    });
    ret_int(d.epoll_ctl(epfd, op, fd, e).map(|()| 0))
}

pub(super) unsafe extern "C" fn pd_epoll_wait(
    ud: Ud,
    epfd: c_int,
    evs: *mut epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if max > 0 && evs.is_null() {
        return ret_int(Err(libc::EFAULT));
    }
    // SAFETY: `ud` per the contract.
    let d = unsafe { driver(ud) };
    let r = d.epoll_wait(epfd, max, timeout).map(|v| {
        for (i, e) in v.iter().enumerate() {
            let raw = epoll_event {
                events: e.events,
                u64: e.data,
            };
            // SAFETY: `evs` has room for `max` events (contract) and `v` holds at most `max`;
            // written unaligned (packed struct).
            unsafe { std::ptr::write_unaligned(evs.add(i), raw) };
        }
        v.len() as c_int
    });
    ret_int(r)
}

pub(super) unsafe extern "C" fn pd_pipe(_ud: Ud, _fds: *mut c_int) -> c_int {
    eprintln!("xdp-tcp adapter: pipe() is not supported");
    ret_int(Err(libc::ENOSYS))
}

pub(super) unsafe extern "C" fn pd_splice(
    _ud: Ud,
    _fd_in: c_int,
    _off_in: *mut libc::loff_t,
    _fd_out: c_int,
    _off_out: *mut libc::loff_t,
    _len: size_t,
    _flags: c_uint,
) -> ssize_t {
    eprintln!("xdp-tcp adapter: splice() is not supported");
    ret_len(Err(libc::ENOSYS))
}
