"""--benchmark: synthetic or given prompts, exactly --max_length new tokens each, one table, a JSON file."""
import json

from cli_helpers import fails, write_jsonl
from paddlellm.export.main import main as export_main
from paddlellm.predictor.main import main


def test_benchmark_measures_exact_token_counts_and_writes_json(tiny_llama, tmp_path, capsys):
    block = tmp_path / "block"
    assert export_main(["--model_name_or_path", str(tiny_llama), "--output_path", str(block), "--block_attn",
                        "--block_size", "16"]) == 0
    capsys.readouterr()
    out = tmp_path / "bench.json"
    assert main(["--model_name_or_path", str(block), "--mode", "static", "--benchmark", "--src_length", "40",
                 "--max_length", "7", "--batch_size", "3", "--benchmark_requests", "5",
                 "--benchmark_output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| decode tok/s " in printed and "| time to first token (median / p90) |" in printed
    result = json.loads(out.read_text())
    # EOS is ignored: every request generates exactly --max_length tokens
    assert (result["num_requests"], result["src_length"], result["generated_tokens"]) == (5, 40, 5 * 7)
    assert len(result["samples"]["ttft_s"]) == 5 and len(result["samples"]["tpot_s"]) == 5
    steps = result["samples"]["step_seconds_prompt_decode"]
    assert sum(p for _, p, _ in steps) == 5 * 40  # every prompt token computed once (random prompts share nothing)
    assert sum(d for _, _, d in steps) == 5 * 6  # the last sampled token is never fed back
    assert result["prompt_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0 and result["peak_rss_mb"] > 0
    assert len(result["commit"]) == 40 and result["machine"]["isa"] in ("avx512", "avx2", "scalar")

    data = write_jsonl(tmp_path / "prompts.jsonl", [{"src": "Hello there"}, {"src": "The quick brown fox"}])
    assert main(["--model_name_or_path", str(block), "--mode", "static", "--benchmark", "--data_file", str(data),
                 "--max_length", "4", "--benchmark_output", str(out)]) == 0
    assert json.loads(out.read_text())["generated_tokens"] == 2 * 4


def test_benchmark_refuses_the_removed_dense_step(exported, capsys):
    message = fails(capsys, main, ["--model_name_or_path", exported, "--mode", "static", "--benchmark", "--block_attn",
                                   "false"])
    assert "--block_attn false: the dense-cache step was removed" in message
