"""LoRA merge: paddleformers adapters merged shard by shard (and on the fly at export) give the LoRA model's
logits; bad adapters and outputs fail with one error line and write nothing."""
import json
import shutil
import weakref

import numpy as np
import pytest

from cli_helpers import fails
from paddlellm.models.llama.checkpoint import read_config
from paddlellm.models.llama import lora
from paddlellm.training.lora_main import main
from tiny_models import write_tokenizer

DIMS = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2)
TARGETS = [f".*{name}.*" for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]
IDS = np.array([5, 17, 42, 99, 3, 250, 7, 64, 128, 11], dtype=np.int64)
ADAPTER_SAVES = {"flex": {}, "pdparams": {"save_checkpoint_format": "sharding_io"}}


def lora_model(base_dir=None, seed=0, **dims):
    """A paddleformers Llama (saved to base_dir in 3 HF shards before wrapping) under LoRA with random B."""
    import paddle
    from paddleformers.peft import LoRAConfig, LoRAModel
    from paddleformers.transformers import LlamaConfig, LlamaForCausalLM

    paddle.seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**DIMS, **dims}, fuse_rms_norm=False, tie_word_embeddings=False))
    if base_dir is not None:
        model.save_pretrained(base_dir, max_shard_size="200KB")
    wrapped = LoRAModel(model, LoRAConfig(target_modules=TARGETS, r=4, lora_alpha=8))
    rng = np.random.default_rng(seed)
    for name, param in wrapped.model.named_parameters():
        if name.endswith("lora_B"):  # initialised to zero, which would make the adapter a no-op
            param.set_value(paddle.to_tensor(rng.standard_normal(param.shape).astype("float32") * 0.05))
    wrapped.eval()
    return wrapped


