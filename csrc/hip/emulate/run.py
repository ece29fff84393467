"""Runs csrc/hip's kernels on the CPU against paddlellm/ops/reference.py, for machines without a GPU.

    python csrc/hip/emulate/run.py      # with the project's venv (Paddle, numpy, ml_dtypes); g++ >= 11

The real .hip sources are compiled by g++ with this directory's stand-in HIP headers (hip/hip_runtime.h: one
OS thread per GPU thread, warpSize a variable) and every launcher is run at warp size 64 (gfx9) and 32
(NVIDIA, RDNA wave32), checking results with SPEC.md's tolerances, the caches bit for bit, and the plan's
error statuses. It checks the kernels' logic (indexing, masks, online softmax, reductions, barriers, both
warp sizes); not the GPU compilers' code, timing, or the Paddle bindings. ~1 minute on 2 cores.
"""
import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np
import paddle

HERE = Path(__file__).resolve().parent
SRC = HERE.parent
sys.path.insert(0, str(SRC.parents[1]))
from paddlellm.ops import reference as R  # noqa: E402

DTYPES = {"float32": (0, np.float32), "bfloat16": (1, ml_dtypes.bfloat16), "float16": (2, np.float16)}
V, L, I, F = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
BATCH = [V, V, V, L, L, L, L, L, L, L]
rng = np.random.default_rng(0)
failures = []


def build(tmp):
    flags = ["g++", "-std=c++20", "-O1", "-fPIC", "-ffp-contract=off", "-Wno-unknown-pragmas", "-I", str(HERE),
             "-I", str(SRC)]
    objs = []
    for src in sorted(SRC.glob("*.hip")) + [HERE / "driver.cc"]:  # (generation.hip includes ../cpu/exp_nonpositive.h)
        obj = Path(tmp) / (src.stem + ".o")
        subprocess.run(flags + ["-x", "c++", "-c", str(src), "-o", str(obj)], check=True)
        objs.append(str(obj))
    lib = Path(tmp) / "libemulated.so"
    subprocess.run(["g++", "-shared", "-o", str(lib), *objs, "-lpthread"], check=True)
    lib = ctypes.CDLL(str(lib))
    lib.emu_rms_norm.argtypes = [V, V, V, I, V, V, L, L, F]
    lib.emu_rotary.argtypes = [V, V, V, V, L, L, L, L, I]
    lib.emu_swiglu.argtypes = [V, V, L, L]
    lib.emu_weight_only_linear.argtypes = [V, V, V, V, V, L, L, L, L]
    lib.emu_plan.argtypes = BATCH + [V]
    lib.emu_write.argtypes = BATCH + [V, V, I, V, I]
    lib.emu_attention.argtypes = BATCH + [V, V, L, V, V, I, V]
    lib.emu_token_penalty.argtypes = [V, V, L, V, V, V, V, V, V, L, V, L, L]
    lib.emu_argmax.argtypes = [V, L, L, V]
    lib.emu_top_p_sampling.argtypes = [V, V, V, V, V, V, L, L, V]
    lib.emu_stop_flags.argtypes = [V, V, L, V, V, V, V, L]
    return lib


def ptr(a):
    return None if a is None else a.ctypes.data_as(V)


