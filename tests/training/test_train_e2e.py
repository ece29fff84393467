"""The users' workflow end to end on the CPU, through the recipes: train, (merge), export, static predict."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import paddle

from cli_helpers import ROOT, SMOKE, eval_losses, losses, run_recipe

NO_CHECKPOINTS = ["--save_steps", "1000"]  # a SmolLM2 checkpoint with AdamW state is 1.6 GB


def ok(proc):
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def export_and_predict(tmp_path, out, env=None):
    inference = tmp_path / "inference"
    ok(run_recipe("export_npu.sh", {"DEVICE": "cpu", "WORK": tmp_path, **(env or {})}, out, inference))
    data = tmp_path / "p.jsonl"
    data.write_text('{"src": "What is the capital of France?"}\n{"src": "Name a primary color."}\n')
    results = tmp_path / "results.jsonl"
    ok(run_recipe("predict_npu.sh", {"WORK": tmp_path}, inference, "--data_file", data, "--output_file", results,
                  "--max_length", 12, "--decode_strategy", "greedy_search", "--batch_size", 2))
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 2 and all(r["output_ids"] for r in rows)
    return rows


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def test_smollm2_sft_lowers_the_dev_loss_then_exports_and_predicts(smollm2_checkpoint, tmp_path):
    out = tmp_path / "sft"
    env = {"DEVICE": "cpu", "MODEL": smollm2_checkpoint, "OUTPUT_DIR": out, "OVERRIDE_CONFIG": SMOKE, "WORK": tmp_path}
    before = ok(run_recipe("llama_npu_sft_N1C8.sh", {**env, "OUTPUT_DIR": tmp_path / "before"}, 1,
                           "--do_train", "false", "--evaluation_strategy", "epoch"))
    log = ok(run_recipe("llama_npu_sft_N1C8.sh", env, 8, "--evaluation_strategy", "epoch", *NO_CHECKPOINTS))
    assert sorted(losses(log)) == list(range(1, 9))
    assert eval_losses(log)[-1] < eval_losses(before)[-1] - 0.05
    export_and_predict(tmp_path, out)


def test_smollm2_lora_changes_only_the_adapter_and_merges_exactly(smollm2_checkpoint, tmp_path):
    from paddleformers.peft import LoRAModel
    from paddleformers.transformers import AutoConfig, LlamaForCausalLM

    from paddlellm.models.llama.loader import load_model
    from paddlellm.predictor.runners import DynamicBlockRunner, prompt_logits

    base_before = digest(smollm2_checkpoint)
    out = tmp_path / "lora"
    env = {"DEVICE": "cpu", "MODEL": smollm2_checkpoint, "OUTPUT_DIR": out, "OVERRIDE_CONFIG": SMOKE, "WORK": tmp_path}
    log = ok(run_recipe("llama_npu_lora_N1C8.sh", env, 4))
    assert sorted(losses(log)) == [1, 2, 3, 4]
    assert digest(smollm2_checkpoint) == base_before
    assert (out / "lora_config.json").is_file()
    from safetensors.numpy import load_file

    adapter = {}
    for path in out.glob("peft_model*.safetensors"):
        adapter.update(load_file(path))
    assert adapter and all(name.endswith((".lora_A", ".lora_B")) for name in adapter)
    assert any(np.abs(v).max() > 0 for k, v in adapter.items() if k.endswith(".lora_B"))  # it trained

    merged = tmp_path / "merged"
    ok(subprocess.run([sys.executable, str(ROOT / "llm" / "tools" / "merge_lora_params.py"), "--model_name_or_path",
                       str(smollm2_checkpoint), "--lora_path", str(out), "--merge_lora_model_path", str(merged)],
                      capture_output=True, text=True, timeout=600))
    ids = np.array([[1, 504, 3458, 314, 260, 3575, 282, 4649, 47, 2]], dtype=np.int64)
    ours = prompt_logits(DynamicBlockRunner(load_model(merged), 2), ids.tolist())
    config = AutoConfig.from_pretrained(str(smollm2_checkpoint))
    config.fuse_rms_norm = False  # its fused kernel has no CPU build
    config.pad_token_id = None  # else Paddle's Embedding zeroes <|im_end|> (SmolLM2's pad id): see trainer.py
    base = LlamaForCausalLM.from_pretrained(str(smollm2_checkpoint), config=config, dtype="float32")
    reference = LoRAModel.from_pretrained(base, lora_path=str(out))
    reference.eval()
    with paddle.no_grad():
        output = reference(input_ids=paddle.to_tensor(ids))
    logits = (output[0] if isinstance(output, tuple) else output.logits).numpy()[0, -1]
    print("max |merged - base+adapter| =", np.abs(ours[0] - logits).max(), "max |logit| =", np.abs(logits).max())
    assert np.abs(ours[0] - logits).max() < 1e-5 * max(1.0, np.abs(logits).max())
    export_and_predict(tmp_path, out, {"LORA_BASE": smollm2_checkpoint})


def test_tiny_pretraining_on_the_demo_corpus_through_the_recipe(tiny_llama, tmp_path):
    prefix = tmp_path / "data" / "demo"
    prefix.parent.mkdir()
    ok(subprocess.run([sys.executable, str(ROOT / "llm" / "tools" / "preprocess_data.py"), "--input_path",
                       str(ROOT / "llm" / "data" / "pretrain_demo" / "corpus.jsonl"), "--output_prefix", str(prefix),
                       "--model_name_or_path", str(tiny_llama), "--append_eos"], capture_output=True, text=True))
    out = tmp_path / "ppt"
    env = {"DEVICE": "cpu", "MODEL": tiny_llama, "INPUT_DIR": prefix, "OUTPUT_DIR": out, "OVERRIDE_CONFIG": SMOKE,
           "WORK": tmp_path}
    log = ok(run_recipe("llama_npu_ppt_N1C8.sh", env, 12, "--continue_training", "false", "--learning_rate", "0.003"))
    curve = losses(log)
    assert sorted(curve) == list(range(1, 13))
    assert np.mean([curve[s] for s in (10, 11, 12)]) < np.mean([curve[s] for s in (1, 2, 3)]) - 0.3
    export_and_predict(tmp_path, out)


def test_two_process_data_parallel_on_the_cpu(tiny_llama, tmp_path):
    out, logs = tmp_path / "dp", tmp_path / "logs"
    env = {"DEVICE": "cpu", "NPROC": 2, "MODEL": tiny_llama, "OUTPUT_DIR": out, "OVERRIDE_CONFIG": SMOKE,
           "LOG_DIR": logs, "WORK": tmp_path}
    ok(run_recipe("llama_npu_sft_N1C8.sh", env, 3, *NO_CHECKPOINTS))
    ranks = sorted(p.name for p in logs.iterdir() if p.name.startswith("workerlog"))
    assert ranks == ["workerlog.0", "workerlog.1"]
    rank0 = (logs / "workerlog.0").read_text()
    # two data-parallel processes of 2 sequences each (cpu_smoke.json): 4 sequences per step
    assert "Total train batch size (w. parallel, distributed & accumulation) = 4" in rank0
    assert sorted(losses(rank0)) == [1, 2, 3]
    assert (out / "config.json").is_file()


def test_the_training_model_computes_what_the_inference_model_does(smollm2_checkpoint):
    """paddleformers' Llama as our trainer builds it (weights, config flags, pad id) against our inference
    model, on a chat prompt whose <|im_end|> is SmolLM2's pad id too."""
    from types import SimpleNamespace

    from paddlellm.models.llama.loader import load_model as load_inference_model
    from paddlellm.predictor.runners import DynamicBlockRunner, prompt_logits
    from paddlellm.tokenizer import load_tokenizer
    from paddlellm.training.config import MODEL_DATA_KEYS
    from paddlellm.training.trainer import load_model

    tokenizer = load_tokenizer(smollm2_checkpoint)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."},
                                          {"role": "user", "content": "Name a color."}])
    ids = np.array([tokenizer.encode(text, add_special_tokens=False)], dtype=np.int64)
    assert tokenizer.pad_token_id in ids[0]
    settings = {k: d for k, (_, d, _) in MODEL_DATA_KEYS.items()} | {"model_name_or_path": str(smollm2_checkpoint)}
    args = SimpleNamespace(tensor_model_parallel_size=1, tensor_parallel_rank=0, sequence_parallel=False,
                           recompute_granularity=None, recompute_method=None, recompute_num_layers=None,
                           bf16=False, fp16=False, pipeline_model_parallel_size=1, device="cpu")
    training_model = load_model(settings, args)
    training_model.eval()
    with paddle.no_grad():
        output = training_model(input_ids=paddle.to_tensor(ids))
    logits = (output[0] if isinstance(output, tuple) else output.logits).numpy()[0, -1]
    ours = prompt_logits(DynamicBlockRunner(load_inference_model(smollm2_checkpoint), 2), ids.tolist())
    assert np.abs(ours[0] - logits).max() < 1e-3
