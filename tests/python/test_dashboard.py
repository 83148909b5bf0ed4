"""The dashboard in a real browser: a Sluice server under simulated traffic (STD and PRM users,
a watched endpoint with a capacity, a client failing logins), its page loaded by headless
Chromium through Selenium until every panel shows data; a screenshot is kept in
target/test-artifacts/. The same live server's /metrics is checked by promtool, and every
PromQL expression of the shipped Grafana dashboard must name metrics it exposes."""

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from conftest import ROOT, TOKEN, free_port, wait_serving

RULES = """
domain: sluice
descriptors:
  - key: endpoint
    value: /api/payment
    priority: high
    capacity: 40
    rate_limit: {unit: second, requests_per_unit: 500}
  - key: endpoint
    value: /api/browse
    descriptors:
      - key: user_id
        priority: low
        rate_limit: {unit: minute, requests_per_unit: 30, floor: 4}
  - key: tier
    value: STD
    descriptors:
      - key: user_id
        rate_limit: {unit: minute, requests_per_unit: 90}
  - key: tier
    value: PRM
    descriptors:
      - key: user_id
        rate_limit: {unit: minute, requests_per_unit: 600}
"""

PANELS = ["overview", "decisions", "reasons", "buckets", "forecasts", "scores", "actions", "rules", "adjustments"]


def http_get(port, path, token=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read().decode()


def traffic(channel, stop):
    """Until `stop`: users of both tiers browsing and paying, and one client failing logins fast."""
    from sluice.v1 import sluice_pb2 as pb
    from sluice.v1 import sluice_pb2_grpc

    api = sluice_pb2_grpc.SluiceStub(channel)
    n = 0
    while not stop.is_set():
        n += 1
        prm = n % 5 == 0
        user = f"{'p' if prm else 'u'}{n % 13}"
        endpoint = "/api/payment" if n % 3 == 0 else "/api/browse"
        subject = pb.Subject(user_id=user, tier=pb.TIER_PRM if prm else pb.TIER_STD, endpoint=endpoint,
                             client_ip=f"10.0.0.{n % 13}", user_agent="Mozilla/5.0 Firefox/133.0")
        api.ShouldAllow(pb.ShouldAllowRequest(subject=subject, cost=1))
        api.Report(pb.ReportRequest(subject=subject, status=200, count=1))
        if n % 2 == 0:
            bad = pb.Subject(client_ip="198.51.100.7", endpoint="/api/login", method="POST",
                             user_agent="python-requests/2.32")
            if api.ShouldAllow(pb.ShouldAllowRequest(subject=bad, cost=1)).allowed:
                api.Report(pb.ReportRequest(subject=bad, status=401, count=1))
        time.sleep(0.004)


@pytest.fixture()
def busy_server(stubs, tmp_path):
    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
    grpc_port, http_port = free_port(), free_port()
    (tmp_path / "rules.yaml").write_text(RULES)
    env = dict(os.environ, SLUICE_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
    # One-second "minutes" so forecasts (a 60-minute window) and the forest come within the test.
    proc = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}",
         "--database-url", f"sqlite:{tmp_path / 'sluice.db'}", "--rules", str(tmp_path / "rules.yaml"),
         "--learn-tick-secs", "1", "--cold-start-secs", "0", "--min-train", "2"],
        env=env, cwd=tmp_path,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stop = threading.Event()
    worker = None
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        wait_serving(channel, timeout=60)
        worker = threading.Thread(target=traffic, args=(channel, stop), daemon=True)
        worker.start()
        yield http_port
    finally:
        stop.set()
        if worker:
            worker.join(timeout=10)
        channel.close()
        proc.terminate()
        assert proc.wait(timeout=15) == 0, "server exits cleanly on SIGTERM"


def wait_for(what, check, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # the server may be between minutes: try again
            last = e
        time.sleep(1)
    raise TimeoutError(f"{what} not seen in {timeout} s (last: {last})")


def test_every_panel_shows_data_in_a_real_browser(busy_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    port = busy_server
    api = lambda path: json.loads(http_get(port, path, TOKEN))
    # The history the panels read: a minute's forecasts need a full 60-minute window first.
    wait_for("forecasts", lambda: any(s["points"] for s in api("/api/forecasts?minutes=60")["series"]), 150)
    wait_for("anomaly scores", lambda: api("/api/anomalies")["scores"], 60)
    # The failing client's bucket row says which limit is in force: its anomaly action.
    wait_for("the acted-on client's action in its bucket row",
             lambda: any(k["client"] == "198.51.100.7" and k.get("action")
                         for keys in api("/api/buckets")["tiers"].values() for k in keys), 60)
    wait_for("a client under action", lambda: api("/api/anomalies")["actions"], 60)

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,2200"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(os.environ.get("SLUICE_CHROMEDRIVER", "/usr/bin/chromedriver")),
                              options=options)
    try:
        # The token in the fragment: never sent to the server, kept for this tab only.
        driver.get(f"http://127.0.0.1:{port}/#token={TOKEN}")
        rows = lambda d: {p: int(d.find_element("id", p).get_attribute("data-rows") or 0) for p in PANELS}
        try:
            WebDriverWait(driver, 40, poll_frequency=1).until(lambda d: all(v > 0 for v in rows(d).values()))
        finally:
            artifacts = ROOT / "target" / "test-artifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(artifacts / "dashboard.png"))
        status = driver.find_element("id", "status")
        assert "error" not in status.get_attribute("class"), status.text
        assert driver.find_elements("css selector", "#decisions canvas"), "the decisions chart is drawn"
        assert driver.find_elements("css selector", "#scores canvas"), "the scores scatter is drawn"
        assert driver.find_elements("css selector", "#forecasts canvas"), "a forecast chart is drawn"
        assert "198.51.100.7" in driver.find_element("id", "actions").text, "the failing client is under action"
        # Times are never broken across lines, however narrow a table gets.
        times = driver.find_elements("css selector", "td .t")
        assert times, "the tables show times"
        assert all(t.value_of_css_property("white-space") == "nowrap" for t in times)
        assert driver.find_element("id", "login").get_attribute("hidden") is not None
    finally:
        driver.quit()

    # The same live server's metrics: valid for promtool, and every Grafana expression names them.
    text = http_get(port, "/metrics")
    check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    board = json.loads((ROOT / "deploy" / "grafana" / "sluice-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8, "the board has its panels"
    for expr in exprs:
        names = set(re.findall(r"\b((?:sluice|process)_[a-z0-9_]+)\b", expr))
        assert names, f"no metric in {expr!r}"
        missing = names - exposed
        assert not missing, f"{expr!r} names {missing}, which /metrics does not expose"
