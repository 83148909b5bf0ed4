//! `sluice rules check` and `sluice rules apply`: validate a rules file (envoyproxy/ratelimit
//! YAML and Sluice's extensions) and print what it defines, or apply it to a running server.

use std::path::PathBuf;

use anyhow::Context;

use sluice_core::limit::LimitSpec;
use sluice_core::validate::InputLimits;

use super::call::call;
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
        /// Fail unless the server's rules are at this revision.
        #[arg(long)]
        expected_revision: Option<u64>,
        #[command(flatten)]
        connection: crate::cli::call::Connection,
    },
    /// A running server's rules, as JSON (`ListRules`; `--domain` for one domain).
    List {
        #[arg(long, default_value = "")]
        domain: String,
        #[command(flatten)]
        connection: crate::cli::call::Connection,
    },
    /// One rule of a running server by its id, as JSON (`GetRule`).
    Get {
        id: String,
        #[command(flatten)]
        connection: crate::cli::call::Connection,
    },
}

/// "1 rule", "2 rules".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A limit as an operator reads it: `burst: 100/minute token_bucket floor 10`, or `unlimited`.
fn describe_limit(limit: &LimitSpec) -> String {
    let mut text = match &limit.rate {
        Some(rate) if rate.unit_multiplier > 1 => format!(
            "{}/{} {}s {}",
            rate.requests_per_unit,
            rate.unit_multiplier,
            rate.unit.as_str(),
            limit.algorithm.as_str()
        ),
        Some(rate) => format!(
            "{}/{} {}",
            rate.requests_per_unit,
            rate.unit.as_str(),
            limit.algorithm.as_str()
        ),
        None => "unlimited".to_string(),
    };
    if let Some(zone) = &limit.calendar {
        text.push_str(&format!(" calendar {zone}"));
    }
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
        RulesCommand::List { domain, connection } => {
            let request = serde_json::json!({ "domain": domain }).to_string();
            println!("{}", call("ListRules", &request, &connection).await?);
        }
        RulesCommand::Get { id, connection } => {
            let request = serde_json::json!({ "id": id }).to_string();
            println!("{}", call("GetRule", &request, &connection).await?);
        }
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
            expected_revision,
            connection,
        } => {
            let parsed = rules_file::load(&file, &InputLimits::default())?;
            let token = connection.token().with_context(|| {
                format!(
                    "no --token / SLUICE_ADMIN_TOKEN, and cannot read {}",
                    connection.token_file.display()
                )
            })?;
            let channel = connection.tls.connect(&connection.server).await?;
            let mut client = pb::sluice_client::SluiceClient::new(channel);
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

#[cfg(test)]
mod tests {
    use super::describe_limit;
    use sluice_core::limit::{Algorithm, LimitSpec, Rate, Unit};

    /// `rules check` shows every field a limit can have.
    #[test]
    fn a_limit_reads_as_an_operator_writes_it() {
        let per = |n: u64, unit: Unit, multiplier: u32| LimitSpec {
            rate: Some(Rate {
                requests_per_unit: n,
                unit,
                unit_multiplier: multiplier,
            }),
            ..LimitSpec::per(n, unit)
        };
        let cases = [
            (per(100, Unit::Minute, 1), "100/minute token_bucket"),
            (per(5, Unit::Second, 30), "5/30 seconds token_bucket"),
            (
                LimitSpec {
                    name: "smooth".into(),
                    algorithm: Algorithm::Gcra,
                    burst: Some(5),
                    ..per(10, Unit::Second, 1)
                },
                "smooth: 10/second gcra burst 5",
            ),
            (
                LimitSpec {
                    algorithm: Algorithm::FixedWindow,
                    calendar: Some("Europe/Berlin".into()),
                    ..per(100_000, Unit::Month, 1)
                },
                "100000/month fixed_window calendar Europe/Berlin",
            ),
            (
                LimitSpec {
                    floor: Some(10),
                    ceiling: Some(200),
                    ..per(100, Unit::Minute, 1)
                },
                "100/minute token_bucket floor 10 ceiling 200",
            ),
            (
                LimitSpec {
                    rate: None,
                    ..LimitSpec::per(1, Unit::Second)
                },
                "unlimited",
            ),
        ];
        for (limit, shown) in cases {
            assert_eq!(describe_limit(&limit), shown);
        }
    }
}
