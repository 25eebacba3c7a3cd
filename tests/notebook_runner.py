"""Runs the notebooks as a user does: from notebooks/, the installed package.

The kernel is a fresh process started in ``notebooks/`` (Jupyter's default
working directory) with no ``PYTHONPATH`` pointing at the repository, so a
notebook that imports ``configs`` or ``scripts`` fails here as it would for
a user; configs are loaded by path (``lr_meta.config``).

``lr_meta`` is what ``pip install`` put on the path when that is this
checkout (a clone with ``pip install -e .``). When the installed package is
another checkout (a git worktree next to the main one), a copy of this
checkout's ``lr_meta/`` directory alone, as a non-editable install places
it, is put first on the kernel's path: still only the package, never the
repository root.

Values come back as data, not as printed text: after the notebook's cells,
one extra cell evaluates a Python expression in the kernel and prints it as
JSON (``execute(..., query=...)``).

Saving outputs (the notebooks are committed executed, on small settings)::

  python tests/notebook_runner.py notebooks/optax_quickstart.ipynb STEPS=100
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Mapping, Optional, Tuple

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
_MARKER = "__lr_meta_notebook_values__"
_TIMEOUT_S = 900


def _clean_env() -> dict:
  env = {k: v for k, v in os.environ.items()
         if k != "PYTHONPATH" and not k.startswith("LR_META_NOTEBOOK_")}
  env.pop("MPLBACKEND", None)    # the kernel's inline backend, as in Jupyter
  return env


def _installed_package_dir(env: Mapping[str, str]) -> pathlib.Path:
  """Where ``import lr_meta`` resolves in a fresh interpreter in notebooks/."""
  out = subprocess.run(
      [sys.executable, "-c",
       "import lr_meta, os; print(os.path.dirname(os.path.abspath("
       "lr_meta.__file__)))"],
      cwd=NOTEBOOKS, env=dict(env), capture_output=True, text=True,
      check=False)
  if out.returncode:
    raise RuntimeError("lr_meta is not installed (run `pip install -e "
                       f"'.[dev]'` in {REPO}):\n{out.stderr}")
  return pathlib.Path(out.stdout.strip())


_PACKAGE_COPY = {}


def kernel_env(**settings: Any) -> dict:
  """The kernel's environment: no repository on the path (module docstring).

  Args:
    **settings: ``LR_META_NOTEBOOK_<NAME>`` values (the notebooks' sizes).
  """
  env = _clean_env()
  if _installed_package_dir(env) != REPO / "lr_meta":
    if "dir" not in _PACKAGE_COPY:
      site = pathlib.Path(tempfile.mkdtemp(prefix="lr_meta_site_"))
      shutil.copytree(REPO / "lr_meta", site / "lr_meta",
                      ignore=shutil.ignore_patterns("__pycache__"))
      _PACKAGE_COPY["dir"] = site
    env["PYTHONPATH"] = str(_PACKAGE_COPY["dir"])
  for name, value in settings.items():
    env[f"LR_META_NOTEBOOK_{name.upper()}"] = str(value)
  return env


def execute(name: str, query: Optional[str] = None,
            **settings: Any) -> Tuple[Any, Any]:
  """Executes ``notebooks/<name>`` top to bottom in a fresh kernel.

  Args:
    name: the notebook's file name.
    query: a Python expression evaluated in the kernel after the last cell;
      its value (JSON-serialisable) is returned.
    **settings: ``LR_META_NOTEBOOK_*`` sizes (see ``kernel_env``).

  Returns:
    ``(executed notebook, value of query or None)``; the notebook holds the
    outputs of its own cells only.
  """
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  num_cells = len(notebook.cells)
  if query is not None:
    notebook.cells.append(nbformat.v4.new_code_cell(
        f"import json as _json\nprint({_MARKER!r} + _json.dumps({query}))"))
  client = nbclient.NotebookClient(
      notebook, kernel_name="python3", timeout=_TIMEOUT_S,
      resources={"metadata": {"path": str(NOTEBOOKS)}})
  client.execute(env=kernel_env(**settings), cwd=str(NOTEBOOKS))
  value = None
  if query is not None:
    text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    value = json.loads(text.split(_MARKER, 1)[1])
    notebook.cells = notebook.cells[:num_cells]
  return notebook, value


def main(argv):
  """``notebook_runner.py PATH [NAME=VALUE ...]``: executes and saves."""
  import nbformat  # pylint: disable=g-import-not-at-top
  if len(argv) < 2:
    raise SystemExit(__doc__)
  path = pathlib.Path(argv[1]).resolve()
  settings = dict(a.split("=", 1) for a in argv[2:])
  notebook, _ = execute(path.name, **settings)
  nbformat.write(notebook, path)
  print(f"executed and saved {path}")


if __name__ == "__main__":
  main(sys.argv)
