"""CPU kernels of paddlellm/ops against the pure-Paddle references (SPEC.md), on every ISA path this CPU runs.

write_cache_kv must match the reference exactly; block_attention within 2e-5 (fp32 accumulation vs the
reference's float64). Shapes are small and awkward: 1-token sequences, chunks across and ending on block
boundaries, idle slots, long prefixes, GQA ratios 1/3/8, head_dim 64/40/72/20, shuffled block ids.
"""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddlellm import ops
from paddlellm.ops.reference import block_attention_ref, write_cache_kv_ref
from paddlellm.ops.spec import PAGED_CASES, paged_batch


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_FLAGS = _cpu_flags()
_ISA_NEEDS = {"scalar": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx2", "fma"}}


def _isa_params():
    """Every kernel path; the ones this CPU lacks are skipped, and their id says so."""
    params = []
    for isa, needs in _ISA_NEEDS.items():
        missing = needs - _FLAGS
        if missing:
            params.append(pytest.param(isa, id=f"{isa}-skipped-cpu-lacks-{'+'.join(sorted(missing))}",
                                       marks=pytest.mark.skip(reason=f"this CPU lacks {', '.join(sorted(missing))}")))
        else:
            params.append(pytest.param(isa, id=isa))
    return params


@pytest.fixture
def isa(request, monkeypatch):
    monkeypatch.setenv("PADDLELLM_CPU_ISA", request.param)
    assert ops.cpu_isa() == request.param  # the library takes the forced path
    return request.param


def make_batch(name_or_seqs, cache_dtype, seed=0, kv=3, group=3, d=40, bs=16):
    """A paged batch (spec.paged_batch): one of the table's cases by its sequences' name, or any sequences."""
    case = next((c for c in PAGED_CASES if c["seqs"] == name_or_seqs), None)
    case = dict(case or dict(seqs=name_or_seqs, kv=kv, group=group, d=d, bs=bs), cache=cache_dtype)
    return paged_batch(case, np.random.RandomState(seed))


def query_heads(case):
    return case["kv"] * case["group"]


def _meta(b):
    return b["block_tables"], b["seq_lens_this_time"], b["seq_lens_decoder"]


def _same(a, b):
    return np.array_equal(a.astype("float32").numpy(), b.astype("float32").numpy())


@pytest.fixture
def two_threads():
    from paddle.base import core

    before = ops.num_threads()
    core.set_num_threads(2)  # the OpenMP pool the ops share with Paddle's MKL (libiomp5)
    assert ops.num_threads() == 2
    yield
    core.set_num_threads(before)


@pytest.mark.parametrize("cache_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("isa", _isa_params(), indirect=True)
def test_two_threads_give_the_same_bits(isa, cache_dtype, two_threads):
    """Work items split across threads (and write_cache_kv's rows, on a batch big enough) change nothing."""
    b = make_batch([(100, 1), (0, 300), (7, 0), (64, 64), (200, 3)], cache_dtype, seed=3, kv=4, group=2, d=64)
    ref_k, ref_v = write_cache_kv_ref(b["key"], b["value"], b["key_cache"], b["value_cache"], *_meta(b))
    ops.write_cache_kv(b["key"], b["value"], b["key_cache"], b["value_cache"], *_meta(b))
    assert _same(b["key_cache"], ref_k) and _same(b["value_cache"], ref_v)
    out2 = ops.block_attention(b["q"], b["key_cache"], b["value_cache"], *_meta(b)).numpy()
    from paddle.base import core

    core.set_num_threads(1)
    out1 = ops.block_attention(b["q"], b["key_cache"], b["value_cache"], *_meta(b)).numpy()
    assert np.array_equal(out1, out2)
    ref = block_attention_ref(b["q"], ref_k, ref_v, *_meta(b))
    np.testing.assert_allclose(out2, ref.numpy(), rtol=0, atol=2e-5)


def test_bfloat16_key_into_bfloat16_cache_is_a_raw_copy():
    b = make_batch("block_boundaries", "bfloat16")
    key, value = b["key"].astype("bfloat16"), b["value"].astype("bfloat16")
    ref_k, ref_v = write_cache_kv_ref(key, value, b["key_cache"], b["value_cache"], *_meta(b))
    ops.write_cache_kv(key, value, b["key_cache"], b["value_cache"], *_meta(b))
    assert _same(b["key_cache"], ref_k) and _same(b["value_cache"], ref_v)


@pytest.mark.parametrize("cache_dtype", ["float32", "bfloat16"])
def test_write_cache_kv_is_in_place_in_dygraph(cache_dtype):
    b = make_batch("mixed_decode_chunks_idle", cache_dtype)
    key_cache, value_cache = b["key_cache"], b["value_cache"]
    ptrs = key_cache.data_ptr(), value_cache.data_ptr()
    before = key_cache.astype("float32").numpy().copy()
    k_out, v_out = ops.write_cache_kv(b["key"], b["value"], key_cache, value_cache, *_meta(b))
    assert (key_cache.data_ptr(), value_cache.data_ptr()) == ptrs
    assert (k_out.data_ptr(), v_out.data_ptr()) == ptrs  # the outputs alias the inputs
    assert not np.array_equal(before, key_cache.astype("float32").numpy())  # values changed
    ref_k, _ = write_cache_kv_ref(b["key"], b["value"], paddle.to_tensor(before).astype(cache_dtype),
                                  value_cache, *_meta(b))
    assert _same(key_cache, ref_k)


def test_bad_inputs_are_clear_errors():
    b = make_batch("block_boundaries", "float32")
    bad_table = b["block_tables"].clone()
    bad_table[0, 0] = -1
    with pytest.raises(Exception, match=r"block_tables\[0\]\[0\] = -1 is not a block"):
        ops.block_attention(b["q"], b["key_cache"], b["value_cache"], bad_table, *_meta(b)[1:])
    with pytest.raises(Exception, match="sums to"):
        ops.write_cache_kv(b["key"][:-1], b["value"][:-1], b["key_cache"], b["value_cache"], *_meta(b))
    q_bad = paddle.zeros([b["q"].shape[0], 4, b["q"].shape[2]])  # 4 heads over 3 kv heads
    with pytest.raises(Exception, match="not a multiple of num_kv_heads"):
        ops.block_attention(q_bad, b["key_cache"], b["value_cache"], *_meta(b))


def test_static_cache_scales_are_checked():
    """--cachekv_int8_type static's per-head scales: both or neither, an int8 cache only, positive, one per kv head."""
    b = make_batch("block_boundaries", "int8")  # 3 kv heads
    ones = paddle.ones([3], "float32")
    for k_scale, v_scale, words in [(ones, None, "key_scale and value_scale come together"),
                                    (ones, paddle.to_tensor([1.0, 0.0, 1.0]), r"value_scale\[1\] = 0 is not a positive"),
                                    (ones, paddle.ones([2], "float32"), r"value_scale must be float32 \[num_kv_heads\] \(3\)")]:
        with pytest.raises(Exception, match=words):
            ops.write_cache_kv(b["key"], b["value"], b["key_cache"], b["value_cache"], *_meta(b), k_scale, v_scale)
    f = make_batch("block_boundaries", "float32")
    with pytest.raises(Exception, match="key_scale is a static int8 cache's scale, but the cache is not int8"):
        ops.write_cache_kv(f["key"], f["value"], f["key_cache"], f["value_cache"], *_meta(f), ones, ones)


def test_avx_vnni_kernels_are_chosen_by_the_cpu_or_the_variable(monkeypatch):
    """PADDLELLM_CPU_AVXVNNI: auto takes AVX-VNNI's int4 kernels where the CPU has them (else plain AVX2's, the
    same bits as off), emulated the same kernel code with vpdpbusd in AVX2 (the same integer sums: the same bits as
    the real instruction would give); anything else is an error."""
    from paddlellm.ops.spec import _packed_weight

    rng = np.random.RandomState(0)
    x, w = paddle.to_tensor(rng.randn(3, 64).astype("float32")), _packed_weight(rng, 64, 40, "int4_g32")
    monkeypatch.setenv("PADDLELLM_CPU_ISA", "avx2")
    out = {}
    for choice in ("off", "auto", "emulated"):
        monkeypatch.setenv("PADDLELLM_CPU_AVXVNNI", choice)
        out[choice] = ops.linear(x, w, 40).numpy()
    if not ops.has_avx_vnni():
        assert np.array_equal(out["auto"], out["off"])
    np.testing.assert_allclose(out["emulated"], out["off"], rtol=1e-6, atol=1e-6)  # the same products, summed apart
    monkeypatch.setenv("PADDLELLM_CPU_AVXVNNI", "sse")
    with pytest.raises(Exception, match="PADDLELLM_CPU_AVXVNNI=sse is not one of auto, off, emulated"):
        ops.linear(x, w, 40)


def test_unknown_isa_is_an_error(monkeypatch):
    b = make_batch("one_token_empty_cache", "float32")
    monkeypatch.setenv("PADDLELLM_CPU_ISA", "sse9")
    with pytest.raises(Exception, match="PADDLELLM_CPU_ISA=sse9 is not one of"):
        ops.block_attention(b["q"], b["key_cache"], b["value_cache"], *_meta(b))


# (rows, K, N): one row (decode), rows around the AVX-512 tile of 12 and the AVX2 tile of 2, more rows than
# one work item (96), N that is and is not a multiple of the 32-column block, K of 1 and odd K.
def test_linear_equals_matmul_for_any_leading_shape():
    rng = np.random.RandomState(1)
    w = paddle.to_tensor(rng.randn(40, 70).astype("float32"))
    packed = ops.pack_linear_weight(w)
    for shape in ([3, 5, 40], [40], [0, 40]):
        x = paddle.to_tensor(rng.randn(*shape).astype("float32"))
        out = ops.linear(x, packed, 70)
        assert out.shape == shape[:-1] + [70]
        np.testing.assert_allclose(out.numpy(), paddle.matmul(x, w).numpy(), rtol=1e-5, atol=1e-5)


def _thp_mode():
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text[text.index("[") + 1: text.index("]")]


def _smaps_fields(address):
    """The /proc/self/smaps fields of the mapping that holds `address`."""
    fields, inside = {}, False
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(x, 16) for x in head.split("-"))
            inside = low <= address < high
        elif inside:
            fields[head.rstrip(":")] = line.split()[1]
    return fields


@pytest.mark.skipif(_thp_mode() not in ("always", "madvise"), reason="transparent huge pages are off here")
def test_linear_asks_for_huge_pages_for_its_weight():
    """A decode step streams every weight once: the first read advises its memory into 2 MB pages (huge_pages.h).
    THPeligible is the advice itself; whether the kernel collapsed the pages (AnonHugePages) depends on free memory."""
    weight = ops.pack_linear_weight(paddle.randn([1024, 2048]))  # 8 MB
    ops.linear(paddle.randn([1, 1024]), weight, 2048)
    assert _smaps_fields(weight.data_ptr()).get("THPeligible") == "1"


def test_linear_padding_columns_are_zero():
    packed = ops.pack_linear_weight(paddle.ones([3, 33]))
    assert packed.shape == [2, 3, 32]
    assert packed[1, :, 1:].abs().sum().item() == 0 and packed[1, :, 0].sum().item() == 3


def test_linear_bad_inputs_are_clear_errors():
    x, packed = paddle.ones([2, 8]), ops.pack_linear_weight(paddle.ones([8, 40]))
    cases = [((paddle.ones([2, 9]), packed, 40), "the input's last dimension is 9 but weight's K is 8"),
             ((x, packed, 65), "n = 65 does not fit a weight of 2 blocks"),
             ((x, packed, 32), "n = 32 does not fit a weight of 2 blocks"),
             ((x, paddle.ones([8, 40]), 40), "weight must be packed as"),
             ((x.astype("float64"), packed, 40), "x must be float32"),
             ((x, packed.astype("float16"), 40), "weight must be float32, bfloat16, int8 \\(weight-only\\) or uint8"),
             ((x, ops.pack_linear_weight(paddle.ones([8, 40], "int8"), np.ones(40)), 40), None),
             ((paddle.ones([2, 9]), ops.pack_linear_weight(paddle.ones([8, 40], "int8"), np.ones(40)), 40),
              "weight has 12 rows, which no int8 packing of K = 9 has"),
             ((paddle.ones([2, 4]), ops.pack_linear_weight(paddle.ones([8, 40], "int8"), np.ones(40)), 40),
              "weight has 12 rows, which no int8 packing of K = 4 has"),  # not 2 groups of 2: groups are 32k
             ((paddle.ones([2, 6]), ops.pack_linear_weight(paddle.ones([8, 40], "int8"), np.ones([2, 40]),
                                                           np.zeros([2, 40])), 40),
              "weight has 12 rows, which no int4 packing of K = 6 has")]
    for args, message in cases:
        if message is None:  # an int8 weight of K = 8: fine
            assert ops.linear(*args).shape == [2, 40]
            continue
        with pytest.raises(Exception, match=message):
            ops.linear(*args)
    with pytest.raises(Exception, match=r"weight must be packed as \[2 \* ceil"):
        ops.linear_swiglu(x, ops.pack_linear_weight(paddle.ones([8, 70])), 40)  # 3 blocks: not gate/up pairs
    with pytest.raises(Exception, match="n = 40 does not fit a weight of 1 blocks"):
        ops.linear_swiglu(x, ops.pack_swiglu_weight(paddle.ones([8, 64])), 40)


def test_missing_compiler_is_one_line(tmp_path):
    """A fresh cache and no compiler on PATH: one UserError line naming what to install."""
    env = dict(os.environ, PATH=str(tmp_path), PADDLELLM_OPS_CACHE=str(tmp_path / "cache"))
    env.pop("CXX", None)
    env.pop("LDSHARED", None)
    code = ("import paddlellm\nfrom paddlellm.errors import UserError\nfrom paddlellm.ops import load_library\n"
            "try:\n    load_library()\nexcept UserError as e:\n    print('USERERROR', e)\n")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.stdout.strip() == ("USERERROR no C++ compiler found (install g++, e.g. apt-get install g++)"), \
        run.stdout + run.stderr


@pytest.mark.parametrize("device, package, build", [
    ("npu", "paddlellm_npu_ops", "cd csrc/npu && python setup.py build bdist_wheel && pip install dist/*.whl"),
    ("dcu", "paddlellm_hip_ops", "cd csrc/hip && python setup_hip.py install")])
def test_a_missing_device_library_is_one_line_saying_how_to_build_it(device, package, build):
    """A process for a present device loads that device's op library (here none is installed)."""
    code = ("from paddlellm.errors import UserError\nfrom paddlellm import ops\n"
            f"ops.use_device({device!r})\n"
            "try:\n    ops.load_library()\nexcept UserError as e:\n    print('USERERROR', e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.stdout.splitlines() == [
        f"USERERROR the paddlellm {device} ops are not installed ({package}: No module named '{package}'); build and "
        f"install them from paddlellm's source tree: {build}"], run.stdout + run.stderr


def test_an_absent_device_gets_the_cpu_library_and_a_process_keeps_its_library():
    """(Both libraries register the same op names: one per process.)"""
    from paddlellm.errors import UserError
    from paddlellm.ops import build

    ops.load_library()
    assert build.use_device("npu", present=False) == "cpu" and build.library_device() == "cpu"
    with pytest.raises(UserError, match=r"this process already loaded the cpu op library, so it cannot run ops for "
                                        r"--device dcu \(use one device per process\)"):
        build.use_device("dcu")
    assert build.library_device() == "cpu"


class _Step(paddle.nn.Layer):
    """The smallest program shape the block step uses: write this step's K/V, then attend."""

    def forward(self, q, key, value, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder):
        key_cache, value_cache = ops.write_cache_kv(key, value, key_cache, value_cache, block_tables,
                                                    seq_lens_this_time, seq_lens_decoder)
        return ops.block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder)


