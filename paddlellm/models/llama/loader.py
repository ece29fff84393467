"""Build the inference model from a checkpoint directory (HF names and layout, see checkpoint.py)."""
import numpy as np
import paddle

from paddlellm import ops
from paddlellm.device import compute_dtype, is_present, uses_cpu_ops
from paddlellm.errors import UserError
from paddlellm.models.llama.checkpoint import read_config, read_state_dict, stored_quantization
from paddlellm.models.llama.config import LlamaConfig
from paddlellm.models.llama.model import LlamaForCausalLM
from paddlellm.quantization import (check_a8w8_sizes, check_group_size, check_quant_type, group_size_for,
                                    quantize_int4, quantize_int8)


def load_config(model_dir):
    return LlamaConfig.from_dict(read_config(model_dir), source=f"{model_dir}/config.json")


def resolve_quantization(model_dir, quant_type, group_size, lora_path=None, portable=True):
    """(quant_type, group_size) a model loads with: as asked, or as the checkpoint stores its projections
    (convert_gguf.py --keep_quant), which only a portable model without a LoRA adapter can take as they are."""
    stored = stored_quantization(read_config(model_dir))
    if stored is None:
        return quant_type, group_size
    where = f"{model_dir} stores its projections {stored[0]} in groups of {stored[1]} (convert_gguf.py --keep_quant)"
    if not portable:
        raise UserError(f"{where}: export it (llm/predict/export_model.py), then predict with --mode static")
    if lora_path is not None:
        raise UserError(f"{where}: a LoRA adapter merges into float weights (convert the GGUF without --keep_quant)")
    if quant_type not in (None, stored[0]) or (quant_type is not None and group_size != stored[1]):
        raise UserError(f"{where}: export it without --quant_type (or with --quant_type {stored[0]} --group_size "
                        f"{stored[1]}), or convert the GGUF without --keep_quant")
    return stored


def load_model(model_dir, dtype="float32", device="cpu", lora_path=None, portable=False, quant_type=None,
               quant_lm_head=False, group_size=None):
    """The inference model in eval mode, weights in `dtype`, math in compute_dtype(dtype, device); a LoRA
    adapter at `lora_path` is merged into the weights first, then the projections are quantized as `quant_type`
    says (paddlellm.quantization; int4 and int8 in groups of `group_size` rows, as group_size_for gives them; the
    lm_head too with `quant_lm_head`),
    which only a portable model may be. It runs on the device's op library (the CPU's
    where the device is not present: enough to trace its program for the device), on the CPU on its own
    ops (see uses_cpu_ops) unless `portable`: the program export traces, which the device's IR passes fuse
    when the predictor starts."""
    config = load_config(model_dir)
    quant_type, group_size = resolve_quantization(model_dir, quant_type, group_size, lora_path, portable)
    check_quant_type(quant_type)
    group_size = group_size_for(quant_type, group_size)
    ops.use_device(device, present=is_present(device))
    if lora_path is None:
        state = read_state_dict(model_dir)
    else:
        from paddlellm.models.llama.lora import merged_state_dict

        state = merged_state_dict(model_dir, lora_path)
    input_sizes = [config.hidden_size, config.num_attention_heads * config.head_dim, config.intermediate_size]
    if group_size is not None:
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

    def projection(names):  # [in, out], the names' outputs side by side; kept quantized: (q, scales[, offsets])
        if model.quant_type is not None and names[0] + "_scale" in state:
            return tuple(np.concatenate([np.asarray(state[n + suffix]).T for n in names], axis=1)
                         for suffix in ("", "_scale", "_offset") if names[0] + suffix in state)
        return np.concatenate([hf(n).T for n in names], axis=1)

    def put_projection(owner, name, array):  # quantized with its scales where the model quantizes it
        scale = getattr(owner, name + "_scale")
        if scale is None:
            return put(getattr(owner, name), array)
        offset = getattr(owner, name + "_offset")
        if isinstance(array, tuple):  # stored int4 or int8 (resolve_quantization: the model's type and groups)
            q, scales, *offsets = array
            if offsets:
                offset.set_value(paddle.to_tensor(np.ascontiguousarray(offsets[0], np.float32)))
        elif offset is not None:  # int4, in groups of rows
            q, scales, offsets = quantize_int4(array, array.shape[0] // scale.shape[0])
            offset.set_value(paddle.to_tensor(offsets))
        else:  # int8, per column or in groups of rows
            q, scales = quantize_int8(array, array.shape[0] // scale.shape[0] if len(scale.shape) == 2 else None)
        getattr(owner, name).set_value(paddle.to_tensor(np.ascontiguousarray(q, np.int8)))
        scale.set_value(paddle.to_tensor(np.ascontiguousarray(scales, np.float32)))

    put(model.embed_tokens, hf("model.embed_tokens.weight"))
    put(model.norm, hf("model.norm.weight"))
    head = "lm_head.weight" if "lm_head.weight" in state else "model.embed_tokens.weight"
    put_projection(model, "lm_head", hf(head).T)
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        put_projection(layer, "qkv_proj", projection([p + f"self_attn.{n}_proj.weight" for n in "qkv"]))
        put_projection(layer, "o_proj", projection([p + "self_attn.o_proj.weight"]))
        put_projection(layer, "gate_up_proj", projection([p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"]))
        put_projection(layer, "down_proj", projection([p + "mlp.down_proj.weight"]))
        put(layer.input_layernorm, hf(p + "input_layernorm.weight"))
        put(layer.post_attention_layernorm, hf(p + "post_attention_layernorm.weight"))
