"""What SFT, LoRA and pretraining share: device checks, the paddleformers model, the Trainer, saving."""
import logging
import os
import sys
from pathlib import Path

import numpy as np
import paddle

from paddlellm.device import check_device
from paddlellm.errors import UserError
from paddlellm.files import read_json
from paddlellm.tokenizer import copy_tokenizer_files

# Fused kernels and half-precision training need an accelerator; on the CPU they are errors, not silently off.
ACCELERATOR_ONLY = ("use_flash_attention", "use_fused_rms_norm", "use_fused_rope", "fuse_attention_qkv",
                    "fuse_attention_ffn", "bf16", "fp16")
DEFAULT_LORA_TARGETS = [f".*{name}.*" for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]


def check_device_settings(settings, training):
    """Pick the device (as PaddleNLP: --device, default gpu when Paddle has CUDA, else cpu) and check it;
    then set up the training log and write the notes about the settings into it."""
    device = training.get("device") or ("gpu" if paddle.is_compiled_with_cuda() else "cpu")
    check_device(device)
    training["device"] = "gpu" if device == "dcu" else device
    if device == "cpu":
        for key in ACCELERATOR_ONLY:
            if settings.get(key) or training.get(key):
                raise UserError(f"'{key}' needs an accelerator (set it false when training with --device cpu; "
                                "the recipes in llm/ turn it off themselves with DEVICE=cpu)")
    logger = training_logger(settings["log_level"])
    for note in settings.get("notes", ()):
        logger.info(note)


# Lines of paddleformers that say nothing a user of this trainer can act on: dropped from its logger
# (a filter on the logger itself, so that it also holds for the lines its import writes).
THIRD_PARTY_NOISE = ("Asynchronous saving is not supported", "Flag FLAGS_flash_attn_version cannot set its value",
                     "set FLAGS_flash_attn_version to")
logging.getLogger("PaddleFormers").addFilter(
    lambda record: not any(line in str(record.msg) for line in THIRD_PARTY_NOISE))


def define_missing_gpt_model():
    """paddleformers 1.2.0's evaluation_loop checks `isinstance(self.model.model, GPTModel)` for LoRA models,
    but defines GPTModel only with paddlefleet installed: evaluating a LoRA model fails with a NameError.
    Give the name a class that no model is an instance of (what the check means without paddlefleet)."""
    import paddleformers.trainer.trainer as paddleformers_trainer

    if not hasattr(paddleformers_trainer, "GPTModel"):
        paddleformers_trainer.GPTModel = type("GPTModelNotInstalled", (), {})


def training_logger(level):
    """paddleformers' logger at `level` (its settings dump is at debug), without colour codes when the log
    goes to a file or a pipe."""
    from paddleformers.utils.log import logger

    logger.set_level(level.upper())
    logger.handler.stream = sys.stderr  # the current one (its handler keeps the stderr of its import)
    if not sys.stderr.isatty():
        logger.handler.setFormatter(logging.Formatter("[%(asctime)-15s] [%(levelname)8s] - %(message)s"))
    return logger


def prepare_output_dir(training):
    """The checkpoint to resume from: the last one in output_dir unless overwrite_output_dir."""
    from paddleformers.trainer.trainer_utils import get_last_checkpoint

    output_dir = Path(training["output_dir"])
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"output_dir {output_dir} is a file (give a directory)")
    if training.get("resume_from_checkpoint"):
        checkpoint = Path(training.pop("resume_from_checkpoint"))
        if not checkpoint.is_dir():
            raise UserError(f"resume_from_checkpoint {checkpoint} does not exist")
        return str(checkpoint)
    if output_dir.is_dir() and not training.get("overwrite_output_dir"):
        return get_last_checkpoint(str(output_dir))
    return None


