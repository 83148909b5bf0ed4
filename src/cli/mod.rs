//! The `sluice` subcommands, one module each; `main.rs` only parses and dispatches. These are
//! clients of the rest of the crate: nothing outside `cli` imports from here.

pub mod call;
pub mod client_tls;
pub mod eval_detection;
pub mod eval_forecast;
pub mod export_features;
pub mod gen_trace;
pub mod health;
pub mod load;
pub mod noop_server;
pub mod progress;
pub mod replay;
pub mod rules;
pub mod runtime;
pub mod serve;
pub mod simulate;
pub mod suggest_limits;

/// An error and its causes on one line, each said once: a cause whose text the message above it
/// already contains (as `io::Error`s wrapped by `anyhow` and tonic often do) is left out.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_chain_says_each_cause_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let wrapped = anyhow::Error::new(io)
            .context("cannot open rules.yaml: No such file or directory (os error 2)");
        assert_eq!(
            super::error_chain(&wrapped),
            "cannot open rules.yaml: No such file or directory (os error 2)"
        );
        let layered = anyhow::anyhow!("tcp connect error").context("cannot connect to http://x:1");
        assert_eq!(
            super::error_chain(&layered),
            "cannot connect to http://x:1: tcp connect error"
        );
    }
}
