"""A workshop installs `pip install -c constraints.txt -e '.[notebooks]'` and nothing else: every
module a notebook imports comes from the standard library, minglm4v, or a distribution named in the
core dependencies or the `notebooks` extra; and no notebook reaches into scripts/ or tests/."""

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions

import nbformat
import pytest
import tomllib
from helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@functools.cache
def _owners() -> dict[str, list[str]]:
    return packages_distributions()  # scans every installed distribution: once per session


def _allowed_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["notebooks"]}


def _imports(path) -> set[str]:
    modules = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_come_with_the_notebooks_extra(path):
    allowed, owners = _allowed_distributions(), _owners()
    for module in sorted(_imports(path) - set(sys.stdlib_module_names) - {"minglm4v"}):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        assert dists & allowed, f"{path.name} imports {module} ({dists or '?'}): not in the notebooks extra"
    sources = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    assert not re.search(r"[\"'](\.\./)?(scripts|tests)/", sources), f"{path.name} uses scripts/ or tests/"
