"""The IR passes (csrc/passes, paddlellm/ops/passes.py): the table and its pipelines, and each pass on an exported
tiny Llama's portable program (3 layers: a first, a middle and a last one): its match count, and logits within
tolerance of the program without it."""
import numpy as np
import pytest

from paddlellm import ops
from paddlellm.errors import UserError
from paddlellm.export.manifest import read_manifest
from paddlellm.ops.passes import BY_NAME, PASSES, PIPELINES, pipeline
from paddlellm.predictor.runners import StaticBlockRunner, prompt_logits

PROMPTS = [[3, 4, 5, 6, 7, 8, 9], [10, 11], [12]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny_3_layers"), tie=True, layers=3)


@pytest.fixture(scope="module")
def portable(checkpoint, tmp_path_factory):
    from paddlellm.export.exporter import export_model

    return export_model(checkpoint, tmp_path_factory.mktemp("portable") / "inference")


def logits_with(exported, passes):
    return prompt_logits(StaticBlockRunner(exported, read_manifest(exported), "cpu", 2, passes=passes), PROMPTS)


def test_every_pipeline_lists_known_passes_of_its_backend_in_table_order():
    order = [p.name for p in PASSES]
    for device, names in PIPELINES.items():
        assert list(names) == [n for n in order if n in names]
    assert PIPELINES["dcu"] == PIPELINES["gpu"]  # one library, csrc/hip
    # every pass inserts ops the CPU has; the CPU pipeline holds all but those measured not to pay and the
    # weight-only pass, whose projections its linear passes pack instead; the devices' hold it
    assert all("cpu" in p.backends for p in PASSES)
    assert set(PIPELINES["cpu"]) == {p.name for p in PASSES} - {"llama_fuse_lm_head_with_slice",
                                                                 "paddlellm_weight_only_linear_pass"}
    assert all("paddlellm_weight_only_linear_pass" in PIPELINES[d] for d in ("npu", "dcu"))


def test_pipeline_flags():
    assert pipeline("cpu") == list(PIPELINES["cpu"])
    assert pipeline("cpu", "none") == []
    assert pipeline("cpu", disable_passes="paddlellm_swiglu_pass") == [n for n in PIPELINES["cpu"]
                                                                        if n != "paddlellm_swiglu_pass"]
    assert pipeline("npu", "paddlellm_swiglu_pass,paddlellm_rms_norm_pass") == ["paddlellm_swiglu_pass",
                                                                                "paddlellm_rms_norm_pass"]
    with pytest.raises(UserError, match=r"--passes: unknown pass fuse_everything \(known: paddlellm_rms_norm_pass"):
        pipeline("cpu", "fuse_everything")
    with pytest.raises(UserError, match=r"--disable_passes: unknown pass nope"):
        pipeline("cpu", disable_passes="nope")


@pytest.mark.parametrize("spec", PASSES, ids=lambda p: p.name)
def test_each_pass_matches_as_expected_and_keeps_the_logits(portable, spec):
    """Run alone after the passes before it (a pass may match what they produce), against the program without
    it (the match count shows the rewrite happened). Tolerance: an RMSNorm op sums its squares in another order
    than mean() does (SPEC.md: 2e-6 relative a norm), through 2 layers of unit-scale values; the fused add is the
    same float add; the rotary op's angles and products are float32 as the plain ones (SPEC.md: 1e-6); the
    swiglu op is within 1 ulp of Paddle's; paddlellm_linear sums its products in another order than Paddle's
    matmul (SPEC.md: ~1e-7 * K^1.5 for K = 128); the fused layer composes those same ops."""
    names = [p.name for p in PASSES]
    before = names[: names.index(spec.name)]
    reference = logits_with(portable, before)
    got = logits_with(portable, before + [spec.name])
    assert ops.pass_matches(spec.name) == spec.expected(read_manifest(portable).num_layers)  # float: 0 weight-only
    np.testing.assert_allclose(got, reference, rtol=0, atol=2e-5)


def test_a_pass_that_finds_nothing_counts_zero(portable, capsys):
    """The layer pass alone: the plain layers hold none of the fused ops it fuses. Nothing matches, a warning."""
    from paddlellm.predictor.runners import create_predictor

    create_predictor(portable, read_manifest(portable), "cpu", 2, passes=["llama_fuse_attention_layer"])
    assert ops.pass_matches("llama_fuse_attention_layer") == 0
    out = capsys.readouterr().out
    assert ("[predictor] warning: IR pass llama_fuse_attention_layer matched 0 times, fewer than the 1 expected on a "
            "Llama of 3 layers: part of the program keeps its plain ops") in out


def test_the_cli_lists_the_passes_and_pipelines(capsys):
    from paddlellm.ops.__main__ import main

    assert main(["--passes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| pass | what it does | backends | matches on a Llama |"
    assert "| remove_residual_in_rms_norm | a residual add and the RMSNorm of its sum -> paddlellm_fused_add_rms_norm " \
           "| cpu, hip, npu | 2 per layer |" in out
    assert f"npu: {', '.join(PIPELINES['npu'])}" in out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_cpu_pipeline_fuses_narrow_weights_too(tmp_path_factory, dtype):
    """bfloat16 weights reach each matmul and norm through a cast: the passes take the cast with them (bfloat16
    stays packed as bfloat16; float16, which the CPU kernels do not read, is widened to float32 exactly). Every
    pass matches as on float32, and the logits stay within float32 rounding of the unfused program (the same
    weights, widened the same way)."""
    from paddlellm.export.exporter import export_model
    from tiny_models import make_tiny_llama

    checkpoint = make_tiny_llama(tmp_path_factory.mktemp(f"tiny_{dtype}"), tie=True, layers=3)
    exported = export_model(checkpoint, tmp_path_factory.mktemp(f"portable_{dtype}") / "inference", dtype=dtype)
    reference = logits_with(exported, [])
    fused = logits_with(exported, list(PIPELINES["cpu"]))
    assert {n: ops.pass_matches(n) for n in PIPELINES["cpu"]} == {n: BY_NAME[n].expected(3) for n in PIPELINES["cpu"]}
    np.testing.assert_allclose(fused, reference, rtol=0, atol=2e-5)


@pytest.mark.parametrize("quant_type, group_size, bound", [
    ("weight_only_int8", None, 0.05), ("weight_only_int8", 32, 0.05), ("weight_only_int4", 32, 0.6), ("a8w8", None, 0.1)])
def test_the_cpu_pipeline_fuses_a_quantized_export_as_a_float_one(checkpoint, tmp_path, quant_type, group_size,
                                                                   bound):
    """--quant_type ... --quant_lm_head: the projections and the lm_head are cast(int8) * scale (grouped int8: * the
    group scales, int4: and + the group offsets, each repeated over its group; a8w8: with x quantized per token in
    front) in the portable program; the linear passes pack them as int8 / int4 / a8w8 blocks with their scales and
    every pass matches as on float weights. int8: logits within 2e-5
    of the unfused program, which holds the same values and scales: the kernel applies a column's scale to its
    sum, a float32 rounding per product moved (the same tolerance as for float weights above)."""
    from paddlellm.export.exporter import export_model

    quantized = export_model(checkpoint, tmp_path / "quantized", quant_type=quant_type, quant_lm_head=True,
                             group_size=group_size)
    reference = logits_with(quantized, [])
    got = logits_with(quantized, None)
    layers = read_manifest(quantized).num_layers
    assert {n: ops.pass_matches(n) for n in PIPELINES["cpu"]} == {n: BY_NAME[n].expected(layers)
                                                                  for n in PIPELINES["cpu"]}
    if quant_type == "weight_only_int4":  # the int4 kernels multiply int8 activations (per row and block of 32),
        # where the portable program keeps them float: ~0.7% of each activation in RMS, grown through this random
        # model's 10 matmuls (measured 8.3% of the logits; the kernels against that rounding: --check)
        assert np.sqrt(np.mean((got - reference) ** 2) / np.mean(reference ** 2)) < 0.15
    elif quant_type == "a8w8":  # the portable program quantizes x per token as the kernels do (measured 3e-7 of
        # the logits in RMS); a float32 ulp upstream may move one activation to the next int8 step elsewhere (ISAs sum
        # in other orders): ~1/127 of one entry of one row, well under 1e-3 of the logits
        assert np.sqrt(np.mean((got - reference) ** 2) / np.mean(reference ** 2)) < 1e-3
    else:
        np.testing.assert_allclose(got, reference, rtol=0, atol=2e-5)
    # and it is the float model give or take its rounding. int8: a weight moves by up to half a step, max|column| /
    # 254, ~1% of the weights' spread in RMS; 10 such matmuls in a row: a few % of the logits in RMS (measured
    # 2.7%; a8w8 adds int8 activations per row: measured 5.8%). int4 in groups of 32: steps of (max - min) / 15 over 32 normal values, ~10% of the spread in RMS,
    # and int8 activations: tens of % of the logits on this random model (measured 40%; SmolLM2's perplexity in
    # the README)
    exact = logits_with(export_model(checkpoint, tmp_path / "float"), [])
    assert np.sqrt(np.mean((got - exact) ** 2) / np.mean(exact ** 2)) < bound


@pytest.mark.parametrize("quant_type, group_size", [("weight_only_int8", None), ("weight_only_int8", 32),
                                                    ("weight_only_int4", 32), ("a8w8", None)])
def test_the_device_pipeline_takes_quantized_projections_as_stored(checkpoint, tmp_path, quant_type, group_size):
    """The hip/npu pipeline's passes, run here on the CPU library (which has their ops): every quantized projection,
    the lm_head too, becomes paddlellm_weight_only_linear over the int8 values and scales as exported, and the
    logits stay within float32 rounding of the unfused program (the op sums q * x per group, then scales: a float32
    rounding per product moved, as for paddlellm_linear above)."""
    from paddlellm.export.exporter import export_model

    quantized = export_model(checkpoint, tmp_path / "quantized", quant_type=quant_type, quant_lm_head=True,
                             group_size=group_size)
    manifest = read_manifest(quantized)
    reference = logits_with(quantized, [])
    device_passes = list(PIPELINES["npu"])
    got = logits_with(quantized, device_passes)
    assert {n: ops.pass_matches(n) for n in device_passes} == {
        n: BY_NAME[n].expected(3, manifest.quantized_projections) for n in device_passes}
    assert manifest.quantized_projections == 13  # 4 a layer and the lm_head
    np.testing.assert_allclose(got, reference, rtol=0, atol=2e-5)


@pytest.mark.parametrize("quant_type", ["weight_only_int8", "weight_only_int4"])
def test_the_weight_only_pass_takes_a_16_bit_matmul_with_its_casts(tmp_path, quant_type):
    """On a device the matmuls run in the 16-bit compute dtype: cast(cast(x) @ cast(dequantize(W))) to float32.
    A CPU cannot export such a model (export_model refuses), so one projection in that form, as model.linear writes
    it, is saved here; the pass takes the casts with it (the CPU then runs no bfloat16 matmul, which it has no
    kernel for) and the program's output is the op's own, bit for bit."""
    import paddle

    from paddlellm.models.llama.model import linear
    from paddlellm.quantization import quantize_int4, quantize_int8

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 40)).astype(np.float32)
    stored = quantize_int8(w) if quant_type == "weight_only_int8" else quantize_int4(w, 32)

    class Projection(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.stored = []
            for a in stored:
                p = self.create_parameter(a.shape, dtype=str(a.dtype),
                                          default_initializer=paddle.nn.initializer.Assign(a))
                self.stored.append(p)
                self.add_parameter(f"p{len(self.stored)}", p)

        def forward(self, x):
            return linear(x, self.stored[0], 40, "bfloat16", *self.stored[1:])

    spec = [paddle.static.InputSpec([None, 64], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(Projection(), input_spec=spec, full_graph=True), str(tmp_path / "model"))
    config = paddle.inference.Config(str(tmp_path / "model.json"), str(tmp_path / "model.pdiparams"))
    config.disable_gpu()
    config.enable_new_ir(True)
    config.enable_new_executor(True)
    config.enable_custom_passes(["paddlellm_weight_only_linear_pass"], True)
    ops.register_ops()
    ops.forget_pass_matches()
    predictor = paddle.inference.create_predictor(config)
    assert ops.pass_matches("paddlellm_weight_only_linear_pass") == 1
    x = rng.standard_normal((3, 64)).astype(np.float32)
    predictor.get_input_handle("x").copy_from_cpu(x)
    predictor.run()
    got = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    want = ops.weight_only_linear(paddle.to_tensor(x), *[paddle.to_tensor(a) for a in stored])
    np.testing.assert_array_equal(got, want.numpy())
