//! The driver: the adapter's state behind a mutex, the virtual clock, and calls that block.
//!
//! packetdrill runs a script on its main thread and runs each call the script marks as blocking
//! (`0.1...0.2 accept(...)`) on a second thread, which it considers blocked once the kernel
//! shows that thread sleeping. So a blocking call here really sleeps, on a condition variable,
//! and the main thread drives time: every call of the main thread that can change what a
//! blocked call waits for (a datagram in, a timer, an application call) ends with
//! [`Driver::settle`], which wakes the blocked thread and waits (in real time, briefly) until
//! it has looked again: either it is still blocked, or it returned and read the clock. That
//! hand-off makes the time a blocking call returns at exact: the main thread does not move the
//! clock on before the woken call has taken its end time.
//!
//! The clock moves only forward and only here: [`Driver::gettimeofday`] advances it by one
//! microsecond per call (packetdrill spins on the clock for the last few microseconds before an
//! event), [`Driver::usleep`] by the time asked, and [`Driver::netdev_receive`] to the stack's
//! next timer until a datagram comes out. Each step runs the timers due on the way, in order,
//! and stops at a blocked call's timeout (poll, epoll_wait) so the call returns at its time.
//!
//! A call that would block on the main thread (no `...` in the script, blocking socket) cannot
//! wait for the script's next packet; it advances the clock through the stack's timers and its
//! own timeout like a sleeping kernel call would, and fails with EAGAIN and a message if nothing
//! could ever wake it.

use std::net::SocketAddrV4;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

use xdp_tcp::time::{Duration, Instant};

use crate::adapter::{Adapter, Attempt, Errno, EPOCH};
use crate::profile::Profile;
use crate::readiness::{EpollEvent, PollFd};
use crate::sockets::{MsgFlags, SockAddr};

/// How far gettimeofday moves the clock on each call.
const TICK: Duration = Duration::from_micros(1);
/// How far netdev_receive (or a blocking call on the main thread) runs the clock ahead looking
/// for something to happen before giving up: longer than any timer a script waits for
/// (the keep-alive idle time is 2 hours).
const SEARCH_LIMIT: Duration = Duration::from_secs(4 * 3600);
/// Real time a woken blocking call has to answer before the main thread goes on without it.
const ANSWER_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Timer steps in a row at one instant after which the stack is deemed to spin (a timer re-armed
/// for the instant it fired at): the clock stops running it and says so instead of hanging.
const STALL_LIMIT: u32 = 100_000;

/// Counts timer steps in a row at the same instant.
#[derive(Default)]
struct Stall {
    at: Option<Instant>,
    steps: u32,
}

impl Stall {
    /// Records a step at `t`; true once the steps at one instant exceed [`STALL_LIMIT`].
    fn step(&mut self, t: Instant) -> bool {
        if self.at == Some(t) {
            self.steps += 1;
        } else {
            self.at = Some(t);
            self.steps = 0;
        }
        self.steps > STALL_LIMIT
    }
}

const STALLED: &str = "the stack's timers fire again and again at one instant";

/// A call asleep on another thread.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    thread: ThreadId,
    /// The generation it last looked at.
    seen: u64,
    deadline: Option<Instant>,
}

struct Inner {
    adapter: Adapter,
    /// Bumped whenever something a blocked call waits for may have changed.
    generation: u64,
    waiter: Option<Waiter>,
    /// A blocked call returned on this thread and has not read the clock yet.
    handoff: Option<ThreadId>,
}

/// The adapter as packetdrill calls it, from its two threads. Every method is safe; the C
/// interface in `ffi` only converts pointers into these calls.
pub struct Driver {
    inner: Mutex<Inner>,
    cond: Condvar,
    /// packetdrill's main thread: the one that created the driver.
    main: ThreadId,
}

type Guard<'a> = MutexGuard<'a, Inner>;

impl Driver {
    /// A driver for `--so_flags` `flags` (see [`Profile::parse`]); the calling thread is the
    /// main thread.
    pub fn new(flags: &str) -> Result<Driver, String> {
        let profile = Profile::parse(flags)?;
        Ok(Driver {
            inner: Mutex::new(Inner {
                adapter: Adapter::new(profile),
                generation: 0,
                waiter: None,
                handoff: None,
            }),
            cond: Condvar::new(),
            main: thread::current().id(),
        })
    }

    fn lock(&self) -> Guard<'_> {
        // a panic elsewhere poisons the lock; the state is still the best there is
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call is asleep on another thread, waiting for the network or the clock.
    pub fn has_blocked_call(&self) -> bool {
        self.lock().waiter.is_some()
    }

    /// Runs `f` on the state (for tests and read-only questions).
    pub fn with<R>(&self, f: impl FnOnce(&mut Adapter) -> R) -> R {
        f(&mut self.lock().adapter)
    }