def paddle_logits(model):
    import paddle

    with paddle.no_grad():
        return model(input_ids=paddle.to_tensor(IDS[None]))[0].numpy()[:, -1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    base = root / "base"
    wrapped = lora_model(base)
    write_tokenizer(base, vocab_size=320)
    for kind, kwargs in ADAPTER_SAVES.items():
        wrapped.save_pretrained(root / kind, **kwargs)
    want = paddle_logits(wrapped)
    wrapped.merge()
    merged = paddle_logits(wrapped)
    other = root / "other_hidden"
    lora_model(hidden_size=32, seed=1).save_pretrained(other)
    return {"root": root, "base": base, "want": want, "merged": merged, "other_hidden": other}


def dynamic_logits(model_dir):
    from paddlellm.models.llama.loader import load_model
    from paddlellm.predictor.runners import DynamicBlockRunner, prompt_logits

    return prompt_logits(DynamicBlockRunner(load_model(model_dir), 2), [IDS.tolist()])


def shard_sets(model_dir):
    weight_map = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    groups = {}
    for name, file in weight_map.items():
        groups.setdefault(file, set()).add(name)
    return [groups[file] for file in sorted(groups)]


def merge(trained, out, kind="flex", *flags):
    argv = ["--model_name_or_path", trained["base"], "--lora_path", trained["root"] / kind,
            "--merge_lora_model_path", out, *flags]
    assert main([str(a) for a in argv]) == 0
    return out


def test_adapter_format(trained):
    adapter = trained["root"] / "flex"
    assert (adapter / "lora_config.json").is_file() and (adapter / "peft_model.safetensors.index.json").is_file()
    assert (trained["root"] / "pdparams" / "lora_model_state.pdparams").is_file()
    config, deltas = lora.read_lora_adapter(adapter)
    assert config["scaling"] == 2.0 and len(deltas) == 7 * DIMS["num_hidden_layers"]
    assert deltas["model.layers.1.self_attn.k_proj.weight"].shape == (32, 64)
    assert deltas["model.layers.0.mlp.down_proj.weight"].shape == (64, 128)


@pytest.mark.parametrize("kind", sorted(ADAPTER_SAVES))
def test_merged_checkpoint_matches_lora_model(trained, tmp_path, kind):
    out = merge(trained, tmp_path / "merged", kind, "--device", "gpu", "--low_gpu_mem", "--safe_serialization")
    assert shard_sets(out) == shard_sets(trained["base"]) and len(shard_sets(out)) == 3
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    got = dynamic_logits(out)
    np.testing.assert_allclose(got, trained["want"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, trained["merged"], atol=1e-5, rtol=0)
    assert np.abs(dynamic_logits(trained["base"]) - trained["want"]).max() > 1e-3  # the adapter matters
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_one_base_shard_in_memory(trained, tmp_path, monkeypatch):
    live, calls = set(), []
    real = lora.read_weight_file

    def tracked(*args):
        assert not live, "a base shard is still in memory when the next one is read"
        tensors = real(*args)
        for array in tensors.values():
            key = object()
            live.add(key)
            weakref.finalize(array, live.discard, key)
        calls.append(args[0].name)
        return tensors

    monkeypatch.setattr(lora, "read_weight_file", tracked)
    merge(trained, tmp_path / "merged")
    assert len(calls) == 3 and not live


def test_export_merges_on_the_fly(trained, tmp_path):
    from paddlellm.export.exporter import export_model
    from paddlellm.export.manifest import read_manifest
    from paddlellm.predictor.runners import StaticBlockRunner, prompt_logits

    out = export_model(trained["base"], tmp_path / "inference", lora_path=trained["root"] / "flex")
    got = prompt_logits(StaticBlockRunner(out, read_manifest(out), "cpu", 2), [IDS.tolist()])
    np.testing.assert_allclose(got, trained["want"], atol=1e-5, rtol=0)


def test_rslora_scaling(trained, tmp_path):
    adapter = shutil.copytree(trained["root"] / "pdparams", tmp_path / "rslora")
    config = json.loads((adapter / "lora_config.json").read_text())
    (adapter / "lora_config.json").write_text(json.dumps({**config, "rslora": True}))
    config, deltas = lora.read_lora_adapter(adapter)
    a, b = deltas.pairs["model.layers.0.self_attn.q_proj.weight"]
    assert config["scaling"] == 4.0
    np.testing.assert_allclose(deltas["model.layers.0.self_attn.q_proj.weight"], (a @ b * 4.0).T, rtol=1e-6)


def test_paddlenlp_fused_qkv_adapter(trained, tmp_path):
    """A PaddleNLP-era adapter on a fused qkv_proj (llama.* names) splits into q/k/v deltas per kv head."""
    import paddle
    from paddleformers.transformers.conversion_utils import fuse_param_func

    _, deltas = lora.read_lora_adapter(trained["root"] / "flex")
    stem = "model.layers.0.self_attn."
    a = deltas.pairs[stem + "q_proj.weight"][0]
    bs = [deltas.pairs[stem + f"{n}_proj.weight"][1] for n in "qkv"]
    fused = fuse_param_func()(bs, is_qkv=True, num_heads=4, num_key_value_heads=2)
    adapter = tmp_path / "fused"
    adapter.mkdir()
    shutil.copy(trained["root"] / "flex" / "lora_config.json", adapter)
    paddle.save({"llama.layers.0.self_attn.qkv_proj.lora_A": paddle.to_tensor(a),
                 "llama.layers.0.self_attn.qkv_proj.lora_B": paddle.to_tensor(fused)},
                str(adapter / "lora_model_state.pdparams"))
    _, split = lora.read_lora_adapter(adapter, read_config(trained["base"]))
    assert sorted(split) == [stem + f"{n}_proj.weight" for n in "kqv"]
    for n, b in zip("qkv", bs):
        np.testing.assert_allclose(split[stem + f"{n}_proj.weight"], (a @ b * 2.0).T, rtol=1e-6)


def broken_adapter(trained, tmp_path, case):
    """The --lora_path of a bad-input case, built under tmp_path/in."""
    src = tmp_path / "in"
    src.mkdir()
    if case == "missing_dir":
        return src / "nowhere"
    if case == "other_hidden":
        return trained["other_hidden"]
    adapter = shutil.copytree(trained["root"] / "pdparams", src / "adapter")
    if case == "no_config":
        (adapter / "lora_config.json").unlink()
    elif case == "trainer_checkpoint":
        (adapter / "lora_config.json").unlink()
        (adapter / "lora_model_state.pdparams").unlink()
        (adapter / "model_state").mkdir()
    elif case == "more_layers":
        import paddle

        state = paddle.load(str(adapter / "lora_model_state.pdparams"))
        state = {k.replace("layers.1.", "layers.7."): v for k, v in state.items()}
        paddle.save(state, str(adapter / "lora_model_state.pdparams"))
    elif case == "unknown_target":
        import paddle

        state = paddle.load(str(adapter / "lora_model_state.pdparams"))
        state = {k.replace("layers.0.mlp.down_proj", "layers.0.mlp.act_fn"): v for k, v in state.items()}
        paddle.save(state, str(adapter / "lora_model_state.pdparams"))
    elif case == "no_weights":
        (adapter / "lora_model_state.pdparams").unlink()
    return adapter


@pytest.mark.parametrize("case, words", [
    ("missing_dir", "does not exist"),
    ("no_config", "lora_config.json not found"),
    ("trainer_checkpoint", "Trainer flex checkpoint"),
    ("no_weights", "no LoRA weights"),
    ("other_hidden", "does not fit the base model"),
    ("more_layers", "has no such weight"),
    ("unknown_target", "not a Llama projection"),
])
def test_bad_adapter_writes_nothing(trained, tmp_path, capsys, case, words):
    adapter = broken_adapter(trained, tmp_path, case)
    (tmp_path / "out").mkdir()
    argv = ["--model_name_or_path", trained["base"], "--lora_path", adapter,
            "--merge_lora_model_path", tmp_path / "out" / "merged"]
    assert words in fails(capsys, main, argv)
    assert list((tmp_path / "out").iterdir()) == []


def test_non_empty_output_is_refused(trained, tmp_path, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = ["--model_name_or_path", trained["base"], "--lora_path", trained["root"] / "flex", "--output_path", out]
    assert "not an empty directory" in fails(capsys, main, argv)
    assert [p.name for p in tmp_path.iterdir()] == ["merged"] and (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("flags, words", [
    (["--safe_serialization", "false"], "--safe_serialization false is not supported"),
    (["--device", "tpu"], "unknown --device"),
])
def test_bad_flags(trained, tmp_path, capsys, flags, words):
    argv = ["--model_name_or_path", trained["base"], "--lora_path", trained["root"] / "flex",
            "--merge_lora_model_path", tmp_path / "merged", *flags]
    assert words in fails(capsys, main, argv)
    assert list(tmp_path.iterdir()) == []
