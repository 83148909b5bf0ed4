//! A fleet in processes: real `redis-server`s (standalone, or a three-primary Cluster) and real
//! `sluice serve` processes, each on its own loopback port, killed on drop. `scripts/test.sh`
//! installs Debian's redis-server when it is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_bin(name: &str) -> String {
    let bin = std::env::var("SLUICE_TEST_REDIS_BIN_DIR").unwrap_or_else(|_| "/usr/bin".into());
    let path = Path::new(&bin).join(name);
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh, which installs Debian's redis-server",
        path.display()
    );
    path.display().to_string()
}

/// One `redis-server` on loopback, in memory only (or with its append-only file).
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    cluster: bool,
    persistent: bool,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_node(false)
    }

    /// A server that keeps its data across `down` and `up` (the append-only file, fsynced on
    /// every write), as the shipped compose and Kubernetes files run it.
    pub fn start_persistent() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            cluster: false,
            persistent: true,
            child: None,
        };
        redis.up();
        redis
    }

    fn start_node(cluster: bool) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            cluster,
            persistent: false,
            child: None,
        };
        redis.up();
        redis
    }

    /// (Re)starts the server on its port and waits until it answers PING.
    pub fn up(&mut self) {
        let mut cmd = Command::new(redis_bin("redis-server"));
        let persistence = if self.persistent {
            [
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]
            .as_slice()
        } else {
            ["--save", "", "--appendonly", "no"].as_slice()
        };
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
        }
        self.child = Some(cmd.spawn().expect("start redis-server"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|out| out.trim() == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} never answered PING", self.port);
    }

    /// Stops the server at once (as a crash would).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(redis_bin("redis-cli"))
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// Three primaries, each with `replicas` replicas, joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        Self::start_with(0)
    }

    pub fn start_with(replicas: usize) -> RedisCluster {
        let mut nodes: Vec<Redis> = (0..3 * (1 + replicas))
            .map(|_| Redis::start_node(true))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new(redis_bin("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            let cluster = RedisCluster { nodes };
            if ok && cluster.replicas_in_sync() == 3 * replicas {
                return cluster;
            }
            let RedisCluster { nodes: back } = cluster;
            nodes = back;
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the Redis cluster never reached cluster_state:ok");
    }

    /// Nodes that are replicas with their link to the primary up.
    pub fn replicas_in_sync(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| {
                n.cli(&["INFO", "replication"]).is_some_and(|i| {
                    i.contains("role:slave") && i.contains("master_link_status:up")
                })
            })
            .count()
    }

    /// The index of a node that is a replica now.
    pub fn a_replica(&self) -> usize {
        (0..self.nodes.len())
            .find(|&i| {
                self.nodes[i]
                    .cli(&["INFO", "replication"])
                    .is_some_and(|r| r.contains("role:slave"))
            })
            .expect("the cluster has a replica")
    }

    /// The index of the primary that `replica` follows.
    pub fn primary_of(&self, replica: usize) -> usize {
        let info = self.nodes[replica].cli(&["INFO", "replication"]).unwrap();
        let port: u16 = info
            .lines()
            .find_map(|l| l.strip_prefix("master_port:"))
            .and_then(|p| p.trim().parse().ok())
            .expect("a replica names its primary's port");
        (0..self.nodes.len())
            .find(|&i| self.nodes[i].port == port)
            .unwrap()
    }

    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }
}

