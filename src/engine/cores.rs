//! One engine per core: each on its own thread pinned with `core_affinity`, with its own queue,
//! socket, host, neighbour cache and timers, so nothing on the data path is shared or locked.
//! The only shared value is the stop flag, read with a relaxed load once per iteration.
//!
//! [`EngineThreads::spawn`] runs, on each new thread: pin to the core, enter the network
//! namespace if one is given (AF_XDP binds, XDP attaches and netlink sockets resolve interfaces
//! in the calling thread's namespace), build the engine with the caller's `make` (which opens the
//! socket there), report ready, then poll until stopped. It returns once every engine is up, or
//! with the first error after stopping the others. [`EngineThreads::stop`] hands the engines
//! back for inspection (frame accounting, counters).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

pub use core_affinity::CoreId;

use super::{App, Engine};
use crate::io::PacketIo;

/// Moves the calling thread into the network namespace at `path` (e.g. `/run/netns/NAME`).
pub fn enter_netns(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    // SAFETY: setns with a valid namespace fd and CLONE_NEWNET changes only this thread's
    // network namespace; the fd stays open for the call.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if ret != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setns {}: {e}", path.display()),
        ));
    }
    Ok(())
}

/// Where one engine runs.
#[derive(Debug, Clone)]
pub struct CoreSpec {
    /// The NIC queue its socket binds to.
    pub queue_id: u32,
    /// The core it is pinned to; `None` leaves it unpinned.
    pub core: Option<CoreId>,
    /// Network namespace to enter first (`/run/netns/NAME`).
    pub netns: Option<PathBuf>,
}

impl CoreSpec {
    /// Queue `i` pinned to the `i`-th core the process may run on (wrapping around).
    pub fn for_queue(i: u32) -> io::Result<CoreSpec> {
        let cores = core_affinity::get_core_ids()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| io::Error::other("core_affinity found no usable core"))?;
        Ok(CoreSpec {
            queue_id: i,
            core: Some(cores[i as usize % cores.len()]),
            netns: None,
        })
    }
}

/// Engines running on their threads.
pub struct EngineThreads<E> {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<io::Result<E>>>,
}

impl<P, A> EngineThreads<Engine<P, A>>
where
    P: PacketIo + Send + 'static,
    A: App + Send + 'static,
{
    pub fn spawn<F>(specs: Vec<CoreSpec>, make: F) -> io::Result<Self>
    where
        F: Fn(&CoreSpec) -> io::Result<Engine<P, A>> + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let make = Arc::new(make);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let mut handles = Vec::with_capacity(specs.len());
        for spec in specs {
            let stop = Arc::clone(&stop);
            let make = Arc::clone(&make);
            let ready = ready_tx.clone();
            let name = format!("xdp-engine-q{}", spec.queue_id);
            let handle = std::thread::Builder::new().name(name).spawn(move || {
                let built = (|| {
                    if let Some(core) = spec.core {
                        if !core_affinity::set_for_current(core) {
                            return Err(io::Error::other(format!(
                                "could not pin queue {} to core {}",
                                spec.queue_id, core.id
                            )));
                        }
                    }
                    if let Some(ns) = &spec.netns {
                        enter_netns(ns)?;
                    }
                    make(&spec)
                })();
                let mut engine = match built {
                    Ok(e) => {
                        let _ = ready.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                drop(ready);
                engine.run(&stop);
                Ok(engine)
            })?;
            handles.push(handle);
        }
        drop(ready_tx);
        let threads = EngineThreads { stop, handles };
        for _ in 0..threads.handles.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    threads.stop();
                    return Err(e);
                }
                Err(_) => {
                    threads.stop();
                    return Err(io::Error::other("an engine thread died while starting"));
                }
            }
        }
        Ok(threads)
    }
}

impl<E> EngineThreads<E> {
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The flag the engines poll; setting it stops them.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Stops every engine and returns each, or why it failed (a panic becomes an error).
    pub fn stop(self) -> Vec<io::Result<E>> {
        self.stop_waking(|| {})
    }

    /// As [`EngineThreads::stop`], calling `wake` every millisecond until every engine thread
    /// has ended: an engine asleep in its device's wait reads the stop flag only when it wakes.
    pub fn stop_waking(self, wake: impl Fn()) -> Vec<io::Result<E>> {
        self.stop.store(true, Ordering::Relaxed);
        while !self.handles.iter().all(|h| h.is_finished()) {
            wake();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(io::Error::other(format!("engine thread panicked: {msg}")))
                })
            })
            .collect()
    }
}
