"""What an installed cocmail (a wheel, the Docker image) ships: every package of
the source tree, the migrations and the templates."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def test_every_package_is_listed_for_installation() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(ROOT).parts)
             for path in (ROOT / "cocmail").rglob("__init__.py")}
    assert found - listed == set(), "packages missing from pyproject.toml"
    assert {"cocmail.migrations", "cocmail.migrations.versions", "cocmail.templates"} <= listed
