//! The lane for the service's own batch work — the minute's scoring, training and forecasting,
//! its early looks, list installs, model-file reloads and the bucket sweep: one thread at a
//! lower scheduling priority (nice [`NICE`] on Linux), so that on a saturated machine the
//! decisions are served first and the batch work takes the time they leave. Before it, that
//! work ran on tokio's blocking pool at the workers' priority, competing with decisions for as
//! long as it ran (about a second of CPU a minute at 100,000 clients); docs/performance.md has the A/B.
//!
//! Not for work a caller is waiting on (an admin RPC's training or reload): that stays on
//! `spawn_blocking`, at full priority. Jobs run one at a time, in the order sent; each producer
//! awaits its own, so at most a handful are queued (the channel is bounded all the same).

use tokio::sync::{mpsc, oneshot};

/// The lane's default niceness (`--background-nice`): CFS gives a nice-10 thread about a tenth
/// of a core that nice-0 threads also want (weights 110 vs 1024), and all of an idle one. Not
/// 19: under sustained saturation a minute's close must still finish within the minute.
pub const NICE: i32 = 10;

/// Jobs waiting for the lane, at most (each producer has at most one in flight).
const QUEUE: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the lane; clones share the one thread, which ends when every handle is dropped.
#[derive(Clone)]
pub struct Background {
    jobs: mpsc::Sender<Job>,
}

impl Background {
    /// Starts the lane's thread at the default niceness.
    pub fn start() -> Background {
        Background::start_with(NICE)
    }

    /// Starts the lane's thread, `nice` steps below the caller's priority (0: the same).
    pub fn start_with(nice: i32) -> Background {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("sluice-background".into())
            .spawn(move || {
                lower_priority(nice);
                while let Some(job) = queue.blocking_recv() {
                    job();
                }
            })
            .expect("the background thread starts");
        Background { jobs }
    }

    /// Runs `f` on the lane and waits for its result: `None` if it panicked (the panic is
    /// logged and the lane goes on) or the lane is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, result) = oneshot::channel();
        let job: Job =
            Box::new(
                move || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                    Ok(value) => {
                        let _ = done.send(value);
                    }
                    Err(_) => tracing::error!("a background job panicked"),
                },
            );
        self.jobs.send(job).await.ok()?;
        result.await.ok()
    }
}

/// Lowers the calling thread's priority. Best effort: where it cannot, the lane runs at normal
/// priority.
fn lower_priority(nice: i32) {
    if let Err(error) = crate::adapters::thread_priority::lower_below_caller(0, nice) {
        tracing::warn!(%error, "could not lower the background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_and_a_panic_spares_the_lane() {
        let lane = Background::start();
        assert_eq!(lane.run(|| 1 + 1).await, Some(2));
        assert_eq!(lane.run(|| -> u8 { panic!("boom") }).await, None);
        assert_eq!(lane.run(|| "still here").await, Some("still here"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_lane_runs_at_a_lower_priority() {
        let lane = Background::start();
        // SAFETY: getpriority on the calling thread; errno is cleared first as it may be -1.
        let nice = lane
            .run(|| unsafe {
                *libc::__errno_location() = 0;
                libc::getpriority(libc::PRIO_PROCESS, 0)
            })
            .await
            .unwrap();
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(nice, (ours + NICE).min(19));
        let same = Background::start_with(0);
        let unchanged = same
            .run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
            .await;
        assert_eq!(unchanged, Some(ours));
    }
}
