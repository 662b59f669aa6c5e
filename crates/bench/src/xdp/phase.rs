//! The server's measurement phases: what it records when the load generator moves to the next.

use super::ServerApp;
use crate::alloc::thread_live_bytes;
use crate::sys::CpuMark;
use crate::Phase;

impl ServerApp {
    /// The phase moved to `p` ([`ServerApp::sample`] saw it change).
    #[cold]
    #[inline(never)]
    pub(super) fn phase_changed(&mut self, p: Phase) {
        if p >= Phase::IdleReady && self.phase < Phase::IdleReady && !self.conns.is_empty() {
            let delta = thread_live_bytes() - self.mem_base.unwrap_or(0);
            self.report.idle_conns = Some(self.conns.len() as u64);
            self.report.bytes_per_idle_conn = Some(delta as f64 / self.conns.len() as f64);
        }
        if p == Phase::Measure {
            self.cpu = Some(CpuMark::take(self.core));
        }
        if p == Phase::Done {
            if let Some(c) = self.cpu.take() {
                let (busy, thread) = c.since(self.core);
                self.report.core_busy = busy;
                self.report.thread_cpu = Some(thread);
            }
        }
        self.phase = p;
    }
}
