//! The C side: `packetdrill_interface_init` and one shim per entry of packetdrill's
//! `struct packetdrill_interface` (`packetdrill.h`), plus the kernel descriptors that stand for
//! sockets. This is the only module with `unsafe` code: each shim turns packetdrill's pointers
//! into slices and values, calls the safe [`Driver`], and turns its answer into a return value
//! and `errno`.
//!
//! Pointer contract (packetdrill's, checked in `run_system_call.c`): `userdata` is the
//! `Driver` this module boxed in `packetdrill_interface_init` and is freed only by `free`; data
//! pointers come with their lengths and stay valid for the call; out-pointers are writable.
//! Null pointers are answered with EFAULT rather than trusted.
//!
//! `fcntl` and `ioctl` are variadic in C. Rust cannot define a variadic function, so they are
//! defined with the optional argument as a fixed one: on x86-64 (System V) and AArch64 Linux a
//! variadic integer or pointer argument is passed in the same register as a fixed one, so the
//! value is read correctly when the caller passed it; it is only read for the commands that take
//! it.

use std::ffi::{c_char, c_int, c_long, c_longlong, c_uint, c_ulong, c_void, CStr};
use std::net::{Ipv4Addr, SocketAddrV4};

use libc::{
    epoll_event, iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, sockaddr_in, socklen_t, ssize_t,
    timeval,
};

use crate::adapter::Errno;
use crate::driver::Driver;
use crate::sockets::{MsgFlags, SockAddr};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!(
    "the variadic fcntl/ioctl shims assume the x86-64 or AArch64 Linux calling convention"
);

type Ud = *mut c_void;

mod shims;
use shims::*;

/// packetdrill's `struct packetdrill_interface`, field for field.
#[repr(C)]
pub struct PacketdrillInterface {
    pub userdata: Ud,
    pub free: Option<unsafe extern "C" fn(Ud)>,
    pub socket: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    pub bind: Option<unsafe extern "C" fn(Ud, c_int, *const sockaddr, socklen_t) -> c_int>,
    pub listen: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    pub accept: Option<unsafe extern "C" fn(Ud, c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    pub connect: Option<unsafe extern "C" fn(Ud, c_int, *const sockaddr, socklen_t) -> c_int>,
    pub read: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, size_t) -> ssize_t>,
    pub readv: Option<unsafe extern "C" fn(Ud, c_int, *const iovec, c_int) -> ssize_t>,
    pub recv: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, size_t, c_int) -> ssize_t>,
    pub recvfrom: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *mut c_void,
            size_t,
            c_int,
            *mut sockaddr,
            *mut socklen_t,
        ) -> ssize_t,
    >,
    pub recvmsg: Option<unsafe extern "C" fn(Ud, c_int, *mut msghdr, c_int) -> ssize_t>,
    pub write: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, size_t) -> ssize_t>,
    pub writev: Option<unsafe extern "C" fn(Ud, c_int, *const iovec, c_int) -> ssize_t>,
    pub send: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, size_t, c_int) -> ssize_t>,
    pub sendto: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *const c_void,
            size_t,
            c_int,
            *const sockaddr,
            socklen_t,
        ) -> ssize_t,
    >,
    pub sendmsg: Option<unsafe extern "C" fn(Ud, c_int, *const msghdr, c_int) -> ssize_t>,
    pub fcntl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_long) -> c_int>,
    pub ioctl: Option<unsafe extern "C" fn(Ud, c_int, c_ulong, *mut c_int) -> c_int>,
    pub close: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    pub shutdown: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    pub getsockopt:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int>,
    pub setsockopt:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *const c_void, socklen_t) -> c_int>,
    pub poll: Option<unsafe extern "C" fn(Ud, *mut pollfd, nfds_t, c_int) -> c_int>,
    pub netdev_send: Option<unsafe extern "C" fn(Ud, *const c_void, size_t) -> c_int>,
    pub netdev_receive:
        Option<unsafe extern "C" fn(Ud, *mut c_void, *mut size_t, *mut c_longlong) -> c_int>,
    pub usleep: Option<unsafe extern "C" fn(Ud, c_uint) -> c_int>,
    pub gettimeofday: Option<unsafe extern "C" fn(Ud, *mut timeval, *mut c_void) -> c_int>,
    pub epoll_create: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    pub epoll_ctl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut epoll_event) -> c_int>,
    pub epoll_wait:
        Option<unsafe extern "C" fn(Ud, c_int, *mut epoll_event, c_int, c_int) -> c_int>,
    pub pipe: Option<unsafe extern "C" fn(Ud, *mut c_int) -> c_int>,
    pub splice: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *mut libc::loff_t,
            c_int,
            *mut libc::loff_t,
            size_t,
            c_uint,
        ) -> ssize_t,
    >,
}

