"""Checking and timing the op set's kernels against spec.py's table (what tests and `python -m paddlellm.ops` run).

A check runs one op on one case, as llama.cpp's test-backend-ops does: the kernel's outputs must be finite,
an input the op writes in place must be written only inside itself (it is passed as a view into a larger
buffer whose guard rows hold a sentinel), and the outputs must be within the op kind's tolerance of the
reference (float64 where it matters); the error is reported as NMSE = sum((out - ref)^2) / sum(ref^2).
"""
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import paddle

from paddlellm.ops import reference
from paddlellm.ops.spec import OpSpec, case_label

GUARD = 12345.0  # what the guard rows around an in-place input hold


@dataclass
class CheckResult:
    op: str
    case: str
    backend: str
    ok: bool
    nmse: float
    problem: str = ""  # why it failed: not finite, a guard overwritten, outside tolerance


# --check's CPU backends beyond the ISAs: the avx2 level with AVX-VNNI's int4 / a8w8 kernels (where the CPU has
# AVX-VNNI), or with them and vpdpbusd emulated in AVX2 (where it does not: the same kernel code, checked here).
AVX_VNNI_BACKENDS = {"avx2": ("avx2", "off"), "avxvnni": ("avx2", "auto"), "avxvnni-emulated": ("avx2", "emulated")}


@contextmanager
def cpu_isa(isa):
    """Force the CPU kernels' ISA (PADDLELLM_CPU_ISA; for avx2, avxvnni and avxvnni-emulated also the avx2 level's
    byte dot products, PADDLELLM_CPU_AVXVNNI) inside the block; None leaves the choice automatic."""
    settings = {}
    if isa is not None:
        level, avx_vnni = AVX_VNNI_BACKENDS.get(isa, (isa, None))
        settings = {"PADDLELLM_CPU_ISA": level, "PADDLELLM_CPU_AVXVNNI": avx_vnni}
    before = {name: os.environ.get(name) for name in settings}
    for name, value in settings.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cpu_backends(op: OpSpec):
    """The CPU kernel variants to check: one per ISA this CPU runs for ops compiled per ISA (and the AVX-VNNI
    kernels, real or emulated, for ops with int4 / a8w8 cases), else one."""
    from paddlellm import ops

    if not op.isa_kernels:
        return ["cpu"]
    isas = ops.supported_isas()
    backends = [f"cpu-{isa}" for isa in isas]
    if "avx2" in isas and any(str(case.get("w", "")).startswith(("int4", "a8w8")) for case in op.cases):
        backends.append("cpu-avxvnni" if ops.has_avx_vnni() else "cpu-avxvnni-emulated")
    return backends


def _guarded(t):
    """(view, buffer): t's values in rows 1..n of a buffer whose first and last rows hold GUARD."""
    buffer = paddle.full([t.shape[0] + 2] + list(t.shape[1:]), GUARD, dtype=t.dtype)
    buffer[1:-1] = t
    return buffer[1:-1], buffer


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _numpy(t):
    return t.astype("float32").numpy() if t.dtype in (paddle.bfloat16, paddle.float16) else t.numpy()


def check_case(op: OpSpec, case: dict, backend="cpu", seed=0) -> CheckResult:
    from paddlellm import ops

    label = case_label(case)
    inputs, attrs = op.make(case, np.random.RandomState(seed))
    expected = _as_tuple(getattr(reference, f"{op.name}_ref")(*[t if t is None else t.clone() for t in inputs],
                                                                  *attrs))  # None: an absent optional input
    buffers = []
    for i, name in enumerate(op.inputs):
        if name in op.inplace and inputs[i].shape[0] > 0:
            inputs[i], buffer = _guarded(inputs[i])
            buffers.append(buffer)
    isa = backend.split("-", 1)[1] if backend.startswith("cpu-") else None
    with cpu_isa(isa):
        outputs = _as_tuple(getattr(ops, op.name)(*inputs, *attrs))
    got = [_numpy(t) for t in outputs]
    want = [_numpy(t) for t in expected]
    diff = sum(float(np.sum((g.astype(np.float64) - w) ** 2)) for g, w in zip(got, want))
    norm = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in want)
    nmse = diff / norm if norm > 0 else diff

    def result(ok, problem=""):
        return CheckResult(op.name, label, backend, ok, nmse, problem)

    if not all(np.isfinite(g).all() for g in got):
        return result(False, "NaN or Inf in the output")
    for buffer in buffers:
        guard = _numpy(paddle.full([1], GUARD, dtype=buffer.dtype))[0]  # as the buffer's dtype stores it
        if not (_numpy(buffer)[[0, -1]] == guard).all():
            return result(False, "wrote outside an in-place input (guard rows changed)")
    if [list(g.shape) for g in got] != [list(w.shape) for w in want]:
        return result(False, f"shapes {[g.shape for g in got]} != reference {[w.shape for w in want]}")
    rtol, atol = op.tolerance(case)
    for g, w in zip(got, want):
        if not np.allclose(g, w, rtol=rtol, atol=atol):
            worst = float(np.max(np.abs(g.astype(np.float64) - w) - rtol * np.abs(w)))
            return result(False, f"outside tolerance (rtol {rtol:g}, atol {atol:g}): worst excess {worst:.3g}")
    return result(True)


def check(ops_to_check, backends=None):
    """Every case of every op on every available CPU kernel variant (or only `backends`), as CheckResults."""
    results = []
    for op in ops_to_check:
        for backend in cpu_backends(op):
            if backends and not any(backend.startswith(b) for b in backends):
                continue
            for case in op.cases:
                results.append(check_case(op, case, backend))
    return results


def time_call(fn, min_seconds=0.2, min_calls=20):
    """Median seconds of fn() over repeated calls (after a warm-up call)."""
    fn()
    samples, started = [], time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def bench(ops_to_bench):
    """(op, case label, kernel us, plain-Paddle us or None) for each op's bench cases, in dygraph."""
    from paddlellm import ops

    rows = []
    for op in ops_to_bench:
        for case in op.bench_cases:
            inputs, attrs = op.make(case, np.random.RandomState(0))
            kernel = time_call(lambda: getattr(ops, op.name)(*inputs, *attrs))
            plain = time_call(op.plain(*inputs, *attrs)) if op.plain else None
            rows.append((op.name, case_label(case), kernel * 1e6, None if plain is None else plain * 1e6))
    return rows
