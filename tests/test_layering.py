"""The package's layering, checked on the source and on a fresh interpreter.

Layers, lowest first (docs/DESIGN.md, Layers): bottom utilities -> tasks,
features -> policies, the rule language (lr_meta.rules) -> optax, the NOS
controller -> envs, baselines -> agents, nos.search -> experiment /
evaluation / benchmark / run directory.
A module may import modules of its own layer entry and of strictly lower
rank; siblings of equal rank (tasks and features) stay independent.
"""

import ast
import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lr_meta"

# (layer, rank, module prefixes). The longest matching prefix decides; a
# module no prefix matches is application code (the top rank).
LAYERS = (
    ("package root", 0, ("lr_meta",)),
    ("lazy exports", 0, ("lr_meta._lazy",)),
    ("runner", 0, ("lr_meta.runner",)),
    ("argument checks", 0, ("lr_meta.checks",)),
    ("atomic files", 0, ("lr_meta.files",)),
    ("seeds", 0, ("lr_meta.seeds",)),
    ("plotting", 0, ("lr_meta.plotting",)),
    ("progress", 0, ("lr_meta.progress",)),
    ("distributed", 0, ("lr_meta.distributed",)),
    ("tasks", 1, ("lr_meta.tasks",)),
    ("features", 1, ("lr_meta.features",)),
    ("rule language", 2, ("lr_meta.rules",)),
    ("NOS controller", 3, ("lr_meta.nos",)),
    ("policies", 2, ("lr_meta.policies",)),
    ("optax", 3, ("lr_meta.optax",)),
    ("envs", 4, ("lr_meta.envs",)),
    ("baselines", 4, ("lr_meta.baselines",)),
    ("agents", 5, ("lr_meta.agents",)),
    ("NOS search", 5, ("lr_meta.nos.search",)),
)
APPLICATION = ("application", 6)
# Outside the package: never imported from it.
FORBIDDEN_TOP_LEVEL = ("scripts", "configs", "tests", "benchmarks")
# What ``import <module>`` must not load (third-party training stack and the
# package's training layers).
TRAINING_STACK = ("tensorflow_probability", "distrax", "rlax", "flashbax",
                  "orbax", "scipy", "tensorboardX")
HEAVY_LR_META = ("lr_meta.agents", "lr_meta.envs", "lr_meta.nos.search",
                 "lr_meta.experiment", "lr_meta.evaluation")


