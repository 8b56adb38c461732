"""The lock's runtime set: audited with pip-audit against PyPI (scripts/audit_runtime.py, `make audit`), and
free of the emulators' dependencies."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.scripts import load_script

# Only the local stack needs these; the product (the wheel, the image) must not install them.
EMULATOR_ONLY = ("trustme", "sf-logisense-sync-devstack")


audit_runtime = load_script("audit_runtime")


@pytest.fixture(scope="module")
def runtime_set() -> dict[str, str]:
    """What `pip install -c constraints.txt .` installs (pip's dry-run report), the project itself left out."""
    return audit_runtime.runtime_set()


@pytest.mark.integration
def test_runtime_set_has_no_emulator_dependencies(runtime_set: dict[str, str]) -> None:
    """The runtime distribution pulls in nothing only the emulators need."""
    assert runtime_set, "pip reported an empty runtime set"
    found = sorted(set(EMULATOR_ONLY) & set(runtime_set))
    assert not found, f"emulator-only packages in the runtime set: {found}"


@pytest.mark.integration
def test_runtime_set_passes_the_audit(runtime_set: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """No pinned runtime package has an advisory, except those deploy/audit-accepted.txt lists with a reason;
    an accepted advisory no package has any more is stale and fails too.

    A package that cannot be audited from here (this PyPI proxy serves no per-version JSON, so only pins that
    are the latest release can be checked) is listed in the summary but does not fail the suite: which pins
    are the latest changes with every upstream release, which would make the suite fail on a day, not on a
    change. `make audit` is the strict gate and fails on them too.
    """
    result = audit_runtime.audit(pins=runtime_set)
    with capsys.disabled():
        sys.stdout.write("\n" + result.summary() + "\n")
    assert result.by_pip_audit or result.by_project_json, "nothing was audited:\n" + result.summary()
    assert not result.open_findings, result.summary()
    assert not result.stale, result.summary()


def test_accepted_advisories_each_have_a_reason(tmp_path: Path) -> None:
    """The allow-list is `<id> <why>` per line; a bare id is refused, comments and blank lines are ignored."""
    assert isinstance(audit_runtime.load_accepted(), dict)
    good = tmp_path / "good.txt"
    good.write_text("# comment\n\nGHSA-aaaa-bbbb-cccc  unreachable: sfls never parses WSDL\n", encoding="utf-8")
    assert audit_runtime.load_accepted(good) == {"GHSA-aaaa-bbbb-cccc": "unreachable: sfls never parses WSDL"}
    bare = tmp_path / "bare.txt"
    bare.write_text("PYSEC-2026-1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no reason"):
        audit_runtime.load_accepted(bare)
