"""Re-execute notebooks in place with the pinned environment, dropping volatile metadata.

    .venv/bin/python tools/refresh_notebooks.py notebooks/*.ipynb

Run it after changing a notebook, the package, or a pinned version: nbval compares the stored
outputs as exact text, so they must come from the same versions CI installs.
"""

import os
import sys

import nbformat
from nbclient import NotebookClient
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same thread count as the test run (conftest.py)
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=1800, record_timing=False,
                   resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}).execute()
    CoalesceStreamsPreprocessor().preprocess(nb, {})  # one stream output per cell: stable diffs
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    nbformat.write(nb, path)
    print("refreshed", path)
