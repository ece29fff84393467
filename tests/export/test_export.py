"""Export: what the inference dir holds, and that it appears whole or not at all."""
import json
import shutil

import pytest

from cli_helpers import fails
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
    assert (manifest.dtype, manifest.compute_dtype, manifest.device, manifest.block_attn) == ("float32", "float32", "cpu", False)
    assert (manifest.num_layers, manifest.num_kv_heads, manifest.head_dim) == (2, 2, 16)
    assert manifest.inputs[:3] == ["input_ids", "pad_lens", "cache_offset"] and len(manifest.inputs) == 3 + 4
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


@pytest.mark.parametrize("flags, words", [
    (["--dtype", "int4"], "unknown --dtype"),
    (["--device", "tpu"], "unknown --device"),
    (["--block_attn"], "--block_attn is not available"),
    (["--quant_type", "weight_only_int8"], "--quant_type is not available"),
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
