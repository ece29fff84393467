"""read_config / read_state_dict on tiny Llamas saved by transformers (torch) and by paddleformers."""
import collections
import json

import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from paddlellm.errors import UserError
from paddlellm.models.llama.checkpoint import read_config, read_state_dict

DIMS = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2)


def hf_model(tie=False, dtype=torch.float32):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**DIMS, tie_word_embeddings=tie)
    return transformers.LlamaForCausalLM(config).to(dtype).eval()


def as_numpy(tensor):
    return tensor.detach().float().numpy()


def save_bin(model, path, shards=1, views=False, parameters=False):
    """pytorch_model.bin (or `shards` shards plus index) the way transformers 4 wrote them; `views` stores
    every tensor as a view into one shared storage (offsets), transposed ones with Fortran strides;
    `parameters` stores nn.Parameter objects instead of plain tensors."""
    path.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(path)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if parameters:
        state = {k: torch.nn.Parameter(v) for k, v in state.items()}
    if views:
        flat, offset = torch.zeros(sum(v.numel() for v in state.values()), dtype=model.dtype), 0
        for name, value in state.items():
            chunk = flat[offset: offset + value.numel()]
            view = chunk.view(value.shape[::-1]).t() if value.ndim == 2 else chunk.view(value.shape)
            view.copy_(value)  # same values; 2-D ones with column-major strides
            state[name], offset = view, offset + value.numel()
    if shards == 1:
        torch.save(state, path / "pytorch_model.bin")
        return path
    names = list(state)
    weight_map = {}
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = names[i::shards]
        torch.save({k: state[k] for k in part}, path / file)
        weight_map.update({k: file for k in part})
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path


HF_FORMATS = {
    "safetensors": lambda m, p: m.save_pretrained(p),
    "safetensors_sharded": lambda m, p: m.save_pretrained(p, max_shard_size="20KB"),
    "bin": lambda m, p: save_bin(m, p),
    "bin_sharded": lambda m, p: save_bin(m, p, shards=3),
    "bin_views": lambda m, p: save_bin(m, p, views=True),
    "bin_parameters": lambda m, p: save_bin(m, p, parameters=True),
}


