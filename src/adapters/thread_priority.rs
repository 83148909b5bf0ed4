//! Lowering one thread's scheduling priority: Linux keeps a niceness per thread, so one thread
//! of the process can yield to the others. Used for the background lane (`service::background`)
//! and the embedded database's threads (`store::sqlite_threads`). Elsewhere it does nothing.

/// Sets thread `tid` (0: the calling thread) `nice` steps below the calling thread's priority,
/// capped at 19; `nice` ≤ 0 changes nothing. Only ever lowers: raising needs privileges.
pub fn lower_below_caller(tid: u32, nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: getpriority(PRIO_PROCESS, 0) reads the calling thread's niceness (it may
        // return -1 legitimately; then the target is only less nice). setpriority with
        // PRIO_PROCESS and a thread id (0: the caller) changes that one thread on Linux.
        let target = (unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } + nice).min(19);
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (tid, nice);
    Ok(())
}
