"""The documents stay true: ARCHITECTURE.md's code map names only files that exist, every Rust
source file of the two packages and every file of the tests, benches and scripts rows
(scripts/check-architecture.py, which this runs on the repository and on a small made-up one it
must find fault with); every relative link of README.md and docs/ reaches a file, and a heading
when it names one."""

import re
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
    (tmp_path / "tests" / "e2e").mkdir(parents=True)
    (tmp_path / "tests" / "e2e" / "named.rs").write_text("")
    (tmp_path / "tests" / "e2e" / "unlisted.rs").write_text("")
    (tmp_path / "ARCHITECTURE.md").write_text(
        "# x\n\n## Code map\n\n| where | what |\n| --- | --- |\n"
        "| **`crates/core/`** | core |\n| `lib.rs` | root |\n"
        "| **`src/service/`** | service |\n| `service/run.rs`, `gone.rs` | run |\n"
        "| `tests/e2e/` | `named.rs` |\n\n## Invariants\n"
    )
    out = run(tmp_path)
    assert out.returncode == 1, out.stdout
    assert "names gone.rs, which does not exist" in out.stdout, out.stdout
    assert "does not name src/service/forgotten.rs" in out.stdout, out.stdout
    assert "does not name tests/e2e/unlisted.rs" in out.stdout, out.stdout
    assert "named.rs" not in out.stdout.replace("unlisted.rs", ""), out.stdout


def anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def test_every_relative_link_of_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and file.suffix == ".md" and fragment not in headings(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_points_at_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in readme]
    assert not missing, missing
