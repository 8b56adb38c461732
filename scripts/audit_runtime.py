"""Audit the runtime dependency set the lock pins (what the image and `pip install sf-logisense-sync` get).

    python scripts/audit_runtime.py            (`make audit`; tests/deploy/test_audit.py runs the same code)

1. The runtime set is what `pip install -c constraints.txt .` of the root project installs: asked of pip
   with `--dry-run --ignore-installed --report`, minus the project itself; no dev or devstack extras.
2. It is written as pinned requirements and audited with `pip-audit --no-deps --disable-pip -r FILE`
   against PyPI's vulnerability data (the `vulnerabilities` of PyPI's JSON API).
3. A dependency pip-audit could not look up (it asks `/pypi/<name>/<version>/json`, which some PyPI
   mirrors and proxies do not serve) is looked up in the project's `/pypi/<name>/json`, whose
   `vulnerabilities` are those of the latest release: they count only when the pin is that release;
   otherwise the dependency is reported as not audited, which fails the audit like a finding does.

An advisory is accepted only by a line in deploy/audit-accepted.txt: `<id> <why>` (the id pip-audit or
PyPI shows, or one of its aliases, e.g. a CVE or GHSA id). A dependency that cannot be audited where the
audit runs is accepted the same way, pinned: `unaudited:<name>==<version> <why>`; it applies only when that
pin could not be audited (pip-audit checks it wherever PyPI serves per-version JSON). An accepted id that
no dependency has any more, or an `unaudited:` line whose pin is no longer in the lock, is reported as
stale and fails too, so the list only holds what still applies.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
ACCEPTED = ROOT / "deploy" / "audit-accepted.txt"
GAP = "unaudited:"
PYPI_JSON = "https://pypi.org/pypi"
TIMEOUT = 30


def canonical(name: str) -> str:
    """PEP 503 normalised name: `PyYAML` and `pyyaml`, `typing_extensions` and `typing-extensions` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_name(root: Path = ROOT) -> str:
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^name = "([^"]+)"', text, re.MULTILINE)
    if not found:
        raise RuntimeError("no project name in pyproject.toml")
    return canonical(found.group(1))


def runtime_set(root: Path = ROOT, python: str = sys.executable) -> dict[str, str]:
    """Canonical name -> pinned version of every package `pip install -c constraints.txt .` would install."""
    command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-"]
    command += ["--constraint", str(root / "constraints.txt"), str(root)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=root)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"pip could not resolve the runtime set:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    own = project_name(root)
    pins = {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}
    pins.pop(own, None)
    return dict(sorted(pins.items()))


def load_accepted(path: Path = ACCEPTED) -> dict[str, str]:
    """Advisory id -> why it is accepted; a line without a reason is an error."""
    accepted: dict[str, str] = {}
    if not path.exists():
        return accepted
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        advisory, _, why = line.partition(" ")
        if not why.strip():
            raise ValueError(f"{path.name}:{number}: {advisory} has no reason; write `<id> <why it is accepted>`")
        accepted[advisory] = why.strip()
    return accepted


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    source: str
    accepted: str | None = None

    def ids(self) -> set[str]:
        return {self.advisory, *self.aliases}


@dataclass
class Audit:
    pins: dict[str, str]
    findings: list[Finding] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)  # package -> why
    accepted_gaps: dict[str, str] = field(default_factory=dict)  # package not audited here -> why accepted
    by_pip_audit: list[str] = field(default_factory=list)
    by_project_json: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def open_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.accepted is None]

    @property
    def passed(self) -> bool:
        return not (self.open_findings or self.unaudited or self.stale)

    def summary(self) -> str:
        lines = [
            f"{len(self.pins)} runtime packages: {len(self.by_pip_audit)} audited by pip-audit, "
            f"{len(self.by_project_json)} through PyPI's project JSON (latest release = pin), "
            f"{len(self.unaudited) + len(self.accepted_gaps)} not audited ({len(self.accepted_gaps)} accepted)"
        ]
        for finding in self.findings:
            state = f"accepted: {finding.accepted}" if finding.accepted else "OPEN"
            fixed = ", ".join(finding.fixed_in) or "no fix"
            lines.append(
                f"  {finding.package}=={finding.version} {finding.advisory} ({fixed}; {finding.source}) - {state}"
            )
        lines += [f"  NOT AUDITED {name}=={self.pins[name]}: {why}" for name, why in self.unaudited.items()]
        lines += [
            f"  not audited here {name}=={self.pins[name]} - accepted: {why}"
            for name, why in self.accepted_gaps.items()
        ]
        lines += [
            f"  STALE {advisory} in {ACCEPTED.name}: no runtime package has it any more" for advisory in self.stale
        ]
        lines.append("audit passed" if self.passed else "audit FAILED")
        return "\n".join(lines)