    /// After something changed: lets a call blocked on another thread look again, and waits
    /// until it has (still blocked), or has returned and read the clock.
    fn settle<'a>(&self, mut g: Guard<'a>) -> Guard<'a> {
        g.generation += 1;
        self.cond.notify_all();
        let me = thread::current().id();
        let until = std::time::Instant::now() + ANSWER_LIMIT;
        loop {
            let waiting = g
                .waiter
                .is_some_and(|w| w.thread != me && w.seen != g.generation)
                || g.handoff.is_some_and(|t| t != me);
            if !waiting {
                return g;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                eprintln!("xdp-tcp adapter: a blocked call did not answer within {ANSWER_LIMIT:?}; going on");
                g.handoff = None;
                g.waiter = None;
                return g;
            }
            g = self
                .cond
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The next moment something is due: a stack timer, or the timeout of a call blocked on
    /// another thread.
    fn next_event(g: &mut Guard<'_>, me: ThreadId) -> Option<Instant> {
        let now = g.adapter.now();
        let timer = g.adapter.next_deadline();
        let wake = g
            .waiter
            .filter(|w| w.thread != me)
            .and_then(|w| w.deadline)
            .filter(|&d| d > now);
        match (timer, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the clock to `target`, stopping at every timer and blocked call's timeout on the
    /// way.
    fn advance_to<'a>(&self, mut g: Guard<'a>, target: Instant) -> Guard<'a> {
        let me = thread::current().id();
        let mut stall = Stall::default();
        while let Some(t) = Self::next_event(&mut g, me).filter(|&t| t <= target) {
            let t = t.max(g.adapter.now());
            if stall.step(t) {
                eprintln!("xdp-tcp adapter: {STALLED}; moving the clock on without them");
                break;
            }
            g.adapter.run_timers(t);
            g = self.settle(g);
        }
        g.adapter.set_now(target);
        g
    }

    /// gettimeofday: the virtual time, one tick later than the last call saw.
    pub fn gettimeofday(&self) -> Duration {
        let me = thread::current().id();
        let mut g = self.lock();
        if g.handoff == Some(me) {
            // the woken call took its end time: the main thread may move on
            g.handoff = None;
            self.cond.notify_all();
        }
        let t = g.adapter.now() + TICK;
        let g = self.advance_to(g, t);
        EPOCH + (g.adapter.now() - Instant::ZERO)
    }

    /// usleep: the virtual clock moves on by `usec`, running what falls due.
    pub fn usleep(&self, usec: u64) {
        let g = self.lock();
        let t = g.adapter.now() + Duration::from_micros(usec);
        drop(self.advance_to(g, t));
    }

    /// netdev_send: one inbound IPv4 datagram.
    pub fn netdev_send(&self, datagram: &[u8]) -> Result<(), String> {
        let mut g = self.lock();
        g.adapter.receive_datagram(datagram)?;
        drop(self.settle(g));
        Ok(())
    }

    /// netdev_receive: the next datagram the stack sends, into `buf`, and the virtual time it
    /// was sent (microseconds since the epoch). Runs the clock to the stack's next timer until
    /// one comes out; an error if none could within four hours of virtual time.
    pub fn netdev_receive(&self, buf: &mut [u8]) -> Result<(usize, u64), String> {
        let me = thread::current().id();
        let mut g = self.lock();
        let start = g.adapter.now();
        let mut stall = Stall::default();
        loop {
            if let Some((t, pkt)) = g.adapter.take_datagram() {
                let n = pkt.len().min(buf.len());
                buf[..n].copy_from_slice(&pkt[..n]);
                return Ok((n, (EPOCH + (t - Instant::ZERO)).as_micros()));
            }
            let now = g.adapter.now();
            match Self::next_event(&mut g, me) {
                Some(t) if t.saturating_since(start) <= SEARCH_LIMIT => {
                    if stall.step(t.max(now)) {
                        return Err(STALLED.into());
                    }
                    g.adapter.run_timers(t.max(now));
                    g = self.settle(g);
                }
                next => {
                    return Err(format!(
                        "the script expects a packet, but the stack sends none{}",
                        match next {
                            None => " and has no timer armed".to_string(),
                            Some(_) => format!(" within {SEARCH_LIMIT:?}"),
                        }
                    ))
                }
            }
        }
    }

    /// A call that does not block.
    fn call<T>(&self, f: impl FnOnce(&mut Adapter) -> Result<T, Errno>) -> Result<T, Errno> {
        let mut g = self.lock();
        let r = f(&mut g.adapter);
        drop(self.settle(g));
        r
    }

    /// A call that may block: `attempt` runs until it is done. `attempt` gets whether the
    /// call's `timeout` has passed. On another thread than the main one the call sleeps until
    /// the main thread changes something; on the main thread it runs the clock itself.
    fn run<T>(
        &self,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut Adapter, bool) -> Attempt<T>,
    ) -> Result<T, Errno> {
        let me = thread::current().id();
        let mut g = self.lock();
        let start = g.adapter.now();
        let deadline = timeout.map(|t| start + t);
        let mut waited = false;
        loop {
            let expired = deadline.is_some_and(|d| g.adapter.now() >= d);
            if let Attempt::Done(r) = attempt(&mut g.adapter, expired) {
                g.waiter = None;
                if waited {
                    g.handoff = Some(me);
                }
                drop(self.settle(g));
                return r;
            }
            if me == self.main {
                let next = Self::next_event(&mut g, me);
                let next = match (next, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match next.filter(|t| t.saturating_since(start) <= SEARCH_LIMIT) {
                    Some(t) => {
                        let t = t.max(g.adapter.now());
                        g = self.advance_to(g, t);
                        continue;
                    }
                    None => {
                        eprintln!(
                            "xdp-tcp adapter: a call on a blocking socket would block for ever on \
                             packetdrill's main thread: mark it blocking in the script \
                             (`0.1...0.2 call(...)`) or set O_NONBLOCK"
                        );
                        drop(self.settle(g));
                        return Err(libc::EAGAIN);
                    }
                }
            }
            g.waiter = Some(Waiter {
                thread: me,
                seen: g.generation,
                deadline,
            });
            self.cond.notify_all();
            waited = true;
            g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<i32, Errno> {
        self.call(|a| a.socket(domain, ty, protocol))
    }

    pub fn bind(&self, fd: i32, addr: SockAddr) -> Result<(), Errno> {
        self.call(|a| a.bind(fd, addr))
    }

    pub fn listen(&self, fd: i32, backlog: i32) -> Result<(), Errno> {
        self.call(|a| a.listen(fd, backlog))
    }

    pub fn accept(&self, fd: i32) -> Result<(i32, SocketAddrV4), Errno> {
        self.run(None, |a, _| a.accept(fd))
    }

    pub fn connect(&self, fd: i32, addr: SockAddr) -> Result<(), Errno> {
        let mut started = false;
        self.run(None, |a, _| {
            if std::mem::replace(&mut started, true) {
                a.connect_wait(fd)
            } else {
                a.connect(fd, addr)
            }
        })
    }

    pub fn recv(&self, fd: i32, buf: &mut [u8], flags: MsgFlags) -> Result<usize, Errno> {
        self.run(None, |a, _| a.recv(fd, buf, flags))
    }

    /// send(2): a blocking socket takes all of `data` before returning, as Linux's does.
    pub fn send(&self, fd: i32, data: &[u8], flags: MsgFlags) -> Result<usize, Errno> {
        let mut done = 0;
        self.run(None, |a, _| {
            let nonblocking = flags.dontwait || a.sock(fd).is_ok_and(|s| s.nonblocking);
            match a.send(fd, &data[done..], flags) {
                Attempt::Done(Ok(n)) => {
                    done += n;
                    if done == data.len() || nonblocking {
                        Attempt::Done(Ok(done))
                    } else {
                        Attempt::Block
                    }
                }
                // bytes already taken are reported; the error comes with the next call
                Attempt::Done(Err(_)) if done > 0 => Attempt::Done(Ok(done)),
                other => other,
            }
        })
    }

    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        self.call(|a| a.close(fd))
    }

    pub fn shutdown(&self, fd: i32, how: i32) -> Result<(), Errno> {
        self.call(|a| a.shutdown(fd, how))
    }

    pub fn fcntl(&self, fd: i32, cmd: i32, arg: i64) -> Result<i32, Errno> {
        self.call(|a| a.fcntl(fd, cmd, arg))
    }

    pub fn ioctl(&self, fd: i32, request: u64, arg: i32) -> Result<i32, Errno> {
        self.call(|a| a.ioctl(fd, request, arg))
    }

    pub fn getsockopt(
        &self,
        fd: i32,
        level: i32,
        name: i32,
        out: &mut [u8],
    ) -> Result<usize, Errno> {
        self.call(|a| a.getsockopt(fd, level, name, out))
    }

    pub fn setsockopt(&self, fd: i32, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        self.call(|a| a.setsockopt(fd, level, name, val))
    }

    /// poll(2): `timeout_ms` below zero waits for ever.
    pub fn poll(&self, fds: &mut [PollFd], timeout_ms: i32) -> Result<usize, Errno> {
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        self.run(timeout, |a, expired| {
            let n = a.poll_once(fds);
            if n > 0 || expired {
                Attempt::Done(Ok(n))
            } else {
                Attempt::Block
            }
        })
    }

    pub fn epoll_create(&self, size: i32) -> Result<i32, Errno> {
        self.call(|a| a.epoll_create(size))
    }

    pub fn epoll_ctl(
        &self,
        epfd: i32,
        op: i32,
        fd: i32,
        ev: Option<EpollEvent>,
    ) -> Result<(), Errno> {
        self.call(|a| a.epoll_ctl(epfd, op, fd, ev))
    }

    pub fn epoll_wait(
        &self,
        epfd: i32,
        max: i32,
        timeout_ms: i32,
    ) -> Result<Vec<EpollEvent>, Errno> {
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        self.run(timeout, |a, expired| a.epoll_wait(epfd, max, expired))
    }

    /// The end of a run: every socket given up.
    pub fn teardown(&self) {
        self.lock().adapter.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_steps_in_a_row_at_one_instant() {
        let mut s = Stall::default();
        let t = Instant::from_millis(5);
        for _ in 0..=STALL_LIMIT {
            assert!(!s.step(t));
        }
        assert!(s.step(t), "one more at the same instant");
        assert!(!s.step(t + TICK), "time moved: counting starts again");
    }
}
