"""The tree tells the story: each concern has one module, and no second copy of it hides elsewhere.

README.md's "One home per concern" table names the module of each concern; this test reads that table,
checks each module defines what it is named for, and greps `shared/` and `services/` for the code that
only that module may hold (a second backoff formula, a second dead-letter header, a second reader...).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = [path for folder in ("shared", "services") for path in sorted((ROOT / folder).rglob("*.py"))]
TABLE_ROW = re.compile(r"^\| (?P<concern>[^|]+?) \| `(?P<module>[^`]+)`(?: \(`(?P<symbol>[^`]+)`\))? \|$")


@dataclass(frozen=True)
class Home:
    """A concern, its module, and a pattern of code that may appear in no other product module."""

    concern: str
    module: str
    symbol: str
    only_here: str


# An exponential ceiling, a jittered draw, or giving up after attempts (raising, not declaring, the error).
BACKOFF = r"2 \*\*|\.uniform\(|(?<!class )RetriesExhaustedError\("
HOMES = [
    # Only the normalizer turns a CDC changeType into the contract's (RESYNC events are shared/events.py's).
    Home("CDC message → change events", "services/listener/normalize.py", "normalize", r"\bPLAIN_TYPES\b"),
    Home("compound fields (nested in CDC, flat in the API)", "shared/compound.py", "", r'removesuffix\("Address"\)'),
    Home("coalescing per account", "services/syncer/batch.py", "coalesce", r"def coalesce\b"),
    Home(
        "a retry decision (backoff, attempts)",
        "shared/retry.py",
        "RetryPolicy",
        BACKOFF,
    ),
    Home("the dead-letter record (headers, reason)", "shared/deadletter.py", "dead_letter_headers", r'"sfls\.error\.'),
    Home(
        "committing consumed offsets (the syncer, the Requests tab)",
        "services/syncer/consume.py",
        "BatchLoop._commit_offsets",
        r"\.commit\(offsets=|\.commit\($",
    ),
    Home("reading a topic to its end", "shared/kafka_reader.py", "read_to_end", r"\.assign\("),
    Home("producing a record (a full local queue, a refused topic)", "shared/kafka.py", "produce", r"BufferError"),
    Home("the Kafka permissions of each command", "shared/acls.py", "", r"include_authorized_operations"),
]


def _readme_homes() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("One home per concern:", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = TABLE_ROW.match(line.strip())
        if match and match["concern"] != "Concern":
            rows[match["concern"]] = (match["module"], match["symbol"] or "")
    return rows


def _defines(module: Path, dotted: str) -> bool:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    scope: list[ast.stmt] = tree.body
    for part in dotted.split("."):
        found = [
            node
            for node in scope
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == part
        ]
        if not found:
            return False
        scope = found[0].body
    return True


def test_the_readme_table_is_this_table() -> None:
    """README.md names the same module and symbol for every concern as this test checks."""
    assert _readme_homes() == {h.concern: (h.module, h.symbol) for h in HOMES}


@pytest.mark.parametrize("home", HOMES, ids=lambda h: h.module)
def test_each_concern_lives_in_its_module_only(home: Home) -> None:
    """The named module defines the concern's symbol, and no other product module holds its code."""
    module = ROOT / home.module
    assert module.is_file(), home.module
    if home.symbol:
        assert _defines(module, home.symbol), f"{home.module} does not define {home.symbol}"
    pattern = re.compile(home.only_here)
    here = [n for n, line in enumerate(module.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert here, f"{home.module} no longer matches {home.only_here!r}: update the pattern with the code"
    elsewhere = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in PRODUCT
        if path != module
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert not elsewhere, f"a second home for {home.concern!r}:\n" + "\n".join(elsewhere)


def test_product_modules_stay_small() -> None:
    """No module of shared/ or services/ passes 400 lines, except the importer's declarative entity table."""
    tables = {"services/importer/entities.py"}
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in PRODUCT
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400 and str(path.relative_to(ROOT)) not in tables
    }
    assert PRODUCT, "no product modules found"
    assert not too_long, too_long


def test_comments_cite_the_repository_only() -> None:
    """No code or comment cites a document outside the repository (design notes, reference sections, issues)."""
    outside = re.compile(r"design\.md|reference section|\breference/\w+\.md|\b[Ii]ssue #?\d+")
    folders = ("shared", "services", "devstack", "bench", "scripts", "tests", "deploy")
    files = [
        path
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in {".py", ".yaml", ".sh", ".mk", ".tpl"} and path != Path(__file__).resolve()
    ]
    assert len(files) > 100, len(files)
    cited = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert not cited, "\n".join(cited)
