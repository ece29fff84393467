"""--cachekv_int8_type static: the KV cache's per-head scales calibrated at export (paddlellm.export.calibration)."""
import numpy as np

from cli_helpers import fails
from paddlellm.export.main import main
from paddlellm.export.manifest import read_manifest


def export(src, out, *flags):
    assert main(["--model_name_or_path", str(src), "--output_path", str(out), *flags]) == 0
    return out


def test_static_int8_kv_cache_scales_are_calibrated_on_the_text(tiny_llama, tmp_path, capsys):
    """--cachekv_int8_type static: one scale per layer and kv head, the largest |K| / |V| the model writes for the
    calibration sequences / 127, held by the program; served rows are stored with it (their scale slots hold it),
    fused or not, near the float cache's logits."""
    import paddle

    from paddlellm.export.calibration import calibration_sequences, read_calibration_documents
    from paddlellm.predictor.runners import StaticBlockRunner, prompt_logits
    from paddlellm.tokenizer import load_tokenizer

    text = tmp_path / "calibration.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\n\nPack my box with five dozen jugs.\n\n" * 10)
    out = export(tiny_llama, tmp_path / "inference", "--cachekv_int8_type", "static", "--calibration_file", str(text),
                 "--calibration_tokens", "60")
    manifest = read_manifest(out)
    assert (manifest.cachekv_int8_type, manifest.cache_dtype) == ("static", "int8")
    tokenizer = load_tokenizer(out)
    sequences = calibration_sequences(tokenizer, read_calibration_documents(text), 60)
    # 60 tokens of the text as eval_ppl reads it, then (the tiny model has ChatML) 60 of its paragraphs as prompts
    assert sequences[0] == tokenizer.encode(text.read_text().strip().replace("\n\n\n\n", "\n\n"))[:60]
    assert sum(map(len, sequences[1:])) == 60 and sequences[1][0] == tokenizer.token_to_id("<|im_start|>")
    assert manifest.cachekv_calibration == {"data_file": "calibration.txt", "tokens": 120, "chat_template": True}
    params = paddle.jit.load(str(out / "model")).state_dict()
    scales = np.array([v.numpy() for v in params.values() if v.dtype == paddle.float32 and v.shape == [2]])
    assert scales.shape == (4, 2)  # K and V of 2 layers, 2 kv heads each

    # what the float program writes for the same sequences, from the other path (the predictor's fused layers)
    exact = export(tiny_llama, tmp_path / "float")
    runner = StaticBlockRunner(exact, read_manifest(exact), "cpu", 2)
    prompt_logits(runner, sequences)
    peaks = np.array([np.abs(c.numpy()).max(axis=(0, 2, 3)) for c in runner.caches])  # k0, v0, k1, v1
    np.testing.assert_allclose(np.sort(scales, axis=None), np.sort(peaks / 127, axis=None), rtol=1e-5)

    ids = sequences[0]
    want = prompt_logits(runner, [ids])
    runners = {passes: StaticBlockRunner(out, manifest, "cpu", 2, passes=passes) for passes in (None, ())}
    logits = {passes: prompt_logits(r, [ids]) for passes, r in runners.items()}
    np.testing.assert_allclose(logits[None], logits[()], rtol=0, atol=2e-5)  # the same cache ops, fused or not
    for cache, peak in zip(runners[None].caches, peaks):  # [blocks, kv heads, block size, head_dim + 4]
        slots = np.ascontiguousarray(cache.numpy()[0, :, :len(ids), -4:]).view(np.float32)[..., 0]  # written rows
        np.testing.assert_allclose(slots, np.repeat(peak[:, None] / 127, len(ids), axis=1), rtol=1e-5)
    # calibrated on this text: nothing clips, each value within half a step of scale = peak / 127; logits move
    # about as the dynamic cache's do (test above: measured 1.5% there)
    assert np.sqrt(np.mean((logits[None] - want) ** 2) / np.mean(want ** 2)) < 0.05


def test_calibration_jsonl_needs_text_fields(tiny_llama, tmp_path, capsys):
    bad = tmp_path / "calibration.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    out = tmp_path / "inference"
    message = fails(capsys, main, ["--model_name_or_path", tiny_llama, "--output_path", out, "--cachekv_int8_type",
                                   "static", "--calibration_file", str(bad)])
    assert f"{bad}:2: not a JSON object with a \"text\" string" in message
    assert not out.exists()