def load_model(settings, args, from_scratch=False, sequence_length=None):
    """paddleformers' Llama training model (optionally wrapped with LoRA) with the recipe's fused-op flags,
    split for tensor parallelism as the TrainingArguments `args` (already built) say. With sequence
    parallelism every batch is `sequence_length` tokens long (the collator pads to it)."""
    from paddleformers.transformers import AutoConfig, LlamaForCausalLM, LlamaForCausalLMPipe

    model_dir = settings["model_name_or_path"]
    if not Path(model_dir, "config.json").is_file():
        raise UserError(f"{model_dir}/config.json is missing (model_name_or_path must be a local Llama checkpoint)")
    config = AutoConfig.from_pretrained(model_dir)
    config.use_flash_attention = settings["use_flash_attention"]
    config.fuse_rms_norm = settings["use_fused_rms_norm"]
    config.use_fused_rope = settings["use_fused_rope"]
    config.fuse_attention_qkv = settings["fuse_attention_qkv"]
    config.fuse_attention_ffn = settings["fuse_attention_ffn"]
    config.tensor_parallel_output = settings["tensor_parallel_output"]
    config.tensor_model_parallel_size = args.tensor_model_parallel_size
    config.tensor_parallel_rank = max(args.tensor_parallel_rank, 0)
    config.sequence_parallel = args.sequence_parallel
    if args.sequence_parallel:  # its attention unflattens [batch * length / tp, hidden] with this length
        config.max_sequence_length = sequence_length
    for name in ("recompute_granularity", "recompute_method", "recompute_num_layers"):
        setattr(config, name, getattr(args, name))
    dtype = "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
    # Paddle's Embedding outputs zeros for padding_idx (torch's only stops its gradient), and paddleformers
    # passes pad_token_id as padding_idx: where pad is eos (SmolLM2: <|im_end|>) every real eos would be a
    # zero vector in training but not in inference. Labels, not pad ids, mark padding here.
    pad_token_id, config.pad_token_id = config.pad_token_id, None
    # with pipeline parallelism paddleformers' Trainer takes only the pipeline-layer model
    model_class = LlamaForCausalLMPipe if args.pipeline_model_parallel_size > 1 else LlamaForCausalLM
    if from_scratch or args.device == "cpu":
        model = model_class.from_config(config, dtype=dtype)
        if not from_scratch:
            assign_checkpoint(model, model_dir)
    else:  # on devices paddleformers' loader reshards the checkpoint for tensor parallelism
        model = model_class.from_pretrained(model_dir, config=config, dtype=dtype)
    model.config.pad_token_id = pad_token_id
    if settings["lora"]:
        model = wrap_lora(model, settings, dtype)
    return model


def assign_checkpoint(model, model_dir):
    """Load weights through our checkpoint reader: paddleformers' from_pretrained writes a metadata file
    into the model directory and, with several processes, reshards through `.cuda()`, so it cannot run
    multi-process on the CPU. Its names are HF's; its Linear weights are [in, out], lm_head [vocab, hidden].
    Split for tensor parallelism, a parameter holds this rank's contiguous slice along its one split axis
    (columns of q/k/v/gate/up, rows of o/down, vocabulary rows of the embedding and lm_head)."""
    from paddlellm.models.llama.checkpoint import read_config, read_state_dict, stored_quantization

    if stored_quantization(read_config(model_dir)):
        raise UserError(f"{model_dir} stores its projections quantized (convert_gguf.py --keep_quant): training "
                        "needs float weights (convert the GGUF without --keep_quant)")
    state = read_state_dict(model_dir)
    degree, rank = max(model.config.tensor_model_parallel_size, 1), max(model.config.tensor_parallel_rank, 0)
    values = {}
    for name, param in model.state_dict().items():
        source = name if name in state else "model.embed_tokens.weight" if name == "lm_head.weight" else None
        if source is None:
            raise UserError(f"{model_dir}: the weights lack {name} (the checkpoint does not fit this model)")
        array = state[source].T if name.endswith("_proj.weight") else state[source]
        array = tensor_parallel_slice(array, list(param.shape), degree, rank, name, model_dir)
        values[name] = paddle.to_tensor(np.ascontiguousarray(array, dtype=np.float32)).astype(param.dtype)
    model.set_state_dict(values)


def tensor_parallel_slice(array, shape, degree, rank, name, model_dir):
    """This rank's slice of a full weight for a parameter of `shape` (the full weight when it fits)."""
    if list(array.shape) == shape:
        return array
    split = [axis for axis, (full, part) in enumerate(zip(array.shape, shape)) if full != part]
    if (len(array.shape) != len(shape) or len(split) != 1 or degree <= 1
            or array.shape[split[0]] != shape[split[0]] * degree):
        raise UserError(f"{model_dir}: {name} has shape {list(array.shape)}, the model expects {shape} "
                        f"(tensor parallel degree {degree}; the checkpoint does not fit this model)")
    axis, size = split[0], shape[split[0]]
    return np.take(array, range(rank * size, (rank + 1) * size), axis=axis)


