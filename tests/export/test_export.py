"""Export: what the inference dir holds, and that it appears whole or not at all."""
import json
import os
import shutil
import stat

import numpy as np
import pytest

from cli_helpers import fails
from help_text import help_entries
from paddlellm.export.exporter import PADDLE_EXPORT_NOISE
from paddlellm.quiet import without_stderr_lines
from paddlellm.export.main import main
from paddlellm.export.manifest import MANIFEST_NAME, read_manifest


def export(src, out, *flags):
    assert main(["--model_name_or_path", str(src), "--output_path", str(out), "--inference_model", *flags]) == 0
    return out


def test_inference_dir_contents(tiny_llama, tmp_path):
    out = export(tiny_llama, tmp_path / "inference", "--dtype", "float32")
    for name in ("model.json", "model.pdiparams", MANIFEST_NAME, "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    manifest = read_manifest(out)
    # block attention is the CPU's default
    assert (manifest.dtype, manifest.compute_dtype, manifest.device, manifest.block_attn) == ("float32", "float32", "cpu", True)
    assert (manifest.num_layers, manifest.num_kv_heads, manifest.head_dim, manifest.block_size) == (2, 2, 16, 64)
    assert manifest.versions["paddle"].startswith("3.")
    assert [p.name for p in tmp_path.iterdir()] == ["inference"]  # no staging leftovers


def test_failed_export_leaves_no_output(tiny_llama, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    (broken / "config.json").write_text(json.dumps({**json.loads((broken / "config.json").read_text()), "hidden_size": 96}))
    out = tmp_path / "inference"
    fails(capsys, main, ["--model_name_or_path", broken, "--output_path", out])
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]


def test_failed_export_keeps_the_previous_one(tiny_llama, tmp_path, capsys):
    out = export(tiny_llama, tmp_path / "inference")
    before = (out / "model.pdiparams").read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    (broken / "model.safetensors").unlink()
    fails(capsys, main, ["--model_name_or_path", broken, "--output_path", out])
    assert (out / "model.pdiparams").read_bytes() == before
    read_manifest(out)


def test_reexport_replaces(tiny_llama, tmp_path):
    out = export(tiny_llama, tmp_path / "inference")
    export(tiny_llama, out, "--dtype", "bfloat16")
    assert read_manifest(out).dtype == "bfloat16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inference"]


@pytest.mark.parametrize("flags, cache", [([], "float32"), (["--dtype", "bfloat16"], "bfloat16"),
                                          (["--dtype", "float16"], "float32"),
                                          (["--dtype", "bfloat16", "--cachekv_int8_type", "dynamic"], "int8")])
def test_kv_cache_dtype_is_recorded_and_fed(tiny_llama, tmp_path, flags, cache):
    """On the CPU the math is float32; bfloat16 weights keep a bfloat16 KV cache (half the bytes attention reads),
    float16 ones a float32 cache (no float16 CPU cache kernels). The program takes caches of that dtype."""
    from paddlellm.predictor.runners import StaticBlockRunner, prompt_logits

    out = export(tiny_llama, tmp_path / "inference", *flags)
    manifest = read_manifest(out)
    assert (manifest.kv_cache_dtype, manifest.cache_dtype, manifest.compute_dtype) == (cache, cache, "float32")
    runner = StaticBlockRunner(out, manifest, "cpu", 2)
    assert np.isfinite(prompt_logits(runner, [[5, 9, 33, 100]])).all()
    assert {str(c.dtype) for c in runner.caches} == {f"paddle.{cache}"}


def test_manifest_without_kv_cache_dtype_reads_as_before(tiny_llama, tmp_path):
    """An export from before the manifest recorded kv_cache_dtype took caches in compute_dtype (int8 with
    --cachekv_int8_type)."""
    out = export(tiny_llama, tmp_path / "inference", "--dtype", "bfloat16")
    path = out / MANIFEST_NAME
    path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "kv_cache_dtype"}))
    assert read_manifest(out).cache_dtype == "float32"


