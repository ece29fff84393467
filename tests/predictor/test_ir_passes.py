"""The predictor's IR pass pipeline on the exported portable program (the CPU runs it on plain ops unless its
passes fuse them): the log, the optimized-program cache, --passes / --disable_passes, --ir_debug."""
import pytest

from cli_helpers import GREEDY, PROMPTS, fails, predict, write_jsonl
from paddlellm.predictor.main import main
from paddlellm.ops.passes import PIPELINES


@pytest.fixture(scope="module")
def portable(tiny_llama, tmp_path_factory):
    from paddlellm.export.exporter import export_model

    return export_model(tiny_llama, tmp_path_factory.mktemp("portable") / "inference")


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"src": p} for p in PROMPTS])


def pass_lines(out):
    return [line for line in out.splitlines() if "IR pass" in line]


def test_the_cpu_pipeline_runs_once_then_comes_from_the_cache(portable, tmp_path, data_file, capsys):
    import shutil

    shutil.rmtree(portable / ".paddlellm_optimized", ignore_errors=True)
    fused_ops = ("[predictor] ops: fused_add_rms_norm x1, fused_decoder_layer x2, linear x1, packed_positions x1 "
                 "(CPU kernels, ")
    first = predict(portable, tmp_path / "a.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY)
    out = capsys.readouterr().out
    assert fused_ops in out
    assert pass_lines(out) == [
        "[predictor] --- Running IR pass [paddlellm_rms_norm_pass]: 5 matches (expected 5: 2 per layer + 1 more)",
        "[predictor] --- Running IR pass [remove_residual_in_rms_norm]: 4 matches (expected 4: 2 per layer)",
        "[predictor] --- Running IR pass [paddlellm_rotary_pass]: 2 matches (expected 2: 1 per layer)",
        "[predictor] --- Running IR pass [paddlellm_swiglu_pass]: 2 matches (expected 2: 1 per layer)",
        "[predictor] --- Running IR pass [paddlellm_linear_swiglu_pass]: 2 matches (expected 2: 1 per layer)",
        "[predictor] --- Running IR pass [paddlellm_linear_pass]: 6 matches (expected 6: 3 per layer: qkv, o, down)",
        "[predictor] --- Running IR pass [llama_fuse_lm_head]: 1 matches (expected 1: 1)",
        "[predictor] --- Running IR pass [llama_fuse_get_padding_offset]: 1 matches (expected 1: 1)",
        "[predictor] --- Running IR pass [llama_fuse_attention_layer_begin]: 1 matches (expected 1: 1)",
        "[predictor] --- Running IR pass [llama_fuse_attention_layer]: 0 matches (expected 0: 1 per layer but the "
        "first and last)",
        "[predictor] --- Running IR pass [llama_fuse_attention_layer_end]: 1 matches (expected 1: 1 (0 with one "
        "layer))"]
    second = predict(portable, tmp_path / "b.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY)
    out = capsys.readouterr().out
    assert "IR passes: the optimized program cached in " in out and "Running IR pass" not in out and fused_ops in out
    assert second == first
    assert len(list((portable / ".paddlellm_optimized").iterdir())) == 1
    unfused = predict(portable, tmp_path / "c.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY,
                      "--passes", "none")
    assert pass_lines(capsys.readouterr().out) == [] and unfused == first  # greedy tokens: fused == plain


def test_disable_passes_is_part_of_the_cache_key(portable, tmp_path, data_file, capsys):
    predict(portable, tmp_path / "a.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY,
            "--disable_passes", "paddlellm_swiglu_pass")
    lines = pass_lines(capsys.readouterr().out)
    assert [line.split("[")[2].split("]")[0] for line in lines if "Running" in line] == [
        n for n in PIPELINES["cpu"] if n != "paddlellm_swiglu_pass"] or "cached" in lines[0]
    keys = list((portable / ".paddlellm_optimized").iterdir())
    assert len(keys) >= 2  # the full pipeline's entry and this one


def test_ir_debug_writes_the_program_around_each_pass(portable, tmp_path, capsys):
    debug = tmp_path / "ir"
    predict(portable, tmp_path / "a.jsonl", "--mode", "static", "--max_length", 2, "--ir_debug", debug)
    names = sorted(p.name for p in debug.iterdir())
    assert names == sorted(f"{i:02d}_{n}.{w}.txt" for i, n in enumerate(PIPELINES["cpu"], 1)
                           for w in ("before", "after"))
    swiglu_step = PIPELINES["cpu"].index("paddlellm_swiglu_pass") + 1
    after_swiglu = (debug / f"{swiglu_step:02d}_paddlellm_swiglu_pass.after.txt").read_text()
    assert "custom_op.paddlellm_swiglu" in after_swiglu and '"pd_op.swiglu"' not in after_swiglu
    assert "Running IR pass [paddlellm_swiglu_pass]: 2 matches" in capsys.readouterr().out  # run, not cached


@pytest.mark.parametrize("flags, words", [
    (["--passes", "nope"], "--passes: unknown pass nope"),
    (["--mode", "dynamic", "--passes", "none"], "--passes applies to the exported program (--mode static)"),
])
def test_bad_pass_flags(portable, capsys, flags, words):
    argv = ["--model_name_or_path", portable, "--mode", "static", *flags]
    assert words in fails(capsys, main, argv)


def test_a_new_cache_entry_removes_those_no_run_can_load(portable, tmp_path, data_file):
    """An entry made by another op library (or Paddle, or from other exported files) holds a copy of the weights
    and can never be loaded again: writing a new entry removes it; other pass lists' entries stay."""
    import json
    import shutil

    cache = portable / ".paddlellm_optimized"
    predict(portable, tmp_path / "a.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY,
            "--passes", "paddlellm_swiglu_pass")
    kept = [entry for entry in cache.iterdir()]
    stale = cache / "made_by_an_older_build"
    shutil.copytree(kept[0], stale)
    record = json.loads((stale / "passes.json").read_text())
    record["key"]["op_library"] = "an older build"
    (stale / "passes.json").write_text(json.dumps(record))
    predict(portable, tmp_path / "b.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY,
            "--passes", "paddlellm_rms_norm_pass")  # not cached yet: a new entry
    assert not stale.exists() and all(entry.exists() for entry in kept)
    assert len(list(cache.iterdir())) == len(kept) + 1
