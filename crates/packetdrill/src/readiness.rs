//! Readiness: poll(2) and epoll, with the event masks Linux's `tcp_poll` computes.
//!
//! A socket's mask: a listener is readable while a connection waits to be accepted; a fresh or
//! closed socket reports HUP (and is writable, as Linux's is); a connection reports IN when data
//! waits or the peer's FIN has arrived (then also RDHUP), OUT while the send buffer has at least
//! a third of its room free (Linux's `sk_stream_is_writeable`: free space at least half of what
//! is queued) or writing is shut down, ERR while an error waits to be reported, and HUP once
//! both directions are shut (after the connection ended, or the application shut both). A
//! connection still opening reports nothing but ERR and HUP.
//!
//! epoll is level-triggered by default; `EPOLLET` reports a socket again only after a new event
//! on its connection (new data, buffer space, a state change), and `EPOLLONESHOT` disables an
//! entry once reported until `EPOLL_CTL_MOD`.

use std::collections::BTreeMap;

use xdp_tcp::tcp::State;

use crate::adapter::{Adapter, Attempt, Errno};
use crate::sockets::Role;

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const ERR: u32 = libc::EPOLLERR as u32;
const HUP: u32 = libc::EPOLLHUP as u32;
const RDNORM: u32 = libc::EPOLLRDNORM as u32;
const WRNORM: u32 = libc::EPOLLWRNORM as u32;
const RDHUP: u32 = libc::EPOLLRDHUP as u32;
const ET: u32 = libc::EPOLLET as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;
/// Bits of an interest that are flags, not events.
const FLAGS: u32 = ET | ONESHOT | libc::EPOLLEXCLUSIVE as u32 | libc::EPOLLWAKEUP as u32;

/// One pollfd of a poll(2) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// One event epoll_wait(2) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollEvent {
    pub events: u32,
    pub data: u64,
}

#[derive(Debug, Clone, Copy)]
struct Interest {
    events: u32,
    data: u64,
    /// The socket's generation when this entry last reported it (edge-triggered).
    reported: Option<u64>,
    /// A one-shot entry that reported and waits for EPOLL_CTL_MOD.
    disabled: bool,
}

/// An epoll instance: the sockets it watches, by descriptor.
#[derive(Debug, Default)]
pub struct Epoll {
    interest: BTreeMap<i32, Interest>,
}

impl Epoll {
    /// A watched socket was closed: Linux drops it from every epoll set.
    pub fn forget(&mut self, fd: i32) {
        self.interest.remove(&fd);
    }
}

impl Adapter {
    /// The socket's readiness, as Linux's `tcp_poll` computes it.
    pub fn poll_mask(&mut self, fd: i32) -> Option<u32> {
        self.sync_error(fd);
        let s = self.sockets.get(&fd)?;
        let err = if s.err.is_some() { ERR } else { 0 };
        let (shut_rd, shut_wr) = (s.shut_rd, s.shut_wr);
        let mask = match s.role {
            Role::Listening { port } => {
                let waiting = self.host_ref().map_or(0, |h| h.accept_queue_len(port));
                if waiting > 0 {
                    IN | RDNORM
                } else {
                    0
                }
            }
            Role::Fresh => {
                let mut m = HUP;
                if shut_rd {
                    m |= IN | RDNORM | RDHUP;
                }
                m | OUT | WRNORM
            }
            Role::Conn { id } => {
                let c = self.host_ref().and_then(|h| h.conn(id))?;
                let state = c.state();
                let ended = matches!(state, State::Closed | State::TimeWait);
                let fin_in =
                    ended || matches!(state, State::CloseWait | State::LastAck | State::Closing);
                let rcv_shut = shut_rd || fin_in;
                let snd_shut = shut_wr || ended || c.is_write_shut();
                let mut m = 0;
                if ended || (rcv_shut && snd_shut) {
                    m |= HUP;
                }
                if rcv_shut {
                    m |= IN | RDNORM | RDHUP;
                }
                if !matches!(state, State::SynSent | State::SynReceived) {
                    if c.recv_queue() > 0 {
                        m |= IN | RDNORM;
                    }
                    let space = c.send_space();
                    if snd_shut || (space > 0 && space >= c.send_queue() / 2) {
                        m |= OUT | WRNORM;
                    }
                }
                m
            }
        };
        Some(mask | err)
    }