def _export_step(path, heads, kv_heads, head_dim, block_size):
    from paddle.static import InputSpec

    spec = [
        InputSpec([None, heads, head_dim], "float32", "q"),
        InputSpec([None, kv_heads, head_dim], "float32", "key"),
        InputSpec([None, kv_heads, head_dim], "float32", "value"),
        InputSpec([None, kv_heads, block_size, head_dim], "float32", "key_cache"),
        InputSpec([None, kv_heads, block_size, head_dim], "float32", "value_cache"),
        InputSpec([None, None], "int32", "block_tables"),
        InputSpec([None], "int32", "seq_lens_this_time"),
        InputSpec([None], "int32", "seq_lens_decoder"),
    ]
    paddle.jit.save(paddle.jit.to_static(_Step(), input_spec=spec, full_graph=True), str(path))


def test_exported_program_writes_the_fed_cache_in_place(tmp_path):
    import paddle.inference as pi

    case = next(c for c in PAGED_CASES if c["seqs"] == "mixed_decode_chunks_idle")
    _export_step(tmp_path / "step", query_heads(case), case["kv"], case["d"], case["bs"])
    program = (tmp_path / "step.json").read_text()
    assert "paddlellm_write_cache_kv_" in program and "paddlellm_block_attention" in program

    ops.load_library()  # needed before create_predictor (a no-op here: tracing loaded it)
    config = pi.Config(str(tmp_path / "step.json"), str(tmp_path / "step.pdiparams"))
    config.disable_gpu()
    config.disable_mkldnn()
    config.enable_new_ir(True)
    config.enable_new_executor(True)
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(2)
    predictor = pi.create_predictor(config)
    for seed in (1, 2):  # two runs: the second step sees the first one's cache writes kept
        b = make_batch(case["seqs"], "float32", seed=seed)
        ref_k, ref_v = write_cache_kv_ref(b["key"], b["value"], b["key_cache"], b["value_cache"], *_meta(b))
        ptrs = b["key_cache"].data_ptr(), b["value_cache"].data_ptr()
        feed = [b[name] for name in ("q", "key", "value", "key_cache", "value_cache", "block_tables",
                                     "seq_lens_this_time", "seq_lens_decoder")]
        (out,) = predictor.run(feed)
        assert (b["key_cache"].data_ptr(), b["value_cache"].data_ptr()) == ptrs
        assert _same(b["key_cache"], ref_k) and _same(b["value_cache"], ref_v)  # the fed tensors themselves
        ref = block_attention_ref(b["q"], ref_k, ref_v, *_meta(b))
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=2e-5)