def run_pip_audit(requirements: Path, python: str = sys.executable) -> dict[str, Any]:
    """pip-audit's JSON report of the pinned requirements (exit code 1 only means it found something)."""
    with tempfile.TemporaryDirectory(prefix="sfls-audit-") as tmp:
        out = Path(tmp) / "audit.json"
        command = [python, "-m", "pip_audit", "--no-deps", "--disable-pip", "--requirement", str(requirements)]
        command += ["--vulnerability-service", "pypi", "--progress-spinner", "off", "--format", "json"]
        command += ["--output", str(out), "--timeout", str(TIMEOUT)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
        if result.returncode not in (0, 1) or not out.exists():
            missing = "No module named pip_audit" in result.stderr
            hint = " (pip-audit is missing: run `make install`, it comes with the dev extra)" if missing else ""
            raise RuntimeError(f"pip-audit failed with exit code {result.returncode}{hint}:\n{result.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return report


def project_json(session: requests.Session, name: str, version: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The advisories of `name==version` from PyPI's project JSON, or None and why they are unknown."""
    try:
        response = session.get(f"{PYPI_JSON}/{name}/json", timeout=TIMEOUT)
    except requests.RequestException as exc:
        return None, f"PyPI did not answer: {exc}"
    if response.status_code != 200:
        return None, f"PyPI answered {response.status_code} for {name}"
    document = response.json()
    latest = document.get("info", {}).get("version")
    if latest != version:
        return None, f"pip-audit could not look up {version} and PyPI's project JSON only covers the latest ({latest})"
    return [v for v in document.get("vulnerabilities") or [] if not v.get("withdrawn")], ""


def audit(
    root: Path = ROOT, python: str = sys.executable, accepted_file: Path = ACCEPTED, pins: dict[str, str] | None = None
) -> Audit:
    """Audit `pins` (by default the runtime set of `root`) with pip-audit and PyPI, against the accepted list."""
    accepted = load_accepted(accepted_file)
    result = Audit(pins=pins if pins is not None else runtime_set(root, python))
    with tempfile.TemporaryDirectory(prefix="sfls-audit-") as tmp:
        requirements = Path(tmp) / "runtime-requirements.txt"
        requirements.write_text("".join(f"{n}=={v}\n" for n, v in result.pins.items()), encoding="utf-8")
        report = run_pip_audit(requirements, python)
    found: list[tuple[str, str, dict[str, Any], str]] = []
    skipped: list[str] = []
    for dependency in report.get("dependencies", []):
        name = canonical(dependency["name"])
        if "skip_reason" in dependency:
            skipped.append(name)
            continue
        result.by_pip_audit.append(name)
        found += [(name, dependency["version"], v, "pip-audit") for v in dependency.get("vulns", [])]
    with requests.Session() as session:
        for name in skipped:
            advisories, why = project_json(session, name, result.pins[name])
            if advisories is None:
                gap = accepted.get(f"{GAP}{name}=={result.pins[name]}")
                if gap is None:
                    result.unaudited[name] = why
                else:
                    result.accepted_gaps[name] = gap
                continue
            result.by_project_json.append(name)
            found += [(name, result.pins[name], v, "PyPI project JSON") for v in advisories]
    for name, version, vuln, source in found:
        advisory = vuln["id"]
        aliases = tuple(vuln.get("aliases") or ())
        fixed = tuple(vuln.get("fix_versions") or vuln.get("fixed_in") or ())
        reason = next((accepted[i] for i in (advisory, *aliases) if i in accepted), None)
        result.findings.append(Finding(name, version, advisory, aliases, fixed, source, reason))
    seen = set().union(*(f.ids() for f in result.findings)) if result.findings else set()
    pinned = {f"{GAP}{name}=={version}" for name, version in result.pins.items()}
    result.stale = sorted(a for a in accepted if a not in (pinned if a.startswith(GAP) else seen))
    reported = {*result.by_pip_audit, *result.by_project_json, *result.unaudited, *result.accepted_gaps}
    missing = set(result.pins) - reported
    for name in sorted(missing):
        result.unaudited[name] = "pip-audit did not report it"
    return result


def main() -> int:
    result = audit()
    sys.stdout.write(result.summary() + "\n")
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
