"""Writing files so that a reader never sees half of one.

The one atomic write of the package: run directories (``lr_meta.rundir``),
controller files (``lr_meta.policies.controller.save_controller``) and the
benchmark's run cache and reports all go through ``atomic_write``.
"""

import os
from typing import Union

__all__ = ["atomic_write"]


def atomic_write(path: str, data: Union[str, bytes]):
  """Writes ``data`` (text or bytes) to ``path`` so that a reader sees the old
  file or the whole new one, never a part: ``<path>.tmp``, fsync, then a
  rename. One writer per path (the run directory's, or the benchmark
  outdir's, lock); the parent directory must exist."""
  tmp = f"{path}.tmp"
  binary = isinstance(data, bytes)
  with open(tmp, "wb" if binary else "w",
            **({} if binary else {"newline": ""})) as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
