"""The NPU pretraining recipe's output is where export_npu.sh is told to look: PaddleNLP's pretraining
writes to ./output, and `bash export_npu.sh ./output ./inference`, typed in the same directory, exports it."""
import json
import subprocess
import sys

from cli_helpers import GREEDY, ROOT, SMOKE, predict, run_recipe, write_jsonl


def ok(proc):
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def test_pretraining_then_export_output_as_typed(tiny_llama, tmp_path):
    work = tmp_path / "work"
    (work / "pre-data").mkdir(parents=True)  # the recipe's default INPUT_DIR, as in PaddleNLP
    ok(subprocess.run([sys.executable, str(ROOT / "llm" / "tools" / "preprocess_data.py"), "--input_path",
                       str(ROOT / "llm" / "data" / "pretrain_demo" / "corpus.jsonl"), "--output_prefix",
                       str(work / "pre-data" / "demo"), "--model_name_or_path", str(tiny_llama), "--append_eos"],
                      capture_output=True, text=True, timeout=300))

    # as a user types it, from one directory: no OUTPUT_DIR, no source path but ./output
    ok(run_recipe("llama_npu_ppt_N1C8.sh", {"DEVICE": "cpu", "MODEL": tiny_llama, "OVERRIDE_CONFIG": SMOKE,
                                            "WORK": work}, 3, "--learning_rate", "0.003"))
    output = work / "output"
    assert (output / "config.json").is_file() and list(output.glob("model*.safetensors"))
    ok(run_recipe("export_npu.sh", {"DEVICE": "cpu", "WORK": work}, "./output", "./inference"))
    inference = work / "inference"
    assert json.loads((inference / "paddlellm_manifest.json").read_text())["block_attn"] is True  # as PaddleNLP's

    data = write_jsonl(work / "prompts.jsonl", [{"src": "The quick brown fox"}, {"src": "Once upon a time"}])
    ok(run_recipe("predict_npu.sh", {"WORK": work}, "./inference", "--data_file", "prompts.jsonl",
                  "--output_file", "results.jsonl", "--chat_template", "none", *GREEDY))
    exported = [json.loads(line)["output_ids"] for line in (work / "results.jsonl").read_text().splitlines()]
    # the exported program is the pretrained model: the same greedy tokens as the checkpoint in ./output
    trained = predict(output, tmp_path / "dynamic.jsonl", "--mode", "dynamic", "--data_file", data,
                      "--chat_template", "none", *GREEDY)
    base = predict(tiny_llama, tmp_path / "base.jsonl", "--mode", "dynamic", "--data_file", data,
                   "--chat_template", "none", *GREEDY)
    assert exported == [r["output_ids"] for r in trained] and all(exported)
    assert exported != [r["output_ids"] for r in base]  # three steps at lr 3e-3 changed the model
