//! Waking the kernel and being woken: the tx kick, the sleep in `wait_rx`, and the [`Waker`]
//! that lets other threads end that sleep.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Wakes an engine sleeping in [`XdpSocket`](super::XdpSocket)'s `wait_rx` from another thread (an application
/// thread that just queued a command for it). Cheap when the engine is awake: an atomic add and
/// a load; an `eventfd` write only while it sleeps.
#[derive(Clone, Debug)]
pub struct Waker(pub(super) Arc<WakeState>);

#[derive(Debug)]
pub(super) struct WakeState {
    /// Non-blocking eventfd, polled beside the socket.
    pub(super) fd: File,
    /// The engine is in (or about to enter) its sleep.
    pub(super) asleep: AtomicBool,
    /// Wake-ups asked for so far.
    pub(super) asked: AtomicU64,
}

impl Waker {
    /// A waker with its own eventfd; give a clone to [`XdpSocket::set_waker`](super::XdpSocket::set_waker).
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor that
        // nothing else owns, so OwnedFd may take it.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, `fd` is ours alone.
        let fd = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Waker(Arc::new(WakeState {
            fd,
            asleep: AtomicBool::new(false),
            asked: AtomicU64::new(0),
        })))
    }

    /// Ends the engine's sleep, or its next one if it is about to sleep having missed what the
    /// caller queued. Call after queueing the work.
    pub fn wake(&self) {
        // Dekker-style with wait_rx: the engine sets `asleep` then reads `asked`; we add to
        // `asked` then read `asleep` (all SeqCst). Either it sees our request and does not
        // sleep, or we see it asleep and write the eventfd.
        self.0.asked.fetch_add(1, SeqCst);
        if self.0.asleep.load(SeqCst) {
            let _ = (&self.0.fd).write(&1u64.to_ne_bytes());
        }
    }
}

/// Asks the kernel to send what the tx ring holds: `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`
/// (what xsk-rs's `TxQueue::wakeup` does) as a raw system call. glibc's `sendto` is a thread
/// cancellation point, which in a threaded process brackets the call with
/// `__pthread_enable_asynccancel` and `__pthread_disable_asynccancel` (~80 instructions a kick,
/// callgrind); nothing here uses thread cancellation. The result is ignored: a transient
/// failure leaves the descriptors queued for the next flush, and the caller ignored every error
/// before too.
///
/// On x86-64 the `syscall` instruction is issued inline: glibc's `syscall()` shifts its seven
/// arguments one register along and checks for an error we ignore (~19 instructions a kick,
/// one kick a transmit batch in copy mode).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn kick_tx(fd: std::os::fd::RawFd) {
    // SAFETY: the x86-64 Linux system call convention: the number in rax, the arguments in
    // rdi, rsi, rdx, r10, r8 and r9, the result in rax, rcx and r11 overwritten by the
    // instruction; no stack is used. The call is `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`:
    // null buffer and address pointers with zero lengths, so the kernel reads and writes no
    // memory of ours; it only processes the AF_XDP socket's tx ring, whose descriptors and
    // frames the caller produced before.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_sendto => _,
            in("rdi") i64::from(fd),
            in("rsi") 0usize,
            in("rdx") 0usize,
            in("r10") i64::from(libc::MSG_DONTWAIT),
            in("r8") 0usize,
            in("r9") 0usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
}

/// [`kick_tx`] elsewhere: through glibc's `syscall()`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(super) fn kick_tx(fd: std::os::fd::RawFd) {
    // SAFETY: a zero-length sendto with null buffer and address pointers reads and writes no
    // memory of ours; it only makes the kernel process the AF_XDP socket's tx ring, whose
    // descriptors and frames the caller produced before.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            std::ptr::null::<u8>(),
            0usize,
            libc::MSG_DONTWAIT,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
}

/// `poll(fds, timeout)` as a raw `ppoll` system call: glibc's `poll` is a cancellation point
/// too, bracketed by the same two calls as `sendto` (see [`kick_tx`]; ~30 instructions a sleep,
/// which the idle engine takes once per empty iteration). Returns how many descriptors are
/// ready.
pub(super) fn sleep_poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: (timeout.subsec_millis() * 1_000_000) as libc::c_long,
    };
    // SAFETY: `fds` is a slice of initialised pollfd the kernel may write `revents` into, for
    // its length, during the call; `ts` is a valid timespec it only reads; no signal mask.
    let n = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts as *const libc::timespec,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
