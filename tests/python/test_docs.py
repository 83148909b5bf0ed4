"""ARCHITECTURE.md stays true: its code map names only files that exist and every Rust source
file of the two packages (scripts/check-architecture.py, which this runs on the repository and
on a small made-up one it must find fault with)."""

import subprocess
import sys

from conftest import ROOT

CHECK = ROOT / "scripts" / "check-architecture.py"


def run(repo):
    return subprocess.run([sys.executable, str(CHECK), str(repo)], capture_output=True, text=True)


def test_the_code_map_is_true():
    out = run(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_check_finds_a_missing_and_an_unnamed_file(tmp_path):
    (tmp_path / "src" / "service").mkdir(parents=True)
    (tmp_path / "crates" / "core" / "src").mkdir(parents=True)
    (tmp_path / "src" / "service" / "run.rs").write_text("")
    (tmp_path / "src" / "service" / "forgotten.rs").write_text("")
    (tmp_path / "crates" / "core" / "src" / "lib.rs").write_text("")
    (tmp_path / "ARCHITECTURE.md").write_text(
        "# x\n\n## Code map\n\n| where | what |\n| --- | --- |\n"
        "| **`crates/core/`** | core |\n| `lib.rs` | root |\n"
        "| **`src/service/`** | service |\n| `service/run.rs`, `gone.rs` | run |\n\n## Invariants\n"
    )
    out = run(tmp_path)
    assert out.returncode == 1, out.stdout
    assert "names gone.rs, which does not exist" in out.stdout, out.stdout
    assert "does not name src/service/forgotten.rs" in out.stdout, out.stdout