/// One `sluice serve` process.
pub struct Replica {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Replica {
    pub async fn start(database_url: &str, rules: &Path, args: &[&str]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args = args.to_vec();
        if !args.contains(&"--resync-interval-ms") {
            args.extend(["--resync-interval-ms", "200"]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .arg("--rules")
            .arg(rules)
            .args(["--admin-token", crate::harness::TOKEN])
            .arg("--admin-token-file")
            .arg(dir.path().join("token"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice serve");
        let replica = Replica {
            port,
            child,
            _dir: dir,
        };
        replica.wait_for("", ServingStatus::Serving).await;
        replica
    }

    pub async fn channel(&self) -> Channel {
        let url = format!("http://127.0.0.1:{}", self.port);
        for _ in 0..500 {
            if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
                return ch;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("sluice on port {} never accepted a connection", self.port);
    }

    pub async fn health(&self, service: &str) -> i32 {
        crate::harness::health_at(self.channel().await, service).await
    }

    /// Sends calls for `key` until health `sluice.v1.Counters` says `status`: a breaker opens
    /// and probes on traffic, not on time alone.
    pub async fn counters_under_traffic(&self, key: &str, status: ServingStatus) {
        for _ in 0..200 {
            spread(&[self], 1, 1, "fleet", key, "probe").await;
            if self.health("sluice.v1.Counters").await == status as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_for("sluice.v1.Counters", status).await;
    }

    pub async fn wait_for(&self, service: &str, status: ServingStatus) {
        for _ in 0..1_500 {
            if self.health(service).await == status as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "sluice on port {} never reported {status:?} for {service:?}",
            self.port
        );
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rules file in `dir`.
pub fn rules_file(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// One Envoy RLS call in `domain` with one descriptor per `(key, value)`: Ok(true) when admitted.
pub async fn ask(
    client: &mut RateLimitServiceClient<Channel>,
    domain: &str,
    descriptors: &[(&str, &str)],
) -> Result<bool, tonic::Status> {
    let response = client
        .should_rate_limit(RateLimitRequest {
            domain: domain.into(),
            descriptors: descriptors
                .iter()
                .map(|(key, value)| RateLimitDescriptor {
                    entries: vec![Entry {
                        key: key.to_string(),
                        value: value.to_string(),
                    }],
                    ..Default::default()
                })
                .collect(),
            hits_addend: 0,
        })
        .await?;
    Ok(response.get_ref().overall_code == Code::Ok as i32)
}

/// What a spread of calls across replicas did.
#[derive(Debug, Default)]
pub struct Spread {
    pub admitted: u64,
    pub refused: u64,
    pub failed: u64,
    pub latencies: Vec<Duration>,
}

impl Spread {
    pub fn p99(&mut self) -> Duration {
        self.latencies.sort();
        self.latencies
            .get((self.latencies.len() * 99 / 100).min(self.latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// `calls` calls for `key=value`, spread over the replicas by `connections` concurrent clients
/// (each on its own connection, round-robin over the replicas).
pub async fn spread(
    replicas: &[&Replica],
    connections: usize,
    calls: usize,
    domain: &str,
    key: &str,
    value: &str,
) -> Spread {
    let mut tasks = Vec::new();
    for c in 0..connections {
        let channel = replicas[c % replicas.len()].channel().await;
        let (domain, key, value) = (domain.to_string(), key.to_string(), value.to_string());
        let share = calls / connections + usize::from(c < calls % connections);
        tasks.push(tokio::spawn(async move {
            let mut client = RateLimitServiceClient::new(channel);
            let mut out = Spread::default();
            for _ in 0..share {
                let started = Instant::now();
                match ask(&mut client, &domain, &[(&key, &value)]).await {
                    Ok(true) => out.admitted += 1,
                    Ok(false) => out.refused += 1,
                    Err(_) => out.failed += 1,
                }
                out.latencies.push(started.elapsed());
            }
            out
        }));
    }
    let mut total = Spread::default();
    for task in tasks {
        let part = task.await.unwrap();
        total.admitted += part.admitted;
        total.refused += part.refused;
        total.failed += part.failed;
        total.latencies.extend(part.latencies);
    }
    total
}

/// Six clients, two per replica of `replicas` (three), each making 10 calls for `key=value`
/// 30 ms apart (starting 5 ms after one another): how many were admitted.
pub async fn paced(replicas: [&Replica; 3], key: &'static str, value: &str) -> u64 {
    let mut tasks = Vec::new();
    for (i, r) in replicas.iter().chain(replicas.iter()).enumerate() {
        let channel = r.channel().await;
        let value = value.to_string();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
            let mut client = RateLimitServiceClient::new(channel);
            let mut admitted = 0u64;
            for _ in 0..10 {
                if ask(&mut client, "fleet", &[(key, &value)]).await.unwrap() {
                    admitted += 1;
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    admitted
}
