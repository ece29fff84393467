"""Block attention end to end: the engine (scheduler + paged KV pool) over the model's block step, eager and
exported, gives HF transformers' greedy tokens, whatever the batching, chunking, prefix caching or
preemption; each request gets exactly what it gets alone."""
import json

import numpy as np
import pytest
import torch
import transformers

from hf_reference import hf_greedy_tokens
from paddlellm.export.exporter import export_model
from paddlellm.export.manifest import read_manifest
from paddlellm.models.llama.loader import load_model
from paddlellm.predictor.engine import Engine
from paddlellm.predictor.runners import DynamicBlockRunner, StaticBlockRunner
from paddlellm.predictor.sampling import SamplingParams
from paddlellm.tokenizer import load_tokenizer

BLOCK = 16
PROMPT_LENGTHS = (1, 7, 16, 17, 33, 48)  # 1 to 3x the block size, across and exactly on block boundaries
MAX_TOKENS = (9, 1, 14, 5, 12, 16)


def greedy(max_tokens, ignore_eos=False):
    return SamplingParams(max_tokens=max_tokens, ignore_eos=ignore_eos)


def random_prompts(lengths, seed=0, vocab=320):
    rng = np.random.default_rng(seed)
    return [[int(t) for t in rng.integers(3, vocab, n)] for n in lengths]


@pytest.fixture(scope="module", params=["gqa", "mha_tied"])
def tiny(request, tmp_path_factory):
    """The checkpoint's exports (for the CPU, and for the DCU: the portable ops every device runs, traced here
    with the CPU library, whose ops take the same inputs), its dygraph model, eos ids, prompts and HF's greedy
    tokens for them."""
    checkpoint = request.getfixturevalue("tiny_llama" if request.param == "gqa" else "tiny_llama_mha")
    exports = {device: export_model(checkpoint, tmp_path_factory.mktemp("block") / device, block_attn=True,
                                    block_size=BLOCK, device=device) for device in ("cpu", "dcu")}
    eos = load_tokenizer(checkpoint).eos_token_ids
    hf = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    prompts = random_prompts(PROMPT_LENGTHS)
    expected = [hf_greedy_tokens(hf, p, n, eos, 0) for p, n in zip(prompts, MAX_TOKENS)]
    return exports, load_model(checkpoint), eos, prompts, expected


def runner_for(kind, tiny, num_blocks):
    """dynamic: the dygraph model; static: the CPU's export; portable: the DCU's export, run on the CPU kernels."""
    exports, model = tiny[0], tiny[1]
    if kind == "dynamic":
        return DynamicBlockRunner(model, 2, num_blocks=num_blocks, block_size=BLOCK)
    exported = exports["dcu" if kind == "portable" else "cpu"]
    return StaticBlockRunner(exported, read_manifest(exported), "cpu", 2, num_blocks=num_blocks)


def engine_for(runner, eos, batch_size=4, budget=2048, prefix_caching=True):
    return Engine(runner, eos, max_num_seqs=batch_size, max_num_batched_tokens=budget, max_model_len=512,
                  enable_prefix_caching=prefix_caching)


@pytest.mark.parametrize("kind", ["dynamic", "static", "portable"])
@pytest.mark.parametrize("budget, prefix_caching", [(2048, True), (16, False), (16, True)])
def test_block_engine_gives_hf_greedy_tokens(tiny, kind, budget, prefix_caching):
    _, _, eos, prompts, expected = tiny
    engine = engine_for(runner_for(kind, tiny, num_blocks=40), eos, budget=budget, prefix_caching=prefix_caching)
    together = engine.generate(prompts, [greedy(n) for n in MAX_TOKENS])
    assert [g.token_ids for g in together] == expected
    alone = [engine.generate([p], greedy(n))[0].token_ids for p, n in zip(prompts, MAX_TOKENS)]
    assert alone == expected
    assert engine.stats.blocks_in_use == 0
    if budget == 16:  # chunked prefill: 48 prompt tokens take at least 3 steps of 16
        assert engine.stats.steps >= 3 + sum(MAX_TOKENS)


def test_common_prefix_is_computed_once_and_changes_nothing(tiny):
    _, _, eos, prompts, _ = tiny
    system = random_prompts([2 * BLOCK + 3], seed=7)[0]  # two full blocks to share
    shared = [system + p for p in prompts]
    params = greedy(8, ignore_eos=True)
    results = {}
    for caching in (False, True):
        engine = engine_for(runner_for("static", tiny, num_blocks=60), eos, batch_size=2, prefix_caching=caching)
        results[caching] = [g.token_ids for g in engine.generate(shared, params)]
        hits = engine.stats.prefix_cache_hits
    assert results[True] == results[False]
    assert hits >= 2 * BLOCK * (len(shared) - 2)  # every request after the first batch finds the system blocks


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_load_through_a_small_pool_preempts_and_each_request_gets_what_it_gets_alone(tiny, kind):
    """64 requests, 8 at a time, through 12 blocks of 16 tokens (192 slots; 8 running requests of up to 48
    tokens need up to 24): the pool runs out mid-decode, the youngest are preempted and recomputed."""
    _, _, eos, _, _ = tiny
    rng = np.random.default_rng(3)
    prompts = random_prompts(rng.integers(1, 30, 64), seed=4)
    params = [greedy(int(n), ignore_eos=True) for n in rng.integers(1, 19, 64)]
    engine = engine_for(runner_for(kind, tiny, num_blocks=12), eos, batch_size=8, budget=64)
    together = engine.generate(prompts, params)
    assert engine.stats.preemptions > 0
    assert engine.stats.blocks_in_use == 0
    alone_engine = engine_for(runner_for(kind, tiny, num_blocks=12), eos, batch_size=1)
    alone = [alone_engine.generate([p], q)[0].token_ids for p, q in zip(prompts, params)]
    assert [g.token_ids for g in together] == alone
    assert [len(t) for t in alone] == [q.max_tokens for q in params]