    /// One pass of poll(2): fills `revents`, returns how many are non-zero.
    pub fn poll_once(&mut self, fds: &mut [PollFd]) -> usize {
        let mut n = 0;
        for p in fds.iter_mut() {
            p.revents = if p.fd < 0 {
                0
            } else {
                match self.poll_mask(p.fd) {
                    Some(m) => (m & (p.events as u16 as u32 | ERR | HUP)) as i16,
                    None => libc::POLLNVAL,
                }
            };
            n += usize::from(p.revents != 0);
        }
        n
    }

    pub fn epoll_create(&mut self, size: i32) -> Result<i32, Errno> {
        if size <= 0 {
            return Err(libc::EINVAL);
        }
        let fd = self.new_fd()?;
        self.epolls.insert(fd, Epoll::default());
        Ok(fd)
    }

    /// epoll_ctl(2); `event` is `None` only for EPOLL_CTL_DEL.
    pub fn epoll_ctl(
        &mut self,
        epfd: i32,
        op: i32,
        fd: i32,
        event: Option<EpollEvent>,
    ) -> Result<(), Errno> {
        if !self.epolls.contains_key(&epfd) {
            return Err(if self.sockets.contains_key(&epfd) {
                libc::EINVAL
            } else {
                libc::EBADF
            });
        }
        if fd == epfd {
            return Err(libc::EINVAL);
        }
        if !self.sockets.contains_key(&fd) && !self.epolls.contains_key(&fd) {
            return Err(libc::EBADF);
        }
        if self.epolls.contains_key(&fd) {
            // nested epoll sets are beyond what scripts exercise here
            return Err(libc::EINVAL);
        }
        let ep = self.epolls.get_mut(&epfd).expect("checked");
        let present = ep.interest.contains_key(&fd);
        match op {
            libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD => {
                let ev = event.ok_or(libc::EFAULT)?;
                if op == libc::EPOLL_CTL_ADD && present {
                    return Err(libc::EEXIST);
                }
                if op == libc::EPOLL_CTL_MOD && !present {
                    return Err(libc::ENOENT);
                }
                ep.interest.insert(
                    fd,
                    Interest {
                        events: ev.events,
                        data: ev.data,
                        reported: None,
                        disabled: false,
                    },
                );
                Ok(())
            }
            libc::EPOLL_CTL_DEL => ep.interest.remove(&fd).map(|_| ()).ok_or(libc::ENOENT),
            _ => Err(libc::EINVAL),
        }
    }

    /// One pass of epoll_wait(2): up to `max` ready entries in descriptor order.
    pub fn epoll_once(&mut self, epfd: i32, max: usize) -> Result<Vec<EpollEvent>, Errno> {
        let entries: Vec<(i32, Interest)> = self
            .epolls
            .get(&epfd)
            .ok_or(if self.sockets.contains_key(&epfd) {
                libc::EINVAL
            } else {
                libc::EBADF
            })?
            .interest
            .iter()
            .map(|(&fd, &i)| (fd, i))
            .collect();
        let mut out = Vec::new();
        for (fd, it) in entries {
            if out.len() == max {
                break;
            }
            if it.disabled {
                continue;
            }
            let generation = self.sockets.get(&fd).map_or(0, |s| s.generation);
            let Some(mask) = self.poll_mask(fd) else {
                continue;
            };
            let ready = mask & ((it.events & !FLAGS) | ERR | HUP);
            if ready == 0 || (it.events & ET != 0 && it.reported == Some(generation)) {
                continue;
            }
            out.push(EpollEvent {
                events: ready,
                data: it.data,
            });
            let entry = self
                .epolls
                .get_mut(&epfd)
                .and_then(|e| e.interest.get_mut(&fd))
                .expect("listed above");
            entry.reported = Some(generation);
            entry.disabled = it.events & ONESHOT != 0;
        }
        Ok(out)
    }

    /// epoll_wait(2) as an attempt: ready entries, or `Block` while none is ready and the
    /// timeout has not passed (`expired`).
    pub fn epoll_wait(&mut self, epfd: i32, max: i32, expired: bool) -> Attempt<Vec<EpollEvent>> {
        if max <= 0 {
            return Attempt::err(libc::EINVAL);
        }
        match self.epoll_once(epfd, max as usize) {
            Ok(v) if v.is_empty() && !expired => Attempt::Block,
            r => Attempt::Done(r),
        }
    }
}
