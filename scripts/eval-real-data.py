#!/usr/bin/env python3
"""Detection on real, public traffic (the project's reference data, not part of a clone):

- zanbil-2019-sample-labelled.csv: a real e-commerce log; self-declared crawlers are labelled
  attack:crawler, everyone else benign (people, and bots posing as browsers). Measures how many
  undeclared clients are acted on, and what share of the declared crawlers is.
- dvwa-scanners-2016-labelled.csv mixed into zanbil's benign traffic: three real vulnerability
  scanners, moved in time into the middle of the e-commerce log (their minutes keep their shape).
- apache-combined-2015.log: unlabelled; who is acted on.

Usage: scripts/eval-real-data.py [--sluice target/debug/sluice] [--data ../shared/data]
Prints one JSON object. Replays with the service's defaults (no rules: anomaly actions only).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone


def replay(sluice, trace, out):
    subprocess.run([sluice, "replay", "--trace", trace, "--report", out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def parse_ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def merged(zanbil, dvwa, path):
    """zanbil's benign rows, plus the scanners' rows shifted to start 15 minutes into it."""
    with open(zanbil, newline="") as f:
        benign = [r for r in csv.DictReader(f) if r["label"] == "benign"]
    with open(dvwa, newline="") as f:
        scans = list(csv.DictReader(f))
    start = min(parse_ts(r["ts"]) for r in benign) + timedelta(minutes=15)
    first = min(parse_ts(r["ts"]) for r in scans)
    end = max(parse_ts(r["ts"]) for r in benign)
    for r in scans:
        t = start + (parse_ts(r["ts"]) - first)
        r["ts"] = t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    scans = [r for r in scans if parse_ts(r["ts"]) <= end]
    rows = sorted(benign + scans, key=lambda r: parse_ts(r["ts"]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(benign[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return len(scans)


def summary(report):
    c = report["clients"]
    flagged = report["flagged"]
    benign_flagged = [f for f in flagged if f["label"] and not f["label"].startswith("attack")
                      and not f["client"].startswith("user:")]
    benign_total = c["labelled"].get("benign", 0)
    attack_total = c["labelled"].get("attack", 0)
    return {
        "clients": c["total"],
        "benign_clients": benign_total,
        "benign_acted_on": len(benign_flagged),
        "benign_acted_on_share": round(len(benign_flagged) / benign_total, 4) if benign_total else None,
        "attack_clients": attack_total,
        "attack_caught": c["true_positives"],
        "attack_caught_share": round(c["true_positives"] / attack_total, 4) if attack_total else None,
        "benign_requests_denied_share": report.get("benign_denied_ratio"),
        "acted_on": [{k: f[k] for k in ("client", "label", "signal", "why")} for f in flagged[:20]],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sluice", default=os.environ.get("SLUICE_BIN", "target/debug/sluice"))
    p.add_argument("--data", default="../shared/data")
    a = p.parse_args()
    zanbil = os.path.join(a.data, "zanbil-2019-sample-labelled.csv")
    dvwa = os.path.join(a.data, "dvwa-scanners-2016-labelled.csv")
    apache = os.path.join(a.data, "apache-combined-2015.log")
    for f in (zanbil, dvwa, apache):
        if not os.path.exists(f):
            sys.exit(f"missing {f}: this evaluation reads the project's reference data")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["zanbil"] = summary(replay(a.sluice, zanbil, os.path.join(tmp, "z.json")))
        mixed = os.path.join(tmp, "mixed.csv")
        scans = merged(zanbil, dvwa, mixed)
        out["dvwa_in_zanbil"] = summary(replay(a.sluice, mixed, os.path.join(tmp, "m.json")))
        out["dvwa_in_zanbil"]["scanner_requests_mixed_in"] = scans
        r = replay(a.sluice, apache, os.path.join(tmp, "a.json"))
        out["apache_2015"] = {
            "clients": r["clients"]["total"],
            "acted_on": [{k: f[k] for k in ("client", "signal", "why", "requests")} for f in r["flagged"]],
        }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
