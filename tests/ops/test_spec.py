"""Every op of the table (paddlellm/ops/spec.py) on every case and every CPU kernel variant this machine runs,
through the same check as `python -m paddlellm.ops --check`; the table against the sources; the checker itself."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddlellm import ops
from paddlellm.ops import check, reference
from paddlellm.ops.spec import BACKENDS, BY_NAME, OPS, case_label

ROOT = Path(__file__).resolve().parents[2]


def _params():
    return [pytest.param(op, backend, case, id=f"{op.name}-{backend}-{case_label(case)}")
            for op in OPS for backend in check.cpu_backends(op) for case in op.cases]


@pytest.mark.parametrize("op,backend,case", _params())
def test_kernel_matches_reference(op, backend, case):
    result = check.check_case(op, case, backend)
    assert result.ok, result.problem


def _plain_params():
    # int4 weights: the kernels multiply int8 activations where the plain path keeps them float (linear_kernel.h),
    # so the reference (test_kernel_matches_reference) is the check that applies
    return [pytest.param(op, case, id=f"{op.name}-{case_label(case)}")
            for op in OPS if op.plain and not op.inplace for case in op.cases
            if not str(case.get("w", "")).startswith("int4")]


@pytest.mark.parametrize("op,case", _plain_params())
def test_kernel_matches_the_plain_ops_it_replaces(op, case):
    """What the model computes without the op (model.py's plain path) within the op's tolerance."""
    inputs, attrs = op.make(case, np.random.RandomState(1))
    got = check._as_tuple(getattr(ops, op.name)(*inputs, *attrs))
    want = check._as_tuple(op.plain(*inputs, *attrs)())
    rtol, atol = op.tolerance(case)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w.astype("float32").numpy(), rtol=rtol, atol=atol)


def _built_ops(directory):
    """Names of the ops registered by the sources under csrc/<directory>: PD_BUILD_OP, and the generation helpers
    where a source invokes PADDLELLM_BUILD_GENERATION_OPS (csrc/cpu/generation_ops.h names them)."""
    generation = set(re.findall(r"PADDLELLM_GENERATION_OP_\(paddlellm_(\w+),",
                                (ROOT / "csrc" / "cpu" / "generation_ops.h").read_text()))
    names = set()
    for path in (ROOT / "csrc" / directory).glob("*"):
        if path.suffix in (".cc", ".cu", ".cpp"):
            text = path.read_text()
            names |= set(re.findall(r"PD_BUILD_OP\(paddlellm_(\w+)\)", text))
            if re.search(r"^PADDLELLM_BUILD_GENERATION_OPS\(", text, re.M):
                names |= generation
    return names


@pytest.mark.parametrize("backend", BACKENDS)
def test_table_lists_exactly_the_ops_each_backend_builds(backend):
    listed = {op.name for op in OPS if backend in op.backends}
    assert _built_ops(backend) == listed


def test_every_op_has_a_python_call_a_reference_and_cases():
    for op in OPS:
        assert callable(getattr(ops, op.name)) and callable(getattr(reference, f"{op.name}_ref"))
        assert op.cases and op.bench_cases and set(op.inplace) <= set(op.inputs)


def test_check_reports_a_wrong_result_and_a_non_finite_one(monkeypatch):
    op = BY_NAME["rms_norm"]
    case = next(c for c in op.cases if c["x"] == (5, 576))
    real = reference.rms_norm_ref
    monkeypatch.setattr(reference, "rms_norm_ref", lambda *a: real(*a) * 1.0001)  # 1e-4: 50x the tolerance
    result = check.check_case(op, case)
    assert not result.ok and "outside tolerance" in result.problem and result.nmse > 0
    monkeypatch.setattr(reference, "rms_norm_ref", real)
    monkeypatch.setattr(ops, "rms_norm", lambda x, w, eps: paddle.full(x.shape, float("nan")))
    result = check.check_case(op, case)
    assert not result.ok and "NaN" in result.problem


def test_check_reports_a_write_outside_an_in_place_input(monkeypatch):
    op = BY_NAME["rotary_embedding"]
    case = next(c for c in op.cases if c["t"] == 5)
    buffers, real_guarded, real_op = [], check._guarded, ops.rotary_embedding

    def recording(t):
        view, buffer = real_guarded(t)
        buffers.append(buffer)
        return view, buffer

    def overrunning(*args):  # the real kernel, then a write one row past q: an off-by-one launch
        out = real_op(*args)
        buffers[0][-1] = 0.0
        return out

    monkeypatch.setattr(check, "_guarded", recording)
    monkeypatch.setattr(ops, "rotary_embedding", overrunning)
    result = check.check_case(op, case)
    assert not result.ok and "guard" in result.problem


def test_cli_lists_checks_and_benches():
    run = lambda *a: subprocess.run([sys.executable, "-m", "paddlellm.ops", *a], capture_output=True, text=True)
    listed = run()
    assert listed.returncode == 0 and all(f"paddlellm_{op.name}" in listed.stdout for op in OPS)
    checked = run("--check", "--ops", "rms_norm,linear")
    assert checked.returncode == 0 and "OK: 0 failing" in checked.stdout
    cases = len(BY_NAME["linear"].cases)
    assert re.search(rf"paddlellm_linear\s+cpu-\w+\s+{cases}/{cases} cases ok", checked.stdout)
    benched = run("--bench", "--ops", "swiglu")
    assert benched.returncode == 0 and benched.stdout.count("| paddlellm_swiglu |") == len(BY_NAME["swiglu"].bench_cases)
    unknown = run("--check", "--ops", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown op nope")
