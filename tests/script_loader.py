"""Imports ``scripts/<name>.py`` as modules for tests, once per process.

Scripts define absl flags at import time (``--config``, ``--workdir``, ...).
Two scripts with a flag of the same name, or one script imported twice (as
several test files in one pytest-xdist worker do), would raise
``DuplicateFlagError``. Tests call the scripts' functions, never their
flags, so a script's flags simply replace earlier ones of the same name.
"""

import importlib.util
import pathlib
import re
import sys

from absl import flags

_SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"
_FLAG_NAME = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"")


def load_script(name: str):
  key = f"lr_meta_script_{name}"
  if key in sys.modules:
    return sys.modules[key]
  path = _SCRIPTS / f"{name}.py"
  for flag in _FLAG_NAME.findall(path.read_text()):
    if flag in flags.FLAGS:
      delattr(flags.FLAGS, flag)
  spec = importlib.util.spec_from_file_location(key, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[key] = module
  try:
    spec.loader.exec_module(module)
  except Exception:
    del sys.modules[key]
    raise
  return module
