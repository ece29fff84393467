"""Build the inference model from a checkpoint directory (HF names and layout, see checkpoint.py)."""
import numpy as np
import paddle

from paddlellm import ops
from paddlellm.device import compute_dtype, is_present, uses_cpu_ops
from paddlellm.errors import UserError
from paddlellm.models.llama.checkpoint import read_config, read_state_dict
from paddlellm.models.llama.config import LlamaConfig
from paddlellm.models.llama.model import LlamaForCausalLM
from paddlellm.quantization import (DEFAULT_GROUP_SIZE, check_a8w8_sizes, check_group_size, check_quant_type,
                                    quantize_int4, quantize_int8)


def load_config(model_dir):
    return LlamaConfig.from_dict(read_config(model_dir), source=f"{model_dir}/config.json")


def load_model(model_dir, dtype="float32", device="cpu", lora_path=None, portable=False, quant_type=None,
               quant_lm_head=False, group_size=DEFAULT_GROUP_SIZE):
    """The inference model in eval mode, weights in `dtype`, math in compute_dtype(dtype, device); a LoRA
    adapter at `lora_path` is merged into the weights first, then the projections are quantized as `quant_type`
    says (paddlellm.quantization; int4 in groups of `group_size` rows; the lm_head too with `quant_lm_head`),
    which only a portable model may be. It runs on the device's op library (the CPU's
    where the device is not present: enough to trace its program for the device), on the CPU on its own
    ops (see uses_cpu_ops) unless `portable`: the program export traces, which the device's IR passes fuse
    when the predictor starts."""
    config = load_config(model_dir)
    ops.use_device(device, present=is_present(device))
    if lora_path is None:
        state = read_state_dict(model_dir)
    else:
        from paddlellm.models.llama.lora import merged_state_dict

        state = merged_state_dict(model_dir, lora_path)
    check_quant_type(quant_type)
    input_sizes = [config.hidden_size, config.num_attention_heads * config.head_dim, config.intermediate_size]
    if quant_type == "weight_only_int4":
        check_group_size(group_size, input_sizes)
    elif quant_type == "a8w8":
        check_a8w8_sizes(input_sizes)
    if quant_type is not None and not portable:
        raise UserError(f"--quant_type {quant_type}: quantized models are exported (llm/predict/export_model.py "
                        "--quant_type), then predicted with --mode static")
    model = LlamaForCausalLM(config, dtype=dtype, compute_dtype=compute_dtype(dtype, device), quant_type=quant_type,
                             quant_lm_head=quant_lm_head, group_size=group_size)
    assign_hf_weights(model, state)
    if uses_cpu_ops(device, dtype) and not portable:
        model.use_cpu_ops()
    model.eval()
    return model


def assign_hf_weights(model, state):
    """Copy HF-layout weights ([out, in]) into the fused, [in, out] parameters of `model`."""
    def hf(name):
        return np.asarray(state[name], dtype=np.float32)

    def put(param, array):
        value = paddle.to_tensor(np.ascontiguousarray(array, dtype=np.float32))
        param.set_value(value.astype(param.dtype))

    def put_projection(owner, name, array):  # quantized with its scales where the model quantizes it
        scale = getattr(owner, name + "_scale")
        if scale is None:
            return put(getattr(owner, name), array)
        offset = getattr(owner, name + "_offset")
        if offset is not None:  # int4, in groups of rows
            q, scales, offsets = quantize_int4(array, array.shape[0] // scale.shape[0])
            offset.set_value(paddle.to_tensor(offsets))
        else:
            q, scales = quantize_int8(array)
        getattr(owner, name).set_value(paddle.to_tensor(q))
        scale.set_value(paddle.to_tensor(scales))

    put(model.embed_tokens, hf("model.embed_tokens.weight"))
    put(model.norm, hf("model.norm.weight"))
    head = "lm_head.weight" if "lm_head.weight" in state else "model.embed_tokens.weight"
    put_projection(model, "lm_head", hf(head).T)
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        qkv = [hf(p + f"self_attn.{n}_proj.weight").T for n in "qkv"]
        put_projection(layer, "qkv_proj", np.concatenate(qkv, axis=1))
        put_projection(layer, "o_proj", hf(p + "self_attn.o_proj.weight").T)
        put_projection(layer, "gate_up_proj",
                       np.concatenate([hf(p + "mlp.gate_proj.weight").T, hf(p + "mlp.up_proj.weight").T], axis=1))
        put_projection(layer, "down_proj", hf(p + "mlp.down_proj.weight").T)
        put(layer.input_layernorm, hf(p + "input_layernorm.weight"))
        put(layer.post_attention_layernorm, hf(p + "post_attention_layernorm.weight"))
