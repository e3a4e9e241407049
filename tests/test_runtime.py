"""Process-level settings: numba's compiled code is kept on disk, so the next process loads it instead of compiling."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A package whose jitted function, like umap-learn's, is declared without numba's `cache=True`.
PACKAGE = """
import numba

@numba.njit
def total(values):
    result = 0.0
    for value in values:
        result += value
    return result
"""

CALL = """
import json, sys
import numpy as np
from core.runtime import cache_jit_functions, use_numba_cache

use_numba_cache()
import jitpkg

count = cache_jit_functions(("jitpkg",))
value = jitpkg.total(np.arange(4.0))
print(json.dumps({"count": count, "value": value, "hits": sum(jitpkg.total.stats.cache_hits.values())}))
"""


def _fresh_process(tmp_path: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-c", CALL], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_functions_declared_without_cache_compile_once_per_machine_not_once_per_process(tmp_path):
    (tmp_path / "jitpkg").mkdir()
    (tmp_path / "jitpkg" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    first, second = _fresh_process(tmp_path), _fresh_process(tmp_path)
    assert first == {"count": 1, "value": 6.0, "hits": 0}  # compiled, and written to the cache folder
    assert second == {"count": 1, "value": 6.0, "hits": 1}  # loaded from it