def report(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def tensor(a, dtype="float32"):
    """A paddle tensor of dtype from a numpy array (bfloat16/float16 via float32, which holds them exactly)."""
    t = paddle.to_tensor(np.asarray(a, np.float32) if a.dtype != np.int32 else a)
    return t.astype(dtype) if dtype != "float32" else t


def as_numpy(t, dtype):
    return t.astype("float32").numpy().astype(DTYPES[dtype][1])


def max_rel(out, ref):
    return float(np.max(np.abs(out - ref) / np.maximum(np.abs(ref), 1e-30)))


def check_norms(lib, tag):
    for H in (1, 37, 576):
        for wd, (code, np_dtype) in DTYPES.items():
            x, res = rng.standard_normal((2, 5, H), dtype=np.float32)
            w = rng.standard_normal(H).astype(np_dtype)
            out, rout = np.empty_like(x), np.empty_like(x)
            assert lib.emu_rms_norm(ptr(x), None, ptr(w), code, ptr(out), None, 5, H, 1e-6) == 0
            rel = max_rel(out, R.rms_norm_ref(tensor(x), tensor(w, wd), 1e-6).numpy())
            report(f"{tag} rms_norm H={H} weight={wd}", rel <= 2e-6, f"rel {rel:.1e}")
            assert lib.emu_rms_norm(ptr(x), ptr(res), ptr(w), code, ptr(out), ptr(rout), 5, H, 1e-6) == 0
            ref, rref = R.fused_add_rms_norm_ref(tensor(x), tensor(res), tensor(w, wd), 1e-6)
            rel, exact = max_rel(out, ref.numpy()), np.array_equal(rout, rref.numpy())
            report(f"{tag} fused_add_rms_norm H={H} weight={wd}", rel <= 2e-6 and exact,
                   f"rel {rel:.1e}, residual_out exact {exact}")


def check_rotary(lib, tag):
    for D in (2, 10, 64, 128):
        for interleaved in (False, True):
            T, hq, hk = 7, 4, 2
            q = rng.standard_normal((T, hq, D), dtype=np.float32)
            k = rng.standard_normal((T, hk, D), dtype=np.float32)
            pos = rng.integers(0, 8192, T).astype(np.int32)
            inv = (1.0 / 10000 ** (np.arange(0, D, 2) / D)).astype(np.float32)
            rq, rk = R.rotary_embedding_ref(tensor(q), tensor(k), tensor(pos), tensor(inv), interleaved)
            assert lib.emu_rotary(ptr(q), ptr(k), ptr(pos), ptr(inv), T, hq, hk, D, int(interleaved)) == 0
            excess = max(float(np.max(np.abs(a - r.numpy()) - 1e-6 * np.abs(r.numpy()))) for a, r in ((q, rq), (k, rk)))
            report(f"{tag} rotary D={D} interleaved={interleaved}", excess <= 1e-6,
                   f"|err| - 1e-6 |ref| = {excess:.1e} (<= 1e-6)")


def check_swiglu(lib, tag):
    x = rng.standard_normal((3, 100), dtype=np.float32) * 4
    x[0, 0], x[0, 50], x[1, 1], x[2, 2], x[2, 3] = 100.0, 3.0, -100.0, np.nan, 90.0
    out = np.empty((3, 50), np.float32)
    assert lib.emu_swiglu(ptr(x), ptr(out), 3, 50) == 0
    ref = R.swiglu_ref(tensor(x)).numpy()
    m = np.abs(x[:, :50]) <= 86
    rel = max_rel(out[m], ref[m])
    special = bool(np.isnan(out[2, 2])) and out[0, 0] == np.float32(100.0) * x[0, 50]
    report(f"{tag} swiglu", rel <= 1e-6 and special, f"rel {rel:.1e}, NaN and gate > 86 cases {special}")


def check_weight_only_linear(lib, tag):
    """out = x @ (q * scale + offset), scale/offset rows repeated over their group of K / G rows, against float64
    with SPEC's "matmul" tolerance: rtol 1e-5, atol 1e-7 * K^1.5 + 1e-6."""
    for M, K, N, G, with_offset in ((1, 576, 960, 1, False), (12, 576, 192, 18, False), (5, 64, 33, 2, True),
                                    (0, 32, 8, 1, False), (3, 1, 100, 1, False), (25, 96, 70, 3, True),
                                    (7, 64, 31, 1, False), (2, 600, 65, 4, True), (9, 300, 130, 1, True),
                                    (4, 0, 5, 1, False)):
        x = rng.standard_normal((M, K), dtype=np.float32)
        if with_offset:  # int4 values one a byte, with per-group min offsets
            q = rng.integers(0, 16, (K, N)).astype(np.int8)
            scale = (rng.random((G, N)) * 0.02 + 1e-3).astype(np.float32)
            offset = (-8 * scale * (0.5 + rng.random((G, N)))).astype(np.float32)
        else:  # int8 [-127, 127], per channel ([N], G = 1) or per group
            q = rng.integers(-127, 128, (K, N)).astype(np.int8)
            scale = (rng.random((G, N)) * 0.002 + 1e-4).astype(np.float32)
            offset = None
        if G == 1 and not with_offset:
            scale = scale.reshape(N)  # the [N] form
        w = q.astype(np.float64) * np.repeat(scale.reshape(G, N).astype(np.float64), K // G, axis=0)
        if offset is not None:
            w += np.repeat(offset.astype(np.float64), K // G, axis=0)
        ref = x.astype(np.float64) @ w
        out = np.full((M, N), np.nan, np.float32)
        assert lib.emu_weight_only_linear(ptr(x), ptr(q), ptr(scale), ptr(offset), ptr(out), M, K, N, G) == 0
        excess = float(np.max(np.abs(out - ref) - 1e-5 * np.abs(ref), initial=-np.inf))
        atol = 1e-7 * K ** 1.5 + 1e-6
        finite = bool(np.all(np.isfinite(out)))
        report(f"{tag} weight_only_linear M={M} K={K} N={N} G={G} offset={with_offset}", finite and excess <= atol,
               f"|err| - 1e-5 |ref| = {excess:.1e} (<= {atol:.1e})")


def paged(lib, tag, lens, past, kv_heads, group, block_size, D, cache_dt, src_dt, spoil=None, status=0):
    """write_cache_kv then block_attention on a random block layout; spoil(tables, lens, past, T) breaks the
    batch, and status is then the plan's expected code (no cache change, NaN attention)."""
    S = len(lens)
    lens, past = np.array(lens, np.int32), np.array(past, np.int32)
    T = int(lens.sum())
    need = [-(-(int(p) + int(n)) // block_size) for n, p in zip(lens, past)]
    max_blocks, num_blocks = max(need) + 1, sum(need) + 3
    perm, tables, o = rng.permutation(num_blocks).astype(np.int32), np.full((S, max(need) + 1), -1, np.int32), 0
    for s in range(S):
        tables[s, :need[s]] = perm[o:o + need[s]]
        o += need[s]
    if spoil:
        tables, lens, past, T = spoil(tables.copy(), lens.copy(), past.copy(), T)
    H, cdt, sdt = kv_heads * group, DTYPES[cache_dt], DTYPES[src_dt]
    kc, vc = (rng.standard_normal((num_blocks, kv_heads, block_size, D)).astype(cdt[1]) for _ in range(2))
    key, value = (rng.standard_normal((T, kv_heads, D)).astype(sdt[1]) for _ in range(2))
    q = rng.standard_normal((T, H, D), dtype=np.float32)
    kc0, vc0 = kc.copy(), vc.copy()
    ws = np.full(4 + S + 1 + T, -7, np.int32)
    args = (ptr(tables), ptr(lens), ptr(past), T, S, max_blocks, num_blocks, kv_heads, block_size, D)
    out = np.empty((T, H, D), np.float32)
    assert lib.emu_plan(*args, ptr(ws)) == 0
    assert lib.emu_write(*args, ptr(ws), ptr(key), sdt[0], ptr(kc), cdt[0]) == 0
    assert lib.emu_write(*args, ptr(ws), ptr(value), sdt[0], ptr(vc), cdt[0]) == 0
    assert lib.emu_attention(*args, ptr(ws), ptr(q), H, ptr(kc), ptr(vc), cdt[0], ptr(out)) == 0
    name = (f"{tag} paged S={S} T={T} kv_heads={kv_heads} group={group} block_size={block_size} head_dim={D} "
            f"cache={cache_dt} key/value={src_dt}")
    same = lambda a, b: np.array_equal(a.view(np.uint8), b.view(np.uint8))  # noqa: E731
    if status:
        ok = ws[0] == status and same(kc, kc0) and same(vc, vc0) and bool(np.all(np.isnan(out)))
        report(name + f" bad batch (status {status})", ok, f"status {list(ws[:4])}, caches untouched, NaN out")
        return
    cu = np.concatenate([[0], np.cumsum(lens)])
    plan_ok = ws[0] == 0 and np.array_equal(ws[4:5 + S], cu) and np.array_equal(ws[5 + S:], np.repeat(np.arange(S), lens))
    rk, rv = R.write_cache_kv_ref(tensor(key, src_dt), tensor(value, src_dt), tensor(kc0, cache_dt),
                                  tensor(vc0, cache_dt), tensor(tables), tensor(lens), tensor(past))
    write_ok = same(kc, as_numpy(rk, cache_dt)) and same(vc, as_numpy(rv, cache_dt))
    ref = R.block_attention_ref(tensor(q), tensor(kc, cache_dt), tensor(vc, cache_dt), tensor(tables), tensor(lens),
                                tensor(past)).numpy()
    err = float(np.max(np.abs(out - ref)))
    report(name, plan_ok and write_ok and err <= 2e-5,
           f"plan {plan_ok}, caches bit-exact {write_ok}, attention max abs err {err:.1e} (<= 2e-5)")


def check_paged(lib, tag):
    for cache_dt, src_dt in (("float32", "float32"), ("bfloat16", "float32"), ("bfloat16", "bfloat16"),
                             ("float16", "float32"), ("float16", "float16")):
        paged(lib, tag, [3, 0, 1, 5], [2, 4, 7, 0], 2, 3, 3, 5, cache_dt, src_dt)  # idle slot, odd sizes
    paged(lib, tag, [1, 2], [150, 0], 1, 16, 16, 64, "float32", "float32")  # 3 chunks; 16 heads = 2 blocks of 8
    paged(lib, tag, [1, 4], [70, 60], 3, 9, 7, 33, "bfloat16", "float32")  # 9 heads = 5 + 4
    paged(lib, tag, [2], [0], 1, 1, 1, 1, "float32", "float32")  # block_size 1, head_dim 1
    paged(lib, tag, [1], [0], 1, 2, 4, 130, "float32", "float32")
    lens = [0] * 300
    lens[3], lens[255], lens[256], lens[299] = 2, 1, 3, 1  # the plan's scan over two chunks of 256
    paged(lib, tag, lens, [i % 5 for i in range(300)], 1, 2, 4, 8, "float32", "float32")

    def bad_block(t, n, p, T):
        t[1, 0] = 999
        return t, n, p, T

    def beyond_table(t, n, p, T):
        p[0] = 100
        return t, n, p, T

    def negative(t, n, p, T):
        p[1] = -1
        return t, n, p, T

    def token_count(t, n, p, T):
        return t, n, p, T + 1

    for spoil, status in ((negative, 1), (beyond_table, 2), (bad_block, 3), (token_count, 4)):
        paged(lib, tag, [2, 3], [1, 4], 1, 2, 4, 8, "float32", "float32", spoil, status)


def run_generation_op(lib, name, inputs):
    """The emulated kernel of generation op `name` on the spec's inputs (numpy arrays): its one output."""
    a = [np.ascontiguousarray(t.numpy()) for t in inputs]
    if name == "token_penalty":
        logits, pre_ids, penalty, frequency, presence, min_len, cur_len, eos = a
        out = np.empty_like(logits)
        code = lib.emu_token_penalty(ptr(logits), ptr(pre_ids), pre_ids.shape[1], ptr(penalty), ptr(frequency),
                                     ptr(presence), ptr(min_len), ptr(cur_len), ptr(eos), len(eos), ptr(out),
                                     *logits.shape)
    elif name == "argmax":
        out = np.empty(a[0].shape[0], np.int64)
        code = lib.emu_argmax(ptr(a[0]), *a[0].shape, ptr(out))
    elif name == "top_p_sampling":
        logits, temperature, top_k, top_p, uniform = a
        out, weights = np.empty(logits.shape[0], np.int64), np.empty(logits.shape, np.float64)
        code = lib.emu_top_p_sampling(ptr(logits), ptr(temperature), ptr(top_k), ptr(top_p), ptr(uniform),
                                      ptr(weights), *logits.shape, ptr(out))
    else:
        next_tokens, eos, cur_len, max_len, before = a
        out = np.empty(len(next_tokens), np.bool_)
        code = lib.emu_stop_flags(ptr(next_tokens), ptr(eos), len(eos), ptr(cur_len), ptr(max_len), ptr(before),
                                  ptr(out), len(next_tokens))
    assert code == 0
    return out


def check_generation(lib, tag):
    """Every case of the spec's table (exact ops: the reference's ids and logits bit for bit)."""
    from paddlellm.ops.spec import BY_NAME, case_label

    for name in ("token_penalty", "argmax", "top_p_sampling", "stop_flags"):
        op = BY_NAME[name]
        for number, case in enumerate(op.cases):
            inputs, attrs = op.make(case, np.random.RandomState(number))
            out = run_generation_op(lib, name, inputs)
            ref = getattr(R, f"{name}_ref")(*inputs, *attrs).numpy()
            same = out.shape == ref.shape and np.array_equal(out.view(np.uint8), ref.view(np.uint8))
            report(f"{tag} {name} {case_label(case)}", same, "bit-exact" if same else f"{out} vs {ref}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        lib = build(tmp)
        for warp in (64, 32):
            lib.emu_set_warp_size(warp)
            tag = f"warp {warp}:"
            check_norms(lib, tag)
            check_rotary(lib, tag)
            check_swiglu(lib, tag)
            check_weight_only_linear(lib, tag)
            check_paged(lib, tag)
            check_generation(lib, tag)
    print(f"FAILED {len(failures)}: {', '.join(failures)}" if failures else "all emulated checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