def test_streaming_yields_each_token_as_it_comes(tiny):
    _, _, eos, prompts, _ = tiny
    engine = engine_for(runner_for("static", tiny, num_blocks=40), eos)
    seen = {i: [] for i in range(len(prompts))}
    for generation in engine.stream(prompts, greedy(6, ignore_eos=True)):
        seen[generation.index].append(list(generation.token_ids))
    for index, snapshots in seen.items():
        assert [len(s) for s in snapshots] == list(range(1, 7))  # one more token each time


def test_cli_rows_in_input_order_equal_one_at_a_time(tiny_llama, tmp_path):
    """Results finish out of order (different lengths, 3 at a time) but are written in input order. Static
    (prompts chunked by 16 tokens) and dynamic mode give the same rows, sampled ones included (a request
    samples from its own stream), and greedy rows are what each prompt gets alone."""
    from cli_helpers import PROMPTS, predict, write_jsonl
    from paddlellm.export.main import main as export_main

    block = tmp_path / "block"
    assert export_main(["--model_name_or_path", str(tiny_llama), "--output_path", str(block), "--block_attn",
                        "--block_size", str(BLOCK)]) == 0
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"src": p} for p in PROMPTS * 2])
    greedy_flags = ["--decode_strategy", "greedy_search"]
    for strategy in (greedy_flags, ["--top_k", "20", "--top_p", "0.9"]):
        flags = ["--data_file", data, "--batch_size", 3, "--max_length", 10, *strategy]
        static = predict(block, tmp_path / "block.jsonl", "--mode", "static", *flags, "--max_num_batched_tokens", 16)
        dynamic = predict(tiny_llama, tmp_path / "dyn.jsonl", "--block_attn", "--block_size", BLOCK, *flags)
        assert [r["src"] for r in static] == PROMPTS * 2
        assert static == dynamic
    alone = [predict(block, tmp_path / "alone.jsonl", "--mode", "static", "--max_length", 10, *greedy_flags,
                     "--data_file", write_jsonl(tmp_path / "one.jsonl", [{"src": p}]))[0] for p in PROMPTS]
    together = predict(block, tmp_path / "greedy.jsonl", "--mode", "static", "--data_file", data, "--batch_size", 3,
                       "--max_length", 10, *greedy_flags)
    assert together == alone * 2


def test_python_api_generates_and_streams(tiny_llama, tmp_path):
    from paddlellm.export.main import main as export_main
    from paddlellm.predictor import LLM, SamplingParams as Params

    block = tmp_path / "block"
    assert export_main(["--model_name_or_path", str(tiny_llama), "--output_path", str(block), "--block_attn"]) == 0
    llm = LLM(block, batch_size=2, cpu_threads=2)
    prompts = ["The quick brown fox", [5, 6, 7, 8], "1 + 1 ="]
    params = Params(max_tokens=6, ignore_eos=True)
    outs = llm.generate(prompts, params)
    assert [o.index for o in outs] == [0, 1, 2] and all(len(o.token_ids) == 6 for o in outs)
    assert all(o.text == llm.tokenizer.decode(o.token_ids) for o in outs)
    streamed = {}
    for out in llm.stream(prompts, params):
        streamed.setdefault(out.index, []).append(len(out.token_ids))
    assert all(lengths == [1, 2, 3, 4, 5, 6] for lengths in streamed.values())
    assert [o.token_ids for o in llm.generate(prompts[::-1], params)] == [o.token_ids for o in outs[::-1]]
    assert llm.generate([], params) == []


def test_the_cpu_pipeline_runs_the_exported_step_on_the_cpu_op_set(tiny):
    """The export is the portable program; after the CPU's IR passes, the packed batch's positions in one op,
    one fused op per layer (attention block and MLP, the cache write in place), then the last rows' final norm
    with the last layer's output added and the lm_head; a tied embedding is looked up in the packed lm_head.
    The predictor says so in one line."""
    from paddlellm import ops

    exported = tiny[0]["cpu"]
    manifest = read_manifest(exported)
    layers = manifest.num_layers
    assert ops.ops_in_program(exported / "model.json") == {"block_attention": layers, "write_cache_kv": layers}
    counts = ops.ops_in_program(StaticBlockRunner(exported, manifest, "cpu", 2).program_path)
    expected = {"fused_decoder_layer": layers, "fused_add_rms_norm": 1, "linear": 1, "packed_positions": 1}
    if json.loads((exported / "config.json").read_text()).get("tie_word_embeddings"):
        expected["packed_embedding"] = 1
    assert counts == dict(sorted(expected.items()))
    line = ops.describe_ops(counts)
    assert line.startswith("fused_add_rms_norm x1, fused_decoder_layer x") and line.endswith(f"(CPU kernels, {ops.cpu_isa()})")


def test_the_step_exported_for_a_device_is_the_portable_program(tiny):
    """Plain Paddle ops (norms, adds, rotary, swiglu: the device's IR passes fuse them at predict time, see
    tests/ops/test_passes.py) around the op set's cache write and attention, once per layer; weights [in, out]
    as the checkpoint has them."""
    from paddlellm import ops

    exported = tiny[0]["dcu"]
    manifest = read_manifest(exported)
    layers = manifest.num_layers
    assert ops.ops_in_program(exported / "model.json") == {"block_attention": layers, "write_cache_kv": layers}
    assert (manifest.device, manifest.block_attn) == ("dcu", True)