/// A new kernel descriptor to stand for a socket or epoll instance: an eventfd, so packetdrill
/// can close(2) it like any descriptor.
pub fn kernel_fd() -> Result<i32, Errno> {
    // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1 with errno set.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EMFILE))
    } else {
        Ok(fd)
    }
}

/// Closes a descriptor [`kernel_fd`] made.
pub fn close_fd(fd: i32) {
    // SAFETY: `fd` is a descriptor this module opened and nothing else uses; close takes no
    // pointers.
    unsafe {
        libc::close(fd);
    }
}

fn set_errno(e: Errno) {
    // SAFETY: __errno_location returns the calling thread's errno, valid for the thread's life.
    unsafe { *libc::__errno_location() = e };
}

fn ret_int(r: Result<i32, Errno>) -> c_int {
    r.unwrap_or_else(|e| {
        set_errno(e);
        -1
    })
}

fn ret_len(r: Result<usize, Errno>) -> ssize_t {
    match r {
        Ok(n) => n as ssize_t,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// The driver behind `userdata`.
///
/// # Safety
/// `ud` must be the pointer `packetdrill_interface_init` stored, not yet freed.
unsafe fn driver<'a>(ud: Ud) -> &'a Driver {
    // SAFETY: per the contract, `ud` came from Box::into_raw of a Driver that lives until
    // `pd_free`, and Driver is Sync.
    unsafe { &*(ud as *const Driver) }
}

/// An address argument as the adapter sees it.
///
/// # Safety
/// `p` is null or points to `len` readable bytes.
unsafe fn read_addr(p: *const sockaddr, len: socklen_t) -> Result<SockAddr, Errno> {
    if p.is_null() {
        return Err(libc::EFAULT);
    }
    let len = len as usize;
    if len < std::mem::size_of::<libc::sa_family_t>() {
        return Ok(SockAddr::Short);
    }
    // SAFETY: at least the family field is readable (checked above); unaligned reads need no
    // alignment.
    let family = unsafe { std::ptr::read_unaligned(p as *const libc::sa_family_t) };
    if i32::from(family) != libc::AF_INET {
        return Ok(SockAddr::Family(family.into()));
    }
    if len < std::mem::size_of::<sockaddr_in>() {
        return Ok(SockAddr::Short);
    }
    // SAFETY: `len` covers a whole sockaddr_in (checked above).
    let sin = unsafe { std::ptr::read_unaligned(p as *const sockaddr_in) };
    Ok(SockAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    )))
}

/// Writes `a` as a sockaddr_in into an (address, length) out-pair, truncated to the length
/// given, and sets the length to the full size, as the kernel does.
///
/// # Safety
/// Either pointer may be null (nothing is written); otherwise `len` is readable and writable
/// and `p` has `*len` writable bytes.
unsafe fn write_addr(a: SocketAddrV4, p: *mut sockaddr, len: *mut socklen_t) {
    if p.is_null() || len.is_null() {
        return;
    }
    // SAFETY: zeroed is a valid sockaddr_in (plain integers).
    let mut sin: sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = a.port().to_be();
    sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    let full = std::mem::size_of::<sockaddr_in>();
    // SAFETY: `len` is valid per the contract; `p` has `*len` writable bytes, of which we write
    // at most `full`, from a local of that size.
    unsafe {
        let n = (*len as usize).min(full);
        std::ptr::copy_nonoverlapping(&sin as *const sockaddr_in as *const u8, p as *mut u8, n);
        *len = full as socklen_t;
    }
}

/// A (pointer, length) buffer argument as a slice.
///
/// # Safety
/// `p` is null only with `n == 0`, else points to `n` bytes valid for writing for `'a`.
unsafe fn buf_mut<'a>(p: *mut c_void, n: size_t) -> &'a mut [u8] {
    if n == 0 || p.is_null() {
        return &mut [];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) }
}

/// # Safety
/// As [`buf_mut`], for reading.
unsafe fn buf<'a>(p: *const c_void, n: size_t) -> &'a [u8] {
    if n == 0 || p.is_null() {
        return &[];
    }
    // SAFETY: per the contract.
    unsafe { std::slice::from_raw_parts(p as *const u8, n) }
}

