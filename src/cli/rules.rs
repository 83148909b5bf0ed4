//! `sluice rules check` and `sluice rules apply`: validate a rules file (envoyproxy/ratelimit
//! YAML and Sluice's extensions) and print what it defines, or apply it to a running server.

use std::path::PathBuf;

use anyhow::Context;

use sluice_core::limit::LimitSpec;
use sluice_core::validate::InputLimits;

use super::client_tls::ClientTlsArgs;
use crate::adapters::rules_file;
use crate::grpc::convert::rule_to_proto;
use crate::proto::sluice::v1 as pb;

#[derive(Clone, Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file and print what it defines; changes nothing.
    Check { file: PathBuf },
    /// Apply a rules file to a running server: its domains' rules become exactly the file's.
    Apply {
        file: PathBuf,
        #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:50051")]
        server: String,
        /// Admin token; defaults to SLUICE_ADMIN_TOKEN, then the server's generated token file.
        #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(
            long,
            env = "SLUICE_ADMIN_TOKEN_FILE",
            default_value = "sluice-admin.token"
        )]
        token_file: PathBuf,
        /// Fail unless the server's rules are at this revision.
        #[arg(long)]
        expected_revision: Option<u64>,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
}

/// "1 rule", "2 rules".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A limit as an operator reads it: `burst: 100/minute token_bucket floor 10`, or `unlimited`.
fn describe_limit(limit: &LimitSpec) -> String {
    let mut text = match &limit.rate {
        Some(rate) => format!(
            "{}/{} {}",
            rate.requests_per_unit,
            rate.unit.as_str(),
            limit.algorithm.as_str()
        ),
        None => "unlimited".to_string(),
    };
    if !limit.name.is_empty() {
        text = format!("{}: {text}", limit.name);
    }
    for (what, value) in [
        ("burst", limit.burst),
        ("floor", limit.floor),
        ("ceiling", limit.ceiling),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(" {what} {v}"));
        }
    }
    text
}

pub async fn run(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Check { file } => {
            let parsed = rules_file::load(&file, &InputLimits::default())?;
            for rule in &parsed.rules {
                let limits: Vec<String> = rule.limits.iter().map(describe_limit).collect();
                let shadow = if rule.shadow_mode { "  (shadow)" } else { "" };
                println!("{}  {}{shadow}", rule.id(), limits.join(", "));
            }
            eprintln!(
                "{}: {} in {}",
                file.display(),
                count(parsed.rules.len(), "rule", "rules"),
                count(parsed.domains.len(), "domain", "domains")
            );
        }
        RulesCommand::Apply {
            file,
            server,
            token,
            token_file,
            expected_revision,
            tls,
        } => {
            let parsed = rules_file::load(&file, &InputLimits::default())?;
            let token = match token {
                Some(t) => t,
                None => std::fs::read_to_string(&token_file)
                    .with_context(|| {
                        format!(
                            "no --token / SLUICE_ADMIN_TOKEN, and cannot read {}",
                            token_file.display()
                        )
                    })?
                    .trim()
                    .to_string(),
            };
            let mut client = pb::sluice_client::SluiceClient::new(tls.connect(&server).await?);
            let mut request = tonic::Request::new(pb::UpdateRulesRequest {
                rules: parsed.rules.iter().map(rule_to_proto).collect(),
                expected_revision,
                replace_domains: parsed.domains.clone(),
                actor: format!("sluice rules apply {}", file.display()),
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}")
                    .parse()
                    .context("token is not valid header text")?,
            );
            let reply = client
                .update_rules(request)
                .await
                .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
            println!(
                "applied {} in {}: revision {}",
                count(parsed.rules.len(), "rule", "rules"),
                count(parsed.domains.len(), "domain", "domains"),
                reply.get_ref().revision
            );
        }
    }
    Ok(())
}