@pytest.mark.parametrize("flags, words", [
    (["--dtype", "int4"], "unknown --dtype"),
    (["--device", "tpu"], "unknown --device"),
    (["--block_attn", "--block_size", "0"], "--block_size must be a positive number of tokens, got 0"),
    (["--block_attn", "false"], "--block_attn false: the dense-cache step was removed"),
    (["--device", "npu"], "--device npu needs --dtype float16 or bfloat16"),
    (["--quant_type", "int3"],
     "--quant_type int3 is not supported (choose one of: weight_only_int8, weight_only_int4, a8w8)"),
    (["--quant_type", "weight_only_int4", "--group_size", "48"], "--group_size 48: groups must be a multiple of 32"),
    (["--quant_type", "weight_only_int8", "--group_size", "48"], "--group_size 48: groups must be a multiple of 32"),
    (["--quant_type", "a8w8", "--group_size", "32"],
     "--group_size 32 applies to --quant_type weight_only_int4 or weight_only_int8 (rows per scale), not to a8w8"),
    (["--group_size", "32"], "not to an unquantized export (drop --group_size)"),
    (["--quant_lm_head"], "--quant_lm_head quantizes the lm_head as --quant_type says (give --quant_type too)"),
    (["--cachekv_int8_type", "int4"], "--cachekv_int8_type int4 is not supported (choose dynamic or static)"),
    (["--cachekv_int8_type", "dynamic", "--device", "dcu"], "the int8 KV cache has CPU kernels only, not the dcu's"),
    (["--cachekv_int8_type", "static", "--device", "npu", "--dtype", "float16"],
     "the int8 KV cache has CPU kernels only, not the npu's"),
    (["--calibration_file", "x.txt"], "--calibration_file / --calibration_tokens calibrate --cachekv_int8_type static"),
    (["--cachekv_int8_type", "dynamic", "--calibration_tokens", "64"], "calibrate --cachekv_int8_type static's scales"),
    (["--cachekv_int8_type", "static", "--calibration_tokens", "1"], "--calibration_tokens must be at least 2, got 1"),
    (["--cachekv_int8_type", "static", "--calibration_file", "/nonexistent/calib.txt"],
     "--calibration_file /nonexistent/calib.txt cannot be read as UTF-8 text"),
])
def test_bad_flags(tiny_llama, tmp_path, capsys, flags, words):
    out = tmp_path / "inference"
    assert words in fails(capsys, main, ["--model_name_or_path", tiny_llama, "--output_path", out, *flags])
    assert not out.exists()


def test_refuses_to_overwrite_what_is_not_an_export(tiny_llama, tmp_path, capsys):
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert "not an exported model" in fails(capsys, main, ["--model_name_or_path", tiny_llama, "--output_path", keep])
    assert (keep / "notes.txt").read_text() == "mine"
    assert "model directory itself" in fails(capsys, main, ["--model_name_or_path", tiny_llama, "--output_path", tiny_llama])


def test_output_path_that_is_a_file(tiny_llama, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    for out in (existing, existing / "inference"):
        assert f"{existing} is a file" in fails(capsys, main, ["--model_name_or_path", tiny_llama, "--output_path", out])
    assert existing.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_export_gets_the_umask_permissions(tiny_llama, tmp_path, mask):
    old = os.umask(mask)
    try:
        out = export(tiny_llama, tmp_path / "inference")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o666 & ~mask}


def test_export_prints_no_known_paddle_noise(tiny_llama, tmp_path, capfd):
    export(tiny_llama, tmp_path / "inference")
    captured = capfd.readouterr()
    assert "not support input out tensor" not in captured.err + captured.out
    assert "[export] exported to" in captured.out


def test_noise_filter_keeps_other_lines(capfd):
    with without_stderr_lines(PADDLE_EXPORT_NOISE):
        os.write(2, f"W1129 eager_utils.cc:3584] {PADDLE_EXPORT_NOISE[0]}\nsomething else\n".encode())
    assert capfd.readouterr().err == "something else\n"


def test_help_has_text_and_default_for_every_flag(capsys):
    assert help_entries(capsys, main).keys() >= {"--model_name_or_path", "--output_path", "--dtype", "--debug"}