@pytest.mark.parametrize("fmt", sorted(HF_FORMATS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["f32", "bf16", "f16"])
def test_hf_checkpoints(tmp_path, fmt, dtype):
    model = hf_model(dtype=dtype)
    HF_FORMATS[fmt](model, tmp_path)
    if fmt.endswith("sharded"):
        assert len(list(tmp_path.glob("*-of-*"))) > 1
    got = read_state_dict(tmp_path)
    want = model.state_dict()
    assert sorted(got) == sorted(want)
    expected_dtype = {torch.float32: np.float32, torch.bfloat16: ml_dtypes.bfloat16, torch.float16: np.float16}[dtype]
    for name, value in want.items():
        assert got[name].dtype == expected_dtype, name
        assert got[name].shape == tuple(value.shape), name
        np.testing.assert_array_equal(got[name].astype(np.float32), as_numpy(value), err_msg=name)


def test_tied_embeddings_without_lm_head(tmp_path):
    model = hf_model(tie=True)
    model.save_pretrained(tmp_path)
    got = read_state_dict(tmp_path)
    assert "lm_head.weight" not in got
    np.testing.assert_array_equal(got["model.embed_tokens.weight"], as_numpy(model.model.embed_tokens.weight))


def test_read_config(tmp_path):
    hf_model().config.save_pretrained(tmp_path)
    config = read_config(tmp_path)
    assert config["num_key_value_heads"] == 2 and config["hidden_size"] == 64


# ---- paddleformers ----------------------------------------------------------------------------------

PADDLE_SAVES = {  # name: save_pretrained kwargs
    "flex_default": {},  # HF-layout model-00001-of-00001.safetensors + index, no metadata
    "flex_sharded": dict(max_shard_size="20KB"),
    "pdparams": dict(save_to_hf=False, save_checkpoint_format="legacy"),  # model_state.pdparams, Paddle layout
    "pdparams_sharded": dict(save_to_hf=False, save_checkpoint_format="legacy", max_shard_size="20KB"),
    "safetensors_paddle": dict(save_to_hf=False, safe_serialization=True, save_checkpoint_format="legacy"),
    "safetensors_hf": dict(save_to_hf=True, save_checkpoint_format="legacy"),  # metadata format "pt"
}


@pytest.fixture(scope="module")
def paddle_model():
    import paddle
    from paddleformers.transformers import LlamaConfig, LlamaForCausalLM

    paddle.seed(0)
    config = LlamaConfig(**DIMS, fuse_rms_norm=False, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    # Paddle Linear weights are [in, out]; HF wants [out, in]. lm_head is [vocab, hidden] already.
    want = {k: v.T if k.endswith("_proj.weight") else v for k, v in state.items()}
    return model, state, want


@pytest.mark.parametrize("save", sorted(PADDLE_SAVES))
def test_paddleformers_checkpoints(tmp_path, paddle_model, save):
    model, _, want = paddle_model
    model.save_pretrained(tmp_path / "m", **PADDLE_SAVES[save])
    got = read_state_dict(tmp_path / "m")
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_paddlenlp_fused_pdparams(tmp_path, paddle_model):
    """PaddleNLP-era names (llama.*), fused qkv (fused with paddleformers' own fuse function), fused
    gate/up and an lm_head stored [hidden, vocab]."""
    import paddle
    from paddleformers.transformers.conversion_utils import fuse_param_func

    model, state, want = paddle_model
    fuse = fuse_param_func()
    legacy = {"llama.embed_tokens.weight": state["model.embed_tokens.weight"],
              "llama.norm.weight": state["model.norm.weight"], "lm_head.weight": state["lm_head.weight"].T}
    for i in range(DIMS["num_hidden_layers"]):
        p, q = f"model.layers.{i}.", f"llama.layers.{i}."
        qkv = [state[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]
        legacy[q + "self_attn.qkv_proj.weight"] = fuse(qkv, is_qkv=True, num_heads=4, num_key_value_heads=2)
        legacy[q + "mlp.gate_up_fused_proj.weight"] = np.concatenate(
            [state[p + "mlp.gate_proj.weight"], state[p + "mlp.up_proj.weight"]], axis=-1)
        for n in ("self_attn.o_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight",
                  "post_attention_layernorm.weight"):
            legacy[q + n] = state[p + n]
    model.config.save_pretrained(tmp_path)
    paddle.save({k: paddle.to_tensor(v) for k, v in legacy.items()}, str(tmp_path / "model_state.pdparams"))
    got = read_state_dict(tmp_path)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_paddleformers_bf16_pdparams(tmp_path, paddle_model):
    model, _, _ = paddle_model
    import copy

    bf16 = copy.deepcopy(model).to(dtype="bfloat16")
    want = {k: v.astype("float32").numpy() for k, v in bf16.state_dict().items()}
    bf16.save_pretrained(tmp_path, **PADDLE_SAVES["pdparams"])
    got = read_state_dict(tmp_path)
    for name, value in want.items():
        assert got[name].dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(got[name].astype(np.float32), value.T if name.endswith("_proj.weight") else value)


# ---- user errors ----------------------------------------------------------------------------------


@pytest.fixture()
def saved(tmp_path):
    hf_model().save_pretrained(tmp_path / "m")
    return tmp_path / "m"


def edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


def expect_error(path, *fragments, reader=read_state_dict):
    with pytest.raises(UserError) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message and "(" in message
    for fragment in fragments:
        assert str(fragment) in message, message


def test_missing_dir(tmp_path):
    expect_error(tmp_path / "nope", tmp_path / "nope", reader=read_config)
    expect_error(tmp_path / "nope", tmp_path / "nope")


def test_missing_config(saved):
    (saved / "config.json").unlink()
    expect_error(saved, saved / "config.json", reader=read_config)
    expect_error(saved, saved / "config.json")


def test_corrupt_config(saved):
    (saved / "config.json").write_text('{"vocab_size": 128,\n "hidden_size": }')
    expect_error(saved, saved / "config.json", "line 2 column", reader=read_config)


def test_config_missing_key(saved):
    edit_config(saved, intermediate_size=None)
    expect_error(saved, saved / "config.json", "intermediate_size", reader=read_config)


def test_no_weight_files(saved):
    (saved / "model.safetensors").unlink()
    expect_error(saved, saved, "model.safetensors")


def test_missing_tensor(saved):
    tensors = load_file(saved / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, saved / "model.safetensors", metadata={"format": "pt"})
    expect_error(saved, saved, "model.layers.1.self_attn.k_proj.weight")


def test_missing_lm_head_untied(saved):
    tensors = load_file(saved / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, saved / "model.safetensors")
    expect_error(saved, saved, "lm_head.weight")


def test_wrong_shape(saved):
    edit_config(saved, num_key_value_heads=4)
    expect_error(saved, saved / "model.safetensors", "model.layers.0.self_attn.k_proj.weight", "(32, 64)", "(64, 64)")


def test_missing_shard(tmp_path):
    hf_model().save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    expect_error(tmp_path, shard, "model.safetensors.index.json")


def test_corrupt_index(tmp_path):
    hf_model().save_pretrained(tmp_path, max_shard_size="20KB")
    (tmp_path / "model.safetensors.index.json").write_text("{")
    expect_error(tmp_path, tmp_path / "model.safetensors.index.json")


def test_truncated_safetensors(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[:100])
    expect_error(saved, saved / "model.safetensors")


def test_bin_with_foreign_objects_is_refused(tmp_path):
    save_bin(hf_model(), tmp_path)
    torch.save({"x": collections.Counter(a=1)}, tmp_path / "pytorch_model.bin")
    expect_error(tmp_path, tmp_path / "pytorch_model.bin", "collections.Counter")


def test_not_a_zip_bin(tmp_path):
    save_bin(hf_model(), tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02not a zip")
    expect_error(tmp_path, tmp_path / "pytorch_model.bin")


def test_safetensors_preferred_over_bin(tmp_path):
    model = hf_model()
    save_bin(model, tmp_path)
    model.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"garbage")  # would fail if it were read
    assert len(read_state_dict(tmp_path)) == len(model.state_dict())