def _matches(module: str, prefix: str) -> bool:
  if prefix == "lr_meta":   # the package root: only itself
    return module == prefix
  return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> tuple[str, int]:
  best = None
  for name, rank, prefixes in LAYERS:
    for prefix in prefixes:
      if _matches(module, prefix) and (best is None or
                                       len(prefix) > len(best[0])):
        best = (prefix, name, rank)
  return (best[1], best[2]) if best else APPLICATION


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  """The absolute module of a (possibly relative) ``from ... import``."""
  if node.level == 0:
    return node.module or ""
  base = module.split(".")
  if not is_package:
    base = base[:-1]
  base = base[:len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
  """``(line, module)`` of every import in the file, nested ones included.

  ``from a.b import c`` counts as importing ``a.b.c`` when that is a module
  of the package, else ``a.b``.
  """
  module = _module_name(path)
  is_package = path.name == "__init__.py"
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = _resolve(module, is_package, node)
      for a in node.names:
        sub = f"{base}.{a.name}"
        rel = pathlib.Path(*sub.split("."))
        is_module = ((REPO / rel).with_suffix(".py").is_file()
                     or (REPO / rel / "__init__.py").is_file())
        found.append((node.lineno, sub if is_module else base))
  return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_layer_table_sees_the_package():
  names = {_module_name(p) for p in MODULES}
  assert {"lr_meta.optax", "lr_meta.features.observation",
          "lr_meta.nos.search", "lr_meta.runner"} <= names
  assert layer_of("lr_meta.nos.search") == ("NOS search", 5)
  assert layer_of("lr_meta.rules.compiler") == ("rule language", 2)
  assert layer_of("lr_meta.nos.controller") == ("NOS controller", 3)
  assert layer_of("lr_meta.features.observation") == ("features", 1)
  assert layer_of("lr_meta") == ("package root", 0)
  assert layer_of("lr_meta.experiment") == APPLICATION


@pytest.mark.parametrize("path", MODULES,
                         ids=[_module_name(p) for p in MODULES])
def test_imports_follow_the_layers(path):
  module = _module_name(path)
  layer, rank = layer_of(module)
  bad = []
  for line, imported in imports_of(path):
    top = imported.split(".")[0]
    if top in FORBIDDEN_TOP_LEVEL:
      bad.append(f"line {line}: {imported} (outside the package)")
    elif top == "lr_meta":
      other, other_rank = layer_of(imported)
      if other != layer and other_rank >= rank:
        bad.append(f"line {line}: {imported} ({other}, rank {other_rank})")
  assert not bad, (f"{module} ({layer}, rank {rank}) imports outside the "
                   f"package or a layer of equal or higher rank: {bad}")


@pytest.mark.parametrize("module", ["lr_meta.runner", "lr_meta.seeds",
                                    "lr_meta.plotting", "lr_meta.progress"])
def test_bottom_utilities_import_nothing_from_lr_meta(module):
  path = REPO / pathlib.Path(*module.split(".")).with_suffix(".py")
  assert [m for _, m in imports_of(path) if m.split(".")[0] == "lr_meta"] == []


def test_relative_imports_resolve():
  node = ast.parse("from ..features import params").body[0]
  assert _resolve("lr_meta.envs.lr_env", False, node) == "lr_meta.features"
  node = ast.parse("from . import compiler").body[0]
  assert _resolve("lr_meta.nos", True, node) == "lr_meta.nos"


_CHILD = ("import json, sys; import {module}; "
          "print(json.dumps(sorted(sys.modules)))")


@pytest.mark.parametrize("module", ["lr_meta.optax", "lr_meta.policies",
                                    "lr_meta.features", "lr_meta.rules",
                                    "lr_meta.rules.compiler",
                                    "lr_meta.nos.controller"])
def test_light_imports_load_no_training_stack(module):
  """``import lr_meta.optax`` (and what it stands on) in a fresh interpreter."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
  out = subprocess.run([sys.executable, "-c", _CHILD.format(module=module)],
                       env=env, check=True, capture_output=True, text=True)
  loaded = json.loads(out.stdout.strip().splitlines()[-1])
  assert module in loaded
  heavy = [m for m in loaded
           if m.split(".")[0] in TRAINING_STACK
           or any(m == h or m.startswith(h + ".") for h in HEAVY_LR_META)]
  assert heavy == [], f"import {module} loaded {heavy}"


@pytest.mark.parametrize("module", [
    "lr_meta", "lr_meta.runner", "lr_meta.seeds", "lr_meta.tasks",
    "lr_meta.features", "lr_meta.features.observation",
    "lr_meta.features.lr_actions", "lr_meta.policies", "lr_meta.optax",
    "lr_meta.nos", "lr_meta.rules", "lr_meta.envs", "lr_meta.envs.lr_env", "lr_meta.agents",
    "lr_meta.baselines"])
def test_public_modules_declare_what_they_export(module):
  """``__all__`` exists and every name in it resolves (lazy ones included)."""
  mod = importlib.import_module(module)
  assert mod.__all__ and len(set(mod.__all__)) == len(mod.__all__)
  missing = [name for name in mod.__all__ if not hasattr(mod, name)]
  assert missing == [], f"{module}.__all__ names missing attributes"
  assert set(mod.__all__) <= set(dir(mod))
  # A package __init__ re-exports every public name it imports.
  path = pathlib.Path(mod.__file__)
  if path.name == "__init__.py":
    imported = {a.asname or a.name
                for node in ast.parse(path.read_text()).body
                if isinstance(node, ast.ImportFrom) for a in node.names}
    unlisted = sorted(n for n in imported - set(mod.__all__)
                      if not n.startswith("_"))
    assert unlisted == [], f"{module} imports but does not export {unlisted}"