_PREDICT_ONLY = """
import sys
import numpy as np
import paddle
import paddle.inference as pi
import paddlellm.ops

paddlellm.ops.load_library()  # all a predictor-only process needs, before create_predictor
d = sys.argv[1]
config = pi.Config(d + "/step.json", d + "/step.pdiparams")
config.disable_gpu()
config.disable_mkldnn()
config.enable_new_ir(True)
config.enable_new_executor(True)
config.disable_glog_info()
predictor = pi.create_predictor(config)
feed = [paddle.to_tensor(np.load(d + "/feed%d.npy" % i)) for i in range(8)]
(out,) = predictor.run(feed)
np.save(d + "/out.npy", out.numpy())
np.save(d + "/key_cache.npy", feed[3].numpy())
"""


def test_predictor_only_process_needs_load_library(tmp_path):
    """A fresh process that never calls the ops in Python: load_library() before create_predictor suffices,
    and nothing is logged twice."""
    case = next(c for c in PAGED_CASES if c["seqs"] == "block_boundaries")
    _export_step(tmp_path / "step", query_heads(case), case["kv"], case["d"], case["bs"])
    b = make_batch(case["seqs"], "float32", seed=4)
    names = ("q", "key", "value", "key_cache", "value_cache", "block_tables", "seq_lens_this_time",
             "seq_lens_decoder")
    for i, name in enumerate(names):
        np.save(tmp_path / f"feed{i}.npy", b[name].numpy())
    run = subprocess.run([sys.executable, "-c", _PREDICT_ONLY, str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "already registered" not in run.stderr and "building" not in run.stderr
    ref_k, ref_v = write_cache_kv_ref(b["key"], b["value"], b["key_cache"], b["value_cache"], *_meta(b))
    assert np.array_equal(np.load(tmp_path / "key_cache.npy"), ref_k.numpy())
    ref = block_attention_ref(b["q"], ref_k, ref_v, *_meta(b))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), ref.numpy(), rtol=0, atol=2e-5)


