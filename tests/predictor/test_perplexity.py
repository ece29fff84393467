"""llm/tools/eval_ppl.py (paddlellm/predictor/perplexity.py): windows, and the predictor's perplexity against HF
transformers' on the same weights and windows."""
import json

import numpy as np
import pytest

from cli_helpers import fails
from paddlellm.errors import UserError
from paddlellm.predictor.perplexity import main, windows

TEXT = "The quick brown fox jumps over the lazy dog. Once upon a time there was a tiny language model. " * 3


@pytest.mark.parametrize("n, length, stride", [(100, 16, 8), (100, 16, 15), (17, 16, 1), (16, 16, 8), (2, 8, 4),
                                               (5, 16, 8)])
def test_every_token_but_the_first_is_scored_once_with_its_predecessor_in_the_window(n, length, stride):
    scored = []
    for begin, end, first in windows(n, length, stride):
        assert end - begin <= length and begin < first <= end  # the token before each scored one is fed too
        scored += range(first, end)
    assert scored == list(range(1, n))


def test_a_stride_that_skips_tokens_is_refused():
    with pytest.raises(UserError, match="--stride must be at least 1 and below --max_seq_length 16, got 16"):
        windows(100, 16, 16)


def hf_window_nll(checkpoint, ids, length, stride):
    """HF's sliding-window recipe: each window through the model, labels before its first scored token masked."""
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32).eval()
    total = 0.0
    for begin, end, first in windows(len(ids), length, stride):
        with torch.no_grad():
            logits = model(torch.tensor([ids[begin:end]])).logits[0].double()
        predicted = torch.log_softmax(logits[first - 1 - begin:end - 1 - begin], dim=-1)
        total -= predicted[torch.arange(end - first), torch.tensor(ids[first:end])].sum().item()
    return total


def test_perplexity_matches_hf_on_the_same_windows(tiny_llama, exported, tmp_path, capsys):
    """Windows of 16 with stride 5 over ~60 tokens: context chunks, one-token rows and a short last window. Same
    NLL as HF's within float32 noise (both sum ~60 float32 log-probabilities of O(1) logits)."""
    from paddlellm.compat import hide_paddlecodec_from_transformers
    from paddlellm.tokenizer import load_tokenizer

    hide_paddlecodec_from_transformers()
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    out = tmp_path / "ppl.json"
    assert main(["--model_name_or_path", str(exported), "--data_file", str(data), "--max_seq_length", "16",
                 "--stride", "5", "--cpu_threads", "2", "--output_file", str(out)]) == 0
    result = json.loads(out.read_text())
    ids = load_tokenizer(exported).encode(TEXT)
    assert result["tokens"] == len(ids) - 1 and result["windows"] == len(windows(len(ids), 16, 5))
    expected = np.exp(hf_window_nll(tiny_llama, ids, 16, 5) / (len(ids) - 1))
    assert result["perplexity"] == pytest.approx(expected, rel=1e-5)
    lines = capsys.readouterr().out.splitlines()
    assert f"perplexity {result['perplexity']:.4f} over {len(ids) - 1} tokens of text.txt (" in "\n".join(lines)


@pytest.mark.parametrize("flags, words", [
    (["--stride", "600"], "--stride must be at least 1 and below --max_seq_length 512"),
    (["--max_seq_length", "100000"], "--max_seq_length must be in [2, 512]"),
    (["--data_file", "/nonexistent/text.txt"], "--data_file /nonexistent/text.txt cannot be read"),
])
def test_bad_flags(capsys, exported, flags, words):
    assert words in fails(capsys, main, ["--model_name_or_path", str(exported), *flags])


def test_a_checkpoint_is_not_an_export(capsys, tiny_llama):
    assert "is not an exported model" in fails(capsys, main, ["--model_name_or_path", str(tiny_llama)])
