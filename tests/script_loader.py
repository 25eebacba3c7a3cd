"""Imports ``scripts/<name>.py`` as modules for tests, once per process.

Scripts define absl flags at import time (``--config``, ``--workdir``, ...).
Two scripts with a flag of the same name, or one script imported twice (as
several test files in one pytest-xdist worker do), would raise
``DuplicateFlagError``. Tests call the scripts' functions, never their
flags, so a script's flags simply replace earlier ones of the same name.
"""

import pathlib
import re

from absl import flags

from lr_meta import config as config_lib

_SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"
_FLAG_NAME = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"")
_LOADED = {}


def load_script(name: str):
  if name not in _LOADED:
    path = _SCRIPTS / f"{name}.py"
    for flag in _FLAG_NAME.findall(path.read_text()):
      if flag in flags.FLAGS:
        delattr(flags.FLAGS, flag)
    _LOADED[name] = config_lib.load_module(path)
  return _LOADED[name]
