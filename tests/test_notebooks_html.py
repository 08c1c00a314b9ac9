"""Every notebook converts to HTML offline with `jupyter nbconvert --to html` (no execution), keeping
its stored pictures: a workshop can hand out the rendered course without running anything."""

import subprocess
import sys

import nbformat
from helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_nbconvert_html_of_every_notebook(tmp_path):
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(tmp_path),
                    *map(str, NOTEBOOKS)], check=True, capture_output=True, timeout=300,
                   env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert len(NOTEBOOKS) >= 13
    for path in NOTEBOOKS:
        html = (tmp_path / path.with_suffix(".html").name).read_text(encoding="utf-8")
        nb = nbformat.read(path, as_version=4)
        title = nb.cells[1].source.splitlines()[0].lstrip("# ").split(" ·")[0]  # "07"
        pictures = sum("image/png" in out.get("data", {}) for cell in nb.cells
                       for out in cell.get("outputs", []))
        assert html.startswith("<!DOCTYPE html>"), path.name
        assert f"<h1 id=\"{title}" in html, path.name
        assert html.count("src=\"data:image/png;base64,") == pictures, path.name  # inlined
