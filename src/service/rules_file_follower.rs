//! Follows the `--rules` file: the store supervisor polls it at each resync, and a changed file
//! is parsed and, when valid, applied like the start-up file. Polling the content (not the
//! modification time) also catches Kubernetes ConfigMap updates, which swap a symlink.
//!
//! A changed file that does not parse, or cannot be read, is reported once (naming the line)
//! and changes nothing: the rules in force stay until a valid version appears.
//!
//! Polling reads and parses the file: blocking work, which callers run off the async runtime.

use std::path::{Path, PathBuf};

use crate::adapters::rules_file::{self, RulesFile, RulesFileError};
use sluice_core::validate::InputLimits;

pub struct RulesFileWatch {
    path: PathBuf,
    /// Hash of the content last seen (valid or not), or of the read error.
    seen: Option<u64>,
    /// Domains of the last version applied: a domain dropped from the file loses its rules too.
    domains: Vec<String>,
}

/// What one poll saw: `None` (unchanged), a new version, or why the file is unusable.
pub type Polled = Option<Result<Change, RulesFileError>>;

/// A new version of the file, ready to apply.
pub struct Change {
    pub file: RulesFile,
    /// Every domain the file owns or owned: rules in them that the file does not list go.
    pub replace_domains: Vec<String>,
}

impl RulesFileWatch {
    pub fn new(path: &Path) -> RulesFileWatch {
        RulesFileWatch {
            path: path.to_path_buf(),
            seen: None,
            domains: Vec::new(),
        }
    }

    pub fn origin(&self) -> String {
        self.path.display().to_string()
    }

    /// `poll` on the blocking pool (reading and parsing a large file must not stall the async
    /// workers); the watch comes back with what it saw. `Err` only if the parse panicked.
    pub async fn poll_off_runtime(
        mut self,
        caps: InputLimits,
    ) -> Result<(RulesFileWatch, Polled), tokio::task::JoinError> {
        tokio::task::spawn_blocking(move || {
            let polled = self.poll(&caps);
            (self, polled)
        })
        .await
    }

    /// `None` while the file is as last seen; otherwise its new version or why it is unusable.
    pub fn poll(&mut self, caps: &InputLimits) -> Polled {
        // Bounded (`rules_file::MAX_FILE_BYTES`): a huge file is an error, not a long read.
        let read = rules_file::read(&self.path);
        let hash = match &read {
            Ok(text) => xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
            // An unreadable file is a state of its own, reported once.
            Err(e) => xxhash_rust::xxh3::xxh3_64_with_seed(e.to_string().as_bytes(), 1),
        };
        if self.seen == Some(hash) {
            return None;
        }
        self.seen = Some(hash);
        let text = match read {
            Ok(text) => text,
            Err(e) => return Some(Err(e)),
        };
        Some(rules_file::parse(&self.origin(), &text, caps).map(|file| {
            let mut replace_domains = std::mem::take(&mut self.domains);
            self.domains = file.domains.clone();
            for domain in &file.domains {
                if !replace_domains.contains(domain) {
                    replace_domains.push(domain.clone());
                }
            }
            Change {
                file,
                replace_domains,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: second, requests_per_unit: 5}\n";
    const API: &str = "domain: api\ndescriptors:\n  - key: user_id\n    rate_limit: {unit: minute, requests_per_unit: 60}\n";
    const BAD: &str = "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: fortnight, requests_per_unit: 5}\n";

    /// What one poll saw: unchanged, the domains to replace, or an error mentioning a text.
    #[derive(Debug, PartialEq)]
    enum Seen {
        Unchanged,
        Replace(Vec<&'static str>),
        Error(&'static str),
    }

    fn check(steps: &[(Option<&str>, Seen)]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.yaml");
        let mut watch = RulesFileWatch::new(&path);
        for (i, (content, expected)) in steps.iter().enumerate() {
            match content {
                Some(text) => std::fs::write(&path, text).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            let got = match watch.poll(&InputLimits::default()) {
                None => Seen::Unchanged,
                Some(Ok(change)) => Seen::Replace(
                    change
                        .replace_domains
                        .iter()
                        .map(|d| if d == "edge" { "edge" } else { "api" })
                        .collect(),
                ),
                Some(Err(e)) => {
                    let Seen::Error(needle) = expected else {
                        panic!("step {i}: unexpected error {e}");
                    };
                    assert!(e.to_string().contains(needle), "step {i}: {e}");
                    Seen::Error(needle)
                }
            };
            assert_eq!(&got, expected, "step {i}");
        }
    }

    #[test]
    fn a_changed_file_is_reported_once_and_a_dropped_domain_is_replaced() {
        use Seen::*;
        check(&[
            (Some(EDGE), Replace(vec!["edge"])),
            (Some(EDGE), Unchanged),
            (Some(BAD), Error("fortnight")),
            (Some(BAD), Unchanged),
            // Back to valid: the domains of the last version applied still count.
            (Some(API), Replace(vec!["edge", "api"])),
            (None, Error("rules.yaml")),
            (None, Unchanged),
            (Some(API), Replace(vec!["api"])),
        ]);
    }
}