def wrap_lora(model, settings, dtype):
    from paddleformers.peft import LoRAConfig, LoRAModel

    if settings["lora_path"]:
        if not Path(settings["lora_path"]).is_dir():
            raise UserError(f"lora_path {settings['lora_path']} does not exist")
        model = LoRAModel.from_pretrained(model=model, lora_path=settings["lora_path"])
    else:
        rank = settings["lora_rank"]
        alpha = settings["lora_alpha"] if settings["lora_alpha"] > 0 else 2.0 * rank
        config = LoRAConfig(target_modules=settings["lora_target_modules"] or DEFAULT_LORA_TARGETS,
                            r=rank, lora_alpha=alpha, dtype=dtype)
        model = LoRAModel(model, config)
    model.mark_only_lora_as_trainable()
    return model


def default_checkpoint_format(training):
    """flex_checkpoint (paddleformers' default) cannot resume without a hybrid-parallel group, i.e. in a single
    process; unified checkpoints resume everywhere and are what PaddleNLP's recipes use. But paddleformers 1.2's
    unified checkpoint of a tensor-parallel Llama raises NotImplementedError (its Llama has no
    _get_tensor_parallel_mappings), and a tensor-parallel run has the hybrid group flex checkpoints need."""
    tensor_parallel = training.get("tensor_model_parallel_size") or 1
    return "flex_checkpoint" if tensor_parallel > 1 else "unified_checkpoint"


def training_arguments(training):
    from paddleformers.trainer import TrainingArguments

    # paddleformers' defaults that contradict other settings (or the CPU); a value the user gave always wins.
    training.setdefault("report_to", "none")
    training.setdefault("save_checkpoint_format", default_checkpoint_format(training))
    training.setdefault("load_checkpoint_format", training["save_checkpoint_format"])
    # amp_master_grad defaults to True, which paddleformers itself refuses when neither fp16 nor bf16 is on
    training.setdefault("amp_master_grad", bool(training.get("bf16") or training.get("fp16")))
    # do_eval alone means "evaluate after training" (PaddleNLP; train_and_save does it), which paddleformers
    # refuses without an evaluation_strategy: it reads do_eval only for evaluations inside its loop
    in_loop = training.get("evaluation_strategy", "no") != "no"
    try:
        return TrainingArguments(**{**training, "do_eval": bool(training.get("do_eval")) and in_loop})
    except (ValueError, TypeError, AssertionError) as exc:
        raise UserError(f"training settings rejected by paddleformers: {str(exc).strip().splitlines()[0]}") from None


def save_final(trainer, settings, output_dir):
    """Final weights (or the LoRA adapter) and the tokenizer files, in output_dir (rank 0 writes): one whole
    model, never per-rank shards, however many tensor-parallel ranks trained it."""
    args = trainer.args
    if args.tensor_model_parallel_size > 1:
        save_merged_tensor_parallel(trainer, output_dir)
    else:
        trainer.save_model(output_dir, merge_tensor_parallel=True, last_fc_to_hf=True)
    if args.should_save:
        copy_tokenizer_files(settings.get("tokenizer_name_or_path") or settings["model_name_or_path"], output_dir)


