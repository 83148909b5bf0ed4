//! File descriptors, shared by both listeners and everything else the process opens: at start
//! the soft limit is raised to the hard one, and the listeners' connection caps lowered where
//! they would not fit beside a reserve for the database, Redis and files — the HTTP listener
//! to at most an eighth of the limit, the decision port the rest. A flood on either port then finds a closed backlog, never
//! an `EMFILE` that refuses the other port's clients too.
//!
//! Not here: admitting connections (`grpc::incoming`, `http::guard`).

/// Descriptors kept for everything but client connections: the database pool, Redis, the
/// rules file, logs, the listeners themselves.
pub const RESERVE: u64 = 128;

/// Raises the soft descriptor limit to the hard one and returns it (`None`: unknown).
pub fn raise_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed; no other memory.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// The caps (gRPC, HTTP) that fit `descriptors`: the reserve (a quarter of a small limit), the
/// HTTP listener at most an eighth, the gRPC listener the rest (each at least 1, never more
/// than wanted).
pub fn caps(grpc_wanted: usize, http_wanted: usize, descriptors: u64) -> (usize, usize) {
    let reserve = RESERVE.min(descriptors / 4);
    let http = (http_wanted as u64).min(descriptors / 8).max(1);
    let grpc = (grpc_wanted as u64)
        .min(descriptors.saturating_sub(reserve + http))
        .max(1);
    (grpc as usize, http as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_leave_a_reserve_and_the_decision_port_most() {
        // (gRPC wanted, HTTP wanted, descriptors, caps)
        for (grpc, http, descriptors, expected) in [
            (10_000, 256, 1_048_576, (10_000, 256)),
            (10_000, 256, 1_024, (768, 128)),
            (10_000, 256, 256, (160, 32)),
            (50, 256, 1_024, (50, 128)),
            (10_000, 256, 8, (5, 1)),
        ] {
            assert_eq!(
                caps(grpc, http, descriptors),
                expected,
                "{grpc} {http} {descriptors}"
            );
        }
    }
}
