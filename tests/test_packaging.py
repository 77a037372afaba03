"""The lock the book and CI run with lies inside the ranges Colab installs from."""
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent


def test_the_lock_satisfies_the_package_ranges():
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().split() if "==" in line)
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(spec)
        assert requirement.name in pins, f"{requirement.name} is not in the lock"
        assert requirement.specifier.contains(pins[requirement.name]), f"{spec} excludes the lock's {pins[requirement.name]}"
