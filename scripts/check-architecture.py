#!/usr/bin/env python3
"""Checks that ARCHITECTURE.md's code map is true: every file or directory it names exists, and
every Rust source file of the two packages (src/, crates/core/src/) is named, by itself or by a
directory named with a trailing slash; and every file of a directory row of tests, benches and
scripts (`tests/e2e/`, `scripts/`, ...) is named in that row. Prints what is wrong and exits 1; silent and 0 when true.

Names are read from the first column of the code map's table: a bold heading (`crates/core/`,
`src/service/`, ...) sets the directory the rows below are relative to (`crates/core/src/` for
the core, `src/` for the root package); a bare file name in a cell is beside the cell's previous
name (`learn/observe.rs`, `observe_tests.rs`); anything else is tried from the repository root.

Usage: scripts/check-architecture.py [REPO]"""
import itertools
import pathlib
import re
import sys


def expand(name):
    """`migrations/{sqlite,postgres}/` -> both."""
    m = re.search(r"\{([^}]*)\}", name)
    if not m:
        return [name]
    return [name[:m.start()] + part + name[m.end():] for part in m.group(1).split(",")]


def code_map_rows(text):
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            yield line


def code_map_cells(text):
    for line in code_map_rows(text):
        yield line.split("|")[1].strip()


# Directories whose rows must name each of their files (they hold no Rust module tree).
LISTED_DIRS = ("tests/", "benches/", "scripts/")


def unlisted(repo, text):
    """Files of a tests, benches or scripts directory row that the row does not name."""
    out = []
    for line in code_map_rows(text):
        first = line.split("|")[1].strip().strip("`")
        if not (first.startswith(LISTED_DIRS) and first.endswith("/")):
            continue
        directory = repo / first
        if not directory.is_dir():
            continue
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(directory).as_posix()
            if f"`{relative}`" not in line and f"`{path.name}`" not in line:
                out.append(f"{first}{relative}")
    return out


def check(repo):
    text = (repo / "ARCHITECTURE.md").read_text()
    base = repo
    named = set()
    missing = []
    for cell in code_map_cells(text):
        heading = re.fullmatch(r"\*\*`([^`]+)`\*\*", cell)
        if heading:
            base = repo / ("crates/core/src" if heading.group(1).startswith("crates/core") else "src")
            continue
        previous_dir = None
        for token in re.findall(r"`([^`]+)`", cell) or ([cell] if cell.startswith(".") else []):
            for name in expand(token):
                candidates = [base / name, repo / name]
                if previous_dir is not None and "/" not in name.rstrip("/"):
                    candidates.insert(0, previous_dir / name)
                found = next((c for c in candidates if c.exists()), None)
                if found is None:
                    missing.append(name)
                    continue
                named.add(found.resolve())
                previous_dir = found.parent if found.is_file() else found
    sources = itertools.chain((repo / "src").rglob("*.rs"), (repo / "crates/core/src").rglob("*.rs"))
    unnamed = []
    for path in sorted(sources):
        resolved = path.resolve()
        if resolved in named or any(d in named for d in resolved.parents):
            continue
        unnamed.append(str(path.relative_to(repo)))
    return missing, unnamed + unlisted(repo, text)


def main():
    repo = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
    missing, unnamed = check(repo)
    for name in missing:
        print(f"ARCHITECTURE.md names {name}, which does not exist")
    for name in unnamed:
        print(f"ARCHITECTURE.md's code map does not name {name}")
    sys.exit(1 if missing or unnamed else 0)


if __name__ == "__main__":
    main()
