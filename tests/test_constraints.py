"""constraints.txt pins what pyproject.toml allows, and what the suite runs on is what it pins."""

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # one exact pin per line, nothing looser
        assert specifier.operator == "==", line
        pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    return [Requirement(line) for line in lines]


def test_every_direct_dependency_is_pinned_within_its_range():
    pins = _pins()
    for requirement in _direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run `make lock`"
        assert pins[name] in requirement.specifier, (
            f"constraints.txt pins {requirement.name} {pins[name]}, outside pyproject.toml's {requirement.specifier}: "
            "run `make lock`"
        )


def test_the_suite_runs_on_the_pinned_versions():
    installed = {canonicalize_name(dist.metadata["Name"]): Version(dist.version) for dist in metadata.distributions()}
    stale = {
        name: (str(installed.get(name)), str(version))
        for name, version in _pins().items()
        if installed.get(name) != version
    }
    assert not stale, f"installed ≠ pinned (installed, pinned): {stale}; run `make install`"
