//! `sluice call` and the everyday calls on it (`decide`, `rules list|get`, `client get|reset`,
//! `flagged`, `stats`): any Sluice RPC from the command line, without grpcurl (which Debian does
//! not package). The request and the reply are JSON in proto3's JSON mapping, as grpcurl prints
//! them, read and written through the API's own descriptors (the ones server reflection serves),
//! so every method and field works without code of its own here. The admin token is read as
//! `rules apply` reads it (`--token`, `SLUICE_ADMIN_TOKEN`, else the file the server writes) and
//! sent when there is one.
//!
//! Not here: what the server does with the call, or rules files (`cli::rules`).

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

use crate::cli::client_tls::ClientTlsArgs;
use crate::proto::REFLECTION_DESCRIPTOR_SET;

/// Where the server is and how to be admitted.
#[derive(Clone, Debug, clap::Args)]
pub struct Connection {
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Admin token; defaults to SLUICE_ADMIN_TOKEN, then the server's generated token file.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN_FILE",
        default_value = "sluice-admin.token"
    )]
    pub token_file: PathBuf,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

impl Connection {
    /// The token to send: given, else the file's (trimmed), else none (decision calls need none).
    pub fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::fs::read_to_string(&self.token_file)
                .ok()
                .map(|t| t.trim().to_string())
        })
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct CallArgs {
    /// The method: `ListFlagged`, or in full `sluice.v1.Sluice/ListFlagged`.
    pub method: String,
    /// The request as JSON (proto3's mapping: `{"subject": {"userId": "alice"}}`).
    #[arg(default_value = "{}")]
    pub request: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// The everyday calls, each one RPC with its request built from flags.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// The limits in force for a client and its anomaly action, if any (`GetClient`).
    Get(SubjectArgs),
    /// Give a client its allowance back and lift its actions (`ResetClient`, admin).
    Reset(SubjectArgs),
}

/// A subject, as `ShouldAllow`, `GetClient` and `ResetClient` take it.
#[derive(Clone, Debug, clap::Args)]
pub struct SubjectArgs {
    #[arg(long, default_value = "")]
    pub user: String,
    #[arg(long, default_value = "")]
    pub ip: String,
    #[arg(long, default_value = "")]
    pub endpoint: String,
    /// `STD` or `PRM`.
    #[arg(long, default_value = "STD")]
    pub tier: String,
    /// The rules' domain (empty: the server's default).
    #[arg(long, default_value = "")]
    pub domain: String,
    #[command(flatten)]
    pub connection: Connection,
}

impl SubjectArgs {
    fn subject(&self) -> anyhow::Result<serde_json::Value> {
        let tier = match self.tier.to_ascii_uppercase().as_str() {
            "STD" => "TIER_STD",
            "PRM" => "TIER_PRM",
            other => anyhow::bail!("--tier {other:?}: expected STD or PRM"),
        };
        Ok(serde_json::json!({
            "userId": self.user, "clientIp": self.ip, "endpoint": self.endpoint, "tier": tier,
        }))
    }

    fn request(&self) -> anyhow::Result<String> {
        Ok(serde_json::json!({"subject": self.subject()?, "domain": self.domain}).to_string())
    }
}

/// `sluice decide`: `ShouldAllow` for a subject.
#[derive(Clone, Debug, clap::Args)]
pub struct DecideArgs {
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Hits the request takes.
    #[arg(long, default_value_t = 1)]
    pub cost: u32,
}

impl DecideArgs {
    pub fn request(&self) -> anyhow::Result<String> {
        let s = &self.subject;
        Ok(serde_json::json!({
            "subject": s.subject()?, "domain": s.domain, "cost": self.cost,
        })
        .to_string())
    }
}

/// `sluice flagged`: the clients acted on now (`ListFlagged`).
#[derive(Clone, Debug, clap::Args)]
pub struct FlaggedArgs {
    /// At most this many, highest scores first (0: the server's default).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    #[command(flatten)]
    pub connection: Connection,
}

/// `sluice stats`: traffic and denials by endpoint and tier (`GetStats`, admin).
#[derive(Clone, Debug, clap::Args)]
pub struct StatsArgs {
    /// The last this many minutes (0: the server's default window).
    #[arg(long, default_value_t = 0)]
    pub minutes: u64,
    #[command(flatten)]
    pub connection: Connection,
}

impl StatsArgs {
    pub fn request(&self) -> String {
        if self.minutes == 0 {
            return "{}".into();
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        serde_json::json!({"sinceMs": now_ms - self.minutes as i64 * 60_000}).to_string()
    }
}

pub async fn client(command: &ClientCommand) -> anyhow::Result<String> {
    match command {
        ClientCommand::Get(s) => call("GetClient", &s.request()?, &s.connection).await,
        ClientCommand::Reset(s) => call("ResetClient", &s.request()?, &s.connection).await,
    }
}

/// Calls `method` of `sluice.v1.Sluice` with `request` (JSON); returns the reply as JSON. A
/// refusal is an error naming its code and message.
pub async fn call(method: &str, request: &str, connection: &Connection) -> anyhow::Result<String> {
    let method = method_named(method)?;
    let mut input = serde_json::Deserializer::from_str(request);
    let message = DynamicMessage::deserialize(method.input(), &mut input)
        .and_then(|m| input.end().map(|()| m))
        .with_context(|| format!("the request is not a {}", method.input().full_name()))?;
    let channel = connection.tls.connect(&connection.server).await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .with_context(|| format!("cannot reach {}", connection.server))?;
    let mut call = tonic::Request::new(message.encode_to_vec());
    if let Some(token) = connection.token() {
        call.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .context("the admin token is not valid header text")?,
        );
    }
    let path: PathAndQuery = format!("/sluice.v1.Sluice/{}", method.name())
        .parse()
        .expect("a method name is a valid path");
    let reply = grpc
        .unary(call, path, Bytes)
        .await
        .map_err(|status| refused(&status))?;
    let reply = DynamicMessage::decode(method.output(), reply.into_inner().as_slice())
        .context("the reply does not decode")?;
    Ok(serde_json::to_string_pretty(&reply)?)
}

/// A method of `sluice.v1.Sluice` by its name (or `service/name`); the error lists them.
fn method_named(name: &str) -> anyhow::Result<MethodDescriptor> {
    let pool = DescriptorPool::decode(REFLECTION_DESCRIPTOR_SET).expect("the embedded set decodes");
    let service = pool
        .get_service_by_name("sluice.v1.Sluice")
        .expect("the embedded set holds the API");
    let short = name.rsplit('/').next().unwrap_or(name);
    service
        .methods()
        .find(|m| m.name() == short)
        .ok_or_else(|| {
            let names: Vec<String> = service.methods().map(|m| m.name().to_string()).collect();
            anyhow!("no method {short:?}: one of {}", names.join(", "))
        })
}

/// A refused call as an error: its gRPC code and the server's message.
fn refused(status: &Status) -> anyhow::Error {
    let hint = match status.code() {
        Code::Unauthenticated => {
            " (admin calls need the token: --token, SLUICE_ADMIN_TOKEN or the server's token file)"
        }
        _ => "",
    };
    anyhow!("{:?}: {}{hint}", status.code(), status.message())
}

/// The raw protobuf bytes of a message, unchanged (the descriptors give them meaning).
#[derive(Clone, Copy, Debug, Default)]
struct Bytes;

impl Codec for Bytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Bytes;
    type Decoder = Bytes;

    fn encoder(&mut self) -> Bytes {
        Bytes
    }

    fn decoder(&mut self) -> Bytes {
        Bytes
    }
}

impl Encoder for Bytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Bytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
