"""run_pretrain refuses bad input before it writes anything (the training itself: test_train_e2e.py)."""
from cli_helpers import SMOKE, fails
from paddlellm.training.pretrain import main


def test_bad_input(capsys, tmp_path, tiny_llama):
    out = tmp_path / "out"
    base = [SMOKE, "--device", "cpu", "--model_name_or_path", tiny_llama, "--output_dir", out]
    assert "missing key 'input_dir'" in fails(capsys, main, base)
    assert "no nowhere.bin and nowhere.idx" in fails(capsys, main, base + ["--input_dir", tmp_path / "nowhere"])
    (tmp_path / "two").mkdir()
    for name in ("a.idx", "b.idx"):
        (tmp_path / "two" / name).write_bytes(b"")
    assert "holds 2 .idx files" in fails(capsys, main, base + ["--input_dir", tmp_path / "two"])
    assert not out.exists()


def test_a_minimal_json_config_pretrains_on_the_cpu(tmp_path, tiny_llama):
    """Only the required keys and a few sizes: paddleformers' own defaults (amp_master_grad) must not stop it."""
    import json
    import subprocess
    import sys

    from cli_helpers import ROOT, losses

    prefix = tmp_path / "demo"
    subprocess.run([sys.executable, str(ROOT / "llm" / "tools" / "preprocess_data.py"), "--input_path",
                    str(ROOT / "llm" / "data" / "pretrain_demo" / "corpus.jsonl"), "--output_prefix", str(prefix),
                    "--model_name_or_path", str(tiny_llama), "--append_eos"], check=True, capture_output=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_name_or_path": str(tiny_llama), "input_dir": str(prefix),
                                  "output_dir": str(tmp_path / "out"), "max_steps": 2, "max_seq_length": 64,
                                  "logging_steps": 1, "device": "cpu"}))
    proc = subprocess.run([sys.executable, str(ROOT / "llm" / "run_pretrain.py"), str(config)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(losses(proc.stdout + proc.stderr)) == [1, 2]
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