/// The iovecs of a readv/writev/recvmsg/sendmsg call.
///
/// # Safety
/// `iov` points to `cnt` iovecs whose buffers are valid for the call.
unsafe fn iovecs<'a>(iov: *const iovec, cnt: c_int) -> Result<&'a [iovec], Errno> {
    if !(0..=libc::UIO_MAXIOV).contains(&cnt) {
        return Err(libc::EINVAL);
    }
    if cnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: per the contract.
    Ok(unsafe { std::slice::from_raw_parts(iov, cnt as usize) })
}

/// Reads into a scatter list: one receive into a staging buffer, copied out in order.
///
/// # Safety
/// As [`iovecs`]; each iovec's buffer is writable.
unsafe fn recv_into_iov(
    d: &Driver,
    fd: c_int,
    iov: &[iovec],
    flags: c_int,
) -> Result<usize, Errno> {
    let total: usize = iov.iter().map(|v| v.iov_len).sum();
    let mut tmp = vec![0u8; total];
    let n = d.recv(fd, &mut tmp, MsgFlags::from_bits(flags))?;
    let mut at = 0;
    for v in iov {
        if at == n {
            break;
        }
        let k = v.iov_len.min(n - at);
        // SAFETY: each iovec's buffer is writable for iov_len bytes (contract).
        let dst = unsafe { buf_mut(v.iov_base, k) };
        dst.copy_from_slice(&tmp[at..at + k]);
        at += k;
    }
    Ok(n)
}

/// Gathers a list of buffers into one.
///
/// # Safety
/// As [`iovecs`].
unsafe fn gather(iov: &[iovec]) -> Vec<u8> {
    let mut v = Vec::new();
    for e in iov {
        // SAFETY: each iovec's buffer is readable for iov_len bytes (contract).
        v.extend_from_slice(unsafe { buf(e.iov_base, e.iov_len) });
    }
    v
}

/// packetdrill's entry point (`--so_filename`): fills `ifc` with the adapter's functions and a
/// fresh [`Driver`] configured by `flags` (`--so_flags`, may be null). Bad flags end the process
/// with a message, as packetdrill itself does for bad options.
///
/// # Safety
/// `flags` is null or a NUL-terminated string; `ifc` points to a writable
/// `struct packetdrill_interface`.
#[no_mangle]
pub unsafe extern "C" fn packetdrill_interface_init(
    flags: *const c_char,
    ifc: *mut PacketdrillInterface,
) {
    let flags = if flags.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string (contract).
        unsafe { CStr::from_ptr(flags) }
            .to_string_lossy()
            .into_owned()
    };
    let d = match Driver::new(&flags) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("xdp-tcp adapter: --so_flags: {e}");
            std::process::exit(2);
        }
    };
    let ud = Box::into_raw(Box::new(d)) as Ud;
    let table = PacketdrillInterface {
        userdata: ud,
        free: Some(pd_free),
        socket: Some(pd_socket),
        bind: Some(pd_bind),
        listen: Some(pd_listen),
        accept: Some(pd_accept),
        connect: Some(pd_connect),
        read: Some(pd_read),
        readv: Some(pd_readv),
        recv: Some(pd_recv),
        recvfrom: Some(pd_recvfrom),
        recvmsg: Some(pd_recvmsg),
        write: Some(pd_write),
        writev: Some(pd_writev),
        send: Some(pd_send),
        sendto: Some(pd_sendto),
        sendmsg: Some(pd_sendmsg),
        fcntl: Some(pd_fcntl),
        ioctl: Some(pd_ioctl),
        close: Some(pd_close),
        shutdown: Some(pd_shutdown),
        getsockopt: Some(pd_getsockopt),
        setsockopt: Some(pd_setsockopt),
        poll: Some(pd_poll),
        netdev_send: Some(pd_netdev_send),
        netdev_receive: Some(pd_netdev_receive),
        usleep: Some(pd_usleep),
        gettimeofday: Some(pd_gettimeofday),
        epoll_create: Some(pd_epoll_create),
        epoll_ctl: Some(pd_epoll_ctl),
        epoll_wait: Some(pd_epoll_wait),
        pipe: Some(pd_pipe),
        splice: Some(pd_splice),
    };
    // SAFETY: `ifc` is writable (contract).
    unsafe { ifc.write(table) };
}
