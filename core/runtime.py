"""Process-level settings for compute: device choice, the CPU allocator, numba's cache. Entry points (the CLI,
the app, benches) call these; nothing sets them at import."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from pathlib import Path

from core.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
_allocator_tuned = False


def sleep_while_waiting() -> None:
    """Make OpenMP worker threads (torch's intra-op pool) sleep while they wait for work, instead of spinning.

    On an idle machine spinning costs nothing; with another CPU-bound process on the same cores, the spinning
    threads steal the time the working ones need. Measured on 2 cores with other work running: an autoencoder
    epoch took 35 s with the default policy and 1.4 s with this one (2 threads either way). OpenMP reads the policy
    once, when torch loads it: entry points call this before anything imports torch. A policy the user set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def resolve_device(name: str = "auto") -> str:
    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    import torch  # lazy: the app imports this module before its first page, which does without torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but this torch build sees no CUDA GPU")
    return name


def tune_cpu_allocator() -> None:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    A population step allocates tensors of a few MB that glibc would otherwise mmap fresh each time; the
    page faults then cost more than the arithmetic (measured: 1.8x slower steps at batch size 32).
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: the largest value glibc accepts on 64-bit
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    _allocator_tuned = True


def use_numba_cache() -> Path:
    """Point numba (under umap-learn) at a persistent, writable cache folder before umap is imported, so its JIT
    compilation is paid once per machine rather than once per process. Keeps a folder the user already set."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hyperrep" / "numba"
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only home: the temporary folder still caches within this boot
            base = Path(tempfile.gettempdir()) / "hyperrep-numba-cache"
        os.environ["NUMBA_CACHE_DIR"] = str(base)
    return Path(os.environ["NUMBA_CACHE_DIR"])


def cache_jit_functions(packages: tuple[str, ...]) -> int:
    """Turn numba's disk cache (`use_numba_cache`, called before the packages were imported) on for every jitted
    function of the imported `packages`; returns how many. Why: umap-learn declares its nearest-neighbour,
    smoothing and layout functions without `cache=True`, so with the cache folder warm they still compiled in
    every process: 7 of the 9.6 s of a fresh process's first map of the default zoo on the 2-core CPU (2.4 s once
    cached). Functions numba cannot cache (pynndescent's NN-descent, used from 4,096 points on, holds dynamic
    globals) keep compiling, with a NumbaWarning."""
    # lazy: numba comes with umap, which only computing a map imports; this module is on the app's first page
    from numba.core.dispatcher import Dispatcher

    functions = {
        value
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in packages
        for value in vars(module).values()
        if isinstance(value, Dispatcher)
    }
    for function in functions:
        function.enable_caching()
    return len(functions)
