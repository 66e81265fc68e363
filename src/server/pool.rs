//! The threads scans and learns run on: one per core, never the reactor.
//!
//! Why not rayon's pool (as `chaff learn` and `rescore` use): a rayon worker
//! that runs out of work spins, yielding the CPU in a loop, before it
//! sleeps. Under a daemon's load — one message at a time with gaps between
//! them — every request paid that spin on every idle worker: at one client
//! the daemon's CPU per message was 2.6 times `chaff rescore`'s for the same
//! scans. These threads block on a channel and cost nothing while idle.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct CpuPool {
    /// `None` when no thread could be started: work then runs inline.
    sender: Option<Mutex<Sender<Job>>>,
}

impl CpuPool {
    /// Starts `threads` workers named `chaff-scan-N`.
    pub fn new(threads: usize) -> CpuPool {
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let started = (0..threads.max(1))
            .filter(|i| {
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("chaff-scan-{i}"))
                    .spawn(move || work(&receiver))
                    .is_ok()
            })
            .count();
        CpuPool {
            sender: (started > 0).then(|| Mutex::new(sender)),
        }
    }

    /// Runs `job` on a worker (inline if the pool has none or has stopped).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let refused = match &self.sender {
            Some(sender) => match sender.lock() {
                Ok(sender) => sender.send(job).err().map(|e| e.0),
                Err(poisoned) => poisoned.into_inner().send(job).err().map(|e| e.0),
            },
            None => Some(job),
        };
        if let Some(job) = refused {
            job();
        }
    }
}

/// A worker: takes jobs until the pool is dropped.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_named_workers_and_all_of_them_run() {
        let pool = CpuPool::new(2);
        let (done, results) = channel();
        for i in 0..100 {
            let done = done.clone();
            pool.spawn(move || {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                let _ = done.send((i, name));
            });
        }
        drop(done);
        let mut seen: Vec<(i32, String)> = results.iter().collect();
        seen.sort();
        assert_eq!(seen.len(), 100);
        assert!(seen.iter().all(|(_, name)| name.starts_with("chaff-scan-")));
    }
}
