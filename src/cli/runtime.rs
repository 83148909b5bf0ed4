//! The tokio runtime a command runs on, chosen before anything else starts: tokio's
//! current-thread scheduler when the command may use one CPU, its multi-thread scheduler with
//! one worker per CPU otherwise. It knows nothing of what runs on it.
//!
//! Why two: on one CPU the multi-thread scheduler runs a single worker whose LIFO slot runs a
//! woken task next, so a finished gRPC handler's connection task writes each response on its
//! own (a `writev` per response). The current-thread scheduler's queue is FIFO: every ready
//! handler finishes first and the connection writes many responses at a time, which costs the
//! kernel far less CPU per decision. docs/performance.md has the measurements and the command
//! behind them. Limitador serves its RLS from a current-thread runtime too (actix's).
//!
//! With more workers, the gRPC connections are not served here by default but by one thread
//! per worker, each its own current-thread runtime (`grpc::transport_threads`, `--grpc-threads`):
//! the same batched writes on every core. This runtime runs everything else.
//!
//! "One CPU" is `std::thread::available_parallelism`: the affinity mask (`taskset`, a cpuset)
//! and a cgroup's CPU quota (a Kubernetes limit of one CPU or less) both count.

use std::num::NonZeroUsize;

use tokio::runtime::{Builder, Runtime};

/// The worker threads to run: `requested`, or one per CPU this process may use.
pub fn workers(requested: Option<NonZeroUsize>) -> NonZeroUsize {
    requested
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN)
}

/// A runtime with `workers` worker threads: the current-thread scheduler on the calling thread
/// for one, the multi-thread scheduler for more.
pub fn build(workers: NonZeroUsize) -> std::io::Result<Runtime> {
    if workers.get() == 1 {
        Builder::new_current_thread().enable_all().build()
    } else {
        Builder::new_multi_thread()
            .worker_threads(workers.get())
            .enable_all()
            .build()
    }
}

/// How the current runtime schedules, for the startup log: `("current-thread", 1)` or
/// `("multi-thread", workers)`.
pub fn describe() -> (&'static str, usize) {
    let handle = tokio::runtime::Handle::current();
    let workers = handle.metrics().num_workers();
    match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => ("current-thread", workers),
        _ => ("multi-thread", workers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_runs_the_current_thread_scheduler_and_more_the_multi_thread_one() {
        for (asked, flavor, count) in [(1, "current-thread", 1), (2, "multi-thread", 2)] {
            let runtime = build(NonZeroUsize::new(asked).unwrap()).unwrap();
            assert_eq!(runtime.block_on(async { describe() }), (flavor, count));
        }
    }

    #[test]
    fn a_request_wins_over_the_cpu_count() {
        let three = NonZeroUsize::new(3).unwrap();
        assert_eq!(workers(Some(three)), three);
        assert_eq!(workers(None), std::thread::available_parallelism().unwrap());
    }
}
