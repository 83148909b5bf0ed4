//! The embedded database's worker threads, named and niced like the background lane.
//!
//! sqlx runs each SQLite connection on a thread of its own. With the embedded default those
//! threads do the history writer's work once a minute (~100k score rows at 100k clients: a
//! quarter of a second of CPU in one burst) and would compete with the decision workers at
//! their priority. They are named `sluice-sqlite-N`, and every time the pool opens a connection
//! the threads so named are set `nice` steps below the caller's priority (Linux; elsewhere
//! nothing). Not a scheduler: a best-effort hint, like `service::background`'s for its lane.
//! PostgreSQL's work runs in its own server, so this only concerns SQLite.

/// Prefix of the worker threads' names (a Linux thread name keeps 15 bytes: enough for it).
pub const THREAD_PREFIX: &str = "sluice-sqlite-";

/// The name sqlx gives worker thread `id`.
pub fn thread_name(id: u64) -> String {
    format!("{THREAD_PREFIX}{id}")
}

/// Sets every thread of this process named `sluice-sqlite-…` `nice` steps below the calling
/// thread's priority (capped at 19); 0 leaves them be. Returns how many threads it set.
pub fn lower_priority(nice: i32) -> usize {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let mut set = 0;
        for tid in named_threads() {
            match crate::adapters::thread_priority::lower_below_caller(tid, nice) {
                Ok(()) => set += 1,
                Err(error) => {
                    tracing::warn!(%error, tid, "could not lower the database thread's priority")
                }
            }
        }
        return set;
    }
    let _ = nice;
    0
}

/// Ids of this process's threads named `sluice-sqlite-…`.
#[cfg(target_os = "linux")]
pub fn named_threads() -> Vec<libc::id_t> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(THREAD_PREFIX))
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    /// The niceness of thread `tid` of this process (`/proc`, field 19 of `stat`).
    fn niceness(tid: libc::id_t) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        // Fields from the state (3rd) on; niceness is the 19th.
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn the_embedded_databases_threads_run_below_the_callers_priority() {
        assert_eq!(lower_priority(0), 0, "0 leaves every thread be");
        // SAFETY: reads the calling thread's niceness.
        let base = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("s.db").display());
        let store = Store::connect(&StoreOptions {
            worker_nice: 5,
            ..StoreOptions::new(&url)
        })
        .await
        .unwrap();
        // Other tests' stores (at 0) may have threads too: this pool's are among those set.
        let set: Vec<i32> = named_threads().into_iter().map(niceness).collect();
        assert!(
            set.contains(&(base + 5).min(19)),
            "a connection's thread at niceness {} (found {set:?})",
            base + 5
        );
        assert!(set.iter().all(|&n| n >= base), "{set:?}");
        store.close().await;
    }
}