def test_narrow_math_for_an_absent_device_is_refused_with_a_hint_that_works(tiny_llama, tmp_path, capsys):
    """bfloat16 math (the device compute path) cannot be traced by a CPU build of Paddle: say so, and the
    suggested export works."""
    out = tmp_path / "inference"
    message = fails(capsys, main, ["--model_name_or_path", tiny_llama, "--output_path", out, "--dtype", "bfloat16", "--device", "gpu"])
    assert "export with --dtype float32" in message and not out.exists()
    export(tiny_llama, out, "--dtype", "float32", "--device", "gpu")
    assert (read_manifest(out).device, read_manifest(out).compute_dtype) == ("gpu", "float32")


def test_block_attn_export_records_the_block_step_in_the_manifest(tiny_llama, tmp_path):
    out = export(tiny_llama, tmp_path / "inference", "--block_attn", "--block_size", "32")
    manifest = read_manifest(out)
    assert (manifest.block_attn, manifest.block_size, manifest.cache_layout) == (True, 32, "blocks")
    assert manifest.inputs[:4] == ["input_ids", "seq_lens_this_time", "seq_lens_decoder", "block_tables"]
    assert manifest.inputs[4:6] == ["key_cache_0", "value_cache_0"] and len(manifest.inputs) == 4 + 2 * 2
    assert manifest.outputs == ["logits"]


def test_export_for_an_absent_device_traces_with_the_cpu_library(tiny_llama, tmp_path, capsys):
    """The CPU's op library has the device libraries' op signatures: a program for the npu can be exported
    here (tokens: tests/predictor/test_block.py runs the DCU's export on the CPU kernels)."""
    out = export(tiny_llama, tmp_path / "inference", "--device", "dcu")
    assert "the dcu is not present here: tracing with the CPU op library" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert (manifest.device, manifest.compute_dtype) == ("dcu", "float32")


@pytest.mark.parametrize("quant_type, lm_head", [("weight_only_int8", False), ("weight_only_int8", True),
                                                  ("a8w8", True)])
def test_int8_export_stores_int8_projections_with_column_scales(tiny_llama, tmp_path, quant_type, lm_head):
    """Each layer's 4 projections (and with --quant_lm_head the lm_head) become int8 with float32 scales, one per
    output column; the embedding and norms stay float32. The manifest records it. a8w8 stores the same and
    quantizes each projection's input per token in the program (one round op each)."""
    import re

    import paddle

    out = export(tiny_llama, tmp_path / "inference", "--quant_type", quant_type,
                 *(["--quant_lm_head"] if lm_head else []))
    manifest = read_manifest(out)
    assert (manifest.quant_type, manifest.quant_lm_head, manifest.dtype) == (quant_type, lm_head, "float32")
    rounds = len(re.findall(r'"#":"\d+\.round"', (out / "model.json").read_text()))
    assert rounds == (4 * 2 + lm_head if quant_type == "a8w8" else 0)
    from paddlellm.ops import ops_in_program

    program = ops_in_program(out / "model.json")
    params = paddle.jit.load(str(out / "model")).state_dict()  # name -> tensor, for dtypes and shapes
    int8 = sorted(tuple(v.shape) for v in params.values() if v.dtype == paddle.int8)
    # the tiny Llama: hidden 64, 4 heads + 2 kv heads of 16 (qkv 128 wide), intermediate 128, vocab 320, 2 layers
    expected = [(64, 128)] * 2 + [(64, 256)] * 2 + [(64, 64)] * 2 + [(128, 64)] * 2 + ([(64, 320)] if lm_head else [])
    assert int8 == sorted(expected)
    scales = sorted(v.shape[0] for v in params.values() if v.dtype == paddle.float32 and len(v.shape) == 1
                    and v.shape[0] in (128, 256, 320))
    assert scales == sorted([128, 256] * 2 + ([320] if lm_head else []))
    assert set(program) == {"write_cache_kv", "block_attention"}  # the portable program: dequantized in plain ops