def test_first_build_prints_one_line(tmp_path):
    """A fresh cache: the whole build says one line on stderr and nothing on stdout (slow: ~15-30 s)."""
    env = dict(os.environ, PADDLELLM_OPS_CACHE=str(tmp_path / "cache"))
    code = "import paddlellm.ops\nprint(paddlellm.ops.load_library())\n"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "building paddlellm CPU ops (first use, ~30 s)\n"
    assert run.stdout.startswith(str(tmp_path / "cache"))


@pytest.mark.parametrize("weight_dtype", ["float32", "bfloat16"])
def test_packed_embedding_is_the_rows_of_the_transposed_weight(weight_dtype):
    rng = np.random.RandomState(3)
    w = paddle.to_tensor(rng.randn(7, 70).astype("float32")).astype(weight_dtype)  # K 7, n 70: a partial last block
    ids = paddle.to_tensor(np.array([[0, 69, 31], [32, 33, 5]], np.int64))
    out = ops.packed_embedding(ids, ops.pack_linear_weight(w), 70)
    assert out.shape == [2, 3, 7] and out.dtype == paddle.float32
    assert np.array_equal(out.numpy(), w.astype("float32").numpy().T[ids.numpy()])  # a copy: exact
    with pytest.raises(Exception, match=r"token id 70 is outside the vocabulary \[0, 70\)"):
        ops.packed_embedding(paddle.to_tensor(np.array([70], np.int64)), ops.pack_linear_weight(w), 70)