def save_merged_tensor_parallel(trainer, output_dir):
    """The final save of a tensor-parallel run, written as a 1-process run writes it (paddleformers'
    single-card unified checkpoint: model- or peft_model-00001-of-00001.safetensors, its index, config.json
    or lora_config.json, tensor_model_parallel_size 1).

    paddleformers 1.2.0 has no merge that works here: its unified-checkpoint and `merge_tensor_parallel`
    paths call Llama's `_get_tensor_parallel_mappings`, which raises NotImplementedError; the sharding_io
    path writes per-rank model.tpNN files; the flex_checkpoint HF saver moves every CPU tensor to `.cuda()`.
    So each rank all-gathers every split tensor over the tensor-parallel group and joins the slices along
    the parameter's `split_axis` (as Paddle's parallel layers mark them); the saving process writes."""
    import json

    from paddle.distributed import fleet
    from paddleformers.peft import LoRAModel
    from paddleformers.trainer.unified_checkpoint.load_save_single_card import save_file_sync
    from paddleformers.trainer.unified_checkpoint.utils import get_expected_state_dict, save_model_config
    from paddleformers.transformers.model_utils import unwrap_model
    from paddleformers.transformers.utils import dtype_byte_size
    from paddleformers.utils.env import SAFE_PEFT_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_INDEX_NAME

    model = unwrap_model(trainer.model)
    if trainer.args.pipeline_model_parallel_size > 1:
        raise UserError("the final save cannot merge tensor-parallel shards of a pipeline-parallel run "
                        "(train with pipeline_parallel_degree 1 when tensor_parallel_degree > 1)")
    group = fleet.get_hybrid_communicate_group().get_model_parallel_group()
    state = {}
    for name, tensor in get_expected_state_dict(model, concat_additional_adapter=True).items():
        if getattr(tensor, "is_distributed", False):
            parts = []
            paddle.distributed.all_gather(parts, tensor.contiguous(), group=group)
            tensor = paddle.concat(parts, axis=tensor.split_axis)
        state[name] = tensor
    if trainer.args.should_save:
        lora = isinstance(model, LoRAModel)
        weights = "peft_model-00001-of-00001.safetensors" if lora else "model-00001-of-00001.safetensors"
        index = {"metadata": {"total_size": sum(int(t.numel()) * dtype_byte_size(t.dtype) for t in state.values())},
                 "weight_map": {name: weights for name in state}}
        if lora:
            index["type"] = "lora"
        os.makedirs(output_dir, exist_ok=True)
        save_file_sync(state, os.path.join(output_dir, weights))
        Path(output_dir, SAFE_PEFT_WEIGHTS_INDEX_NAME if lora else SAFE_WEIGHTS_INDEX_NAME).write_text(
            json.dumps(index, indent=4))
        config = model.lora_config if lora else model.config
        degree, config.tensor_model_parallel_size = config.tensor_model_parallel_size, 1
        try:
            save_model_config(model, output_dir)
        finally:
            config.tensor_model_parallel_size = degree
    paddle.distributed.barrier()


def world_size():
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def train_and_save(settings, training, train_set, dev_set, collator, from_scratch=False, sequence_length=None):
    """Build the Trainer once all input is checked; train (resuming from output_dir's last checkpoint),
    save the final model, tokenizer files and trainer_state.json, evaluate on dev_set when given. A run
    that has already finished says so and trains nothing."""
    from paddleformers.trainer import Trainer

    training.setdefault("do_train", True)
    resume = prepare_output_dir(training)
    args = training_arguments(training)
    finished = finished_step(args, resume) if args.do_train else None
    final_state = Path(args.output_dir, "trainer_state.json")
    done = (f"{args.output_dir}: this training has finished (global_step {finished}); nothing to train (raise "
            "max_steps to train on from there, or set overwrite_output_dir true to start over)")
    if finished is not None and final_state.is_file():
        training_logger(settings["log_level"]).info(done)
        return 0
    model = load_model(settings, args, from_scratch=from_scratch, sequence_length=sequence_length)
    define_missing_gpt_model()
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=dev_set, data_collator=collator)
    if finished is not None:  # stopped between its last checkpoint and its final save: save from the checkpoint
        trainer._load_from_checkpoint(resume)  # paddleformers' own loader of a checkpoint's weights
        save_final(trainer, settings, args.output_dir)
        if args.should_save:
            checkpoint_state(resume).save_to_json(str(final_state))
        training_logger(settings["log_level"]).info(done)
        return 0
    if args.do_train:
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.log_metrics("train", result.metrics)
        save_final(trainer, settings, args.output_dir)
        trainer.save_state()  # trainer_state.json in output_dir: the mark of a finished run
    if dev_set is not None:
        trainer.log_metrics("eval", trainer.evaluate())
    return 0


def finished_step(args, resume):
    """The global step of an earlier run of this command that has finished, or None. A run finished when
    its final save wrote trainer_state.json into output_dir (unless max_steps now asks for more steps), or
    when its last checkpoint is at max_steps (paddleformers would resume and train one step past it)."""
    final_state = Path(args.output_dir, "trainer_state.json")
    if final_state.is_file() and not args.overwrite_output_dir:
        step = read_json(final_state).get("global_step", 0)
        if args.max_steps <= 0 or step >= args.max_steps:
            return step
    if resume and args.max_steps > 0 and checkpoint_state(resume).global_step >= args.max_steps:
        return checkpoint_state(resume).global_step
    return None


def checkpoint_state(checkpoint):
    """paddleformers' TrainerState of a checkpoint directory (trainer_state.bin)."""
    from paddleformers.trainer.trainer_callback import TrainerState
    from paddleformers.utils.env import TRAINER_STATE_NAME

    return TrainerState.load(str(Path(checkpoint, TRAINER_STATE_NAME)))


def wants_eval(training):
    return bool(training.get("do_eval")) or training.get("evaluation_strategy", "no") != "no"