def test_weight_only_int4_export_stores_group_scales_and_offsets(tiny_llama, tmp_path):
    """int4 values (0..15, one int8 each in the file) with a float32 scale and offset per column and group of 32
    rows; the manifest records the group size."""
    import paddle

    out = export(tiny_llama, tmp_path / "inference", "--quant_type", "weight_only_int4", "--group_size", "32")
    manifest = read_manifest(out)
    assert (manifest.quant_type, manifest.group_size, manifest.quant_lm_head) == ("weight_only_int4", 32, False)
    params = paddle.jit.load(str(out / "model")).state_dict()
    values = [v for v in params.values() if v.dtype == paddle.int8]
    assert len(values) == 8 and all(0 <= v.numpy().min() and v.numpy().max() <= 15 for v in values)
    # per layer: qkv and gate/up read hidden 64 (2 groups), o 64 (2), down 128 (4): scales and offsets alike
    groups = sorted(tuple(v.shape) for v in params.values() if v.dtype == paddle.float32 and len(v.shape) == 2
                    and v.shape[0] in (2, 4))
    assert groups == sorted([(2, 128), (2, 256), (2, 64), (4, 64)] * 2 * 2)


def test_grouped_weight_only_int8_export_stores_group_scales(tiny_llama, tmp_path):
    """--quant_type weight_only_int8 --group_size 32 (as Q8_0): int8 values with a float32 scale per column and group
    of 32 rows, no offsets; the manifest records the group size (without --group_size: one scale a column, None)."""
    import paddle

    out = export(tiny_llama, tmp_path / "inference", "--quant_type", "weight_only_int8", "--group_size", "32")
    manifest = read_manifest(out)
    assert (manifest.quant_type, manifest.group_size) == ("weight_only_int8", 32)
    params = paddle.jit.load(str(out / "model")).state_dict()
    assert len([v for v in params.values() if v.dtype == paddle.int8]) == 8
    groups = sorted(tuple(v.shape) for v in params.values() if v.dtype == paddle.float32 and len(v.shape) == 2
                    and v.shape[0] in (2, 4))
    assert groups == sorted([(2, 128), (2, 256), (2, 64), (4, 64)] * 2)  # as int4's scales above, no offsets
    per_column = export(tiny_llama, tmp_path / "per_column", "--quant_type", "weight_only_int8")
    assert read_manifest(per_column).group_size is None


def test_int8_kv_cache_export_takes_int8_cache_rows_with_their_scales(tiny_llama, tmp_path):
    """--cachekv_int8_type dynamic: each layer's K and V caches are int8 [blocks, kv heads, block size, head_dim + 4]
    (a row's values, then its float32 scale); the manifest records it. The CPU pipeline runs it (fused layers),
    as the unfused program does, near the float cache's logits."""
    from paddlellm.predictor.runners import StaticBlockRunner, prompt_logits

    out = export(tiny_llama, tmp_path / "inference", "--cachekv_int8_type", "dynamic")
    manifest = read_manifest(out)
    assert (manifest.cachekv_int8_type, manifest.cache_dtype, manifest.compute_dtype) == ("dynamic", "int8", "float32")
    prompts = [[5, 9, 33, 100, 7, 250, 3] * 12, [11, 12]]  # 84 tokens: across a block boundary
    runners = {passes: StaticBlockRunner(out, manifest, "cpu", 2, passes=passes) for passes in (None, ())}
    logits = {passes: prompt_logits(runner, prompts) for passes, runner in runners.items()}
    assert runners[None].shape == [3, 2, 64, 16 + 4] and {str(c.dtype) for c in runners[None].caches} == {"paddle.int8"}
    np.testing.assert_allclose(logits[None], logits[()], rtol=0, atol=2e-5)  # the same cache ops, fused or not
    exact = export(tiny_llama, tmp_path / "float")
    want = prompt_logits(StaticBlockRunner(exact, read_manifest(exact), "cpu", 2), prompts)
    # each cached value moves by up to half a step (max |row| / 254); the tiny random model's logits, sharp on
    # its few tokens, move by a few % in RMS (measured 1.5%; SmolLM2's perplexity: the README)
    assert np.sqrt(np.mean((logits[None] - want) ** 2) / np.mean(want ** 2)) < 0.05
