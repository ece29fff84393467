"""Predictor flags (PaddleNLP's names) and their validation."""
import os
from dataclasses import dataclass
from typing import Optional

from paddlellm.argparsing import ArgumentParser, DefaultsHelpFormatter, add_bool, add_debug
from paddlellm.device import DEVICES, DTYPES, check_device_name, check_dtype
from paddlellm.errors import UserError
from paddlellm.export.manifest import check_block_attn
from paddlellm.predictor.sampling import SamplingParams


@dataclass
class PredictorArgs:
    model_name_or_path: str
    mode: str = "dynamic"
    inference_model: Optional[bool] = None
    block_attn: Optional[bool] = None
    dtype: Optional[str] = None  # None: float32 in dynamic mode, the manifest's in static mode
    device: Optional[str] = None  # None: cpu in dynamic mode, the manifest's in static mode
    src_length: int = 1024
    max_length: int = 1024
    batch_size: int = 1
    decode_strategy: str = "sampling"
    top_k: int = 0
    top_p: float = 0.7
    temperature: float = 0.95
    repetition_penalty: float = 1.0
    seed: int = 42
    chat_template: Optional[str] = None
    data_file: Optional[str] = None
    output_file: Optional[str] = None
    cpu_threads: int = 0  # 0: every core this process may use
    quiet: bool = False
    block_size: Optional[int] = None  # dynamic mode; static mode: the export's
    num_blocks: int = 0  # 0: sized from the requests (or --kv_cache_memory_gb)
    kv_cache_memory_gb: float = 0.0
    max_num_batched_tokens: int = 256  # see --help
    enable_prefix_caching: bool = True
    benchmark: bool = False
    benchmark_requests: int = 0  # 0: --batch_size requests
    benchmark_output: Optional[str] = None
    passes: Optional[str] = None  # None: the device's pipeline (paddlellm/ops/passes.py)
    disable_passes: Optional[str] = None
    ir_debug: Optional[str] = None
    quant_type: Optional[str] = None  # static mode: the export's (checked against its manifest)
    cachekv_int8_type: Optional[str] = None

    def sampling(self):
        return SamplingParams(self.decode_strategy, self.top_k, self.top_p, self.temperature,
                              self.repetition_penalty, self.seed, max_tokens=self.max_length,
                              ignore_eos=self.benchmark)

    def threads(self):
        return self.cpu_threads or len(os.sched_getaffinity(0))


def build_parser():
    p = ArgumentParser(prog="predictor.py", formatter_class=DefaultsHelpFormatter,
                       description="Generate text with a Llama model (dynamic or exported static). The defaults "
                                   "are PaddleNLP's: sampling with top_p 0.7 and temperature 0.95, up to 1024 new "
                                   "tokens; --decode_strategy greedy_search gives deterministic output.")
    p.add_argument("--model_name_or_path", required=True, help="checkpoint dir (dynamic) or exported dir (static)")
    p.add_argument("--mode", default="dynamic", help="dynamic | static")
    add_bool(p, "--inference_model", "use the inference model (the only kind paddlellm has; accepted for "
                                     "PaddleNLP recipes; default: true)")
    add_bool(p, "--block_attn", "a paged KV cache with continuous batching: always on (PaddleNLP's flag, accepted)")
    p.add_argument("--block_size", type=int, default=None,
                   help="tokens per KV block (default: 64 in dynamic mode; static mode: the export's)")
    p.add_argument("--num_blocks", type=int, default=0,
                   help="KV blocks in the pool (0: enough for --batch_size of the largest requests at once)")
    p.add_argument("--kv_cache_memory_gb", type=float, default=0.0,
                   help="size the KV pool by memory instead of --num_blocks (0: off)")
    p.add_argument("--max_num_batched_tokens", type=int, default=256,
                   help="tokens one step may compute: decode tokens first, then prompt chunks (chunked prefill); "
                        "a larger budget prefills faster, a smaller one delays running requests less per step")
    add_bool(p, "--enable_prefix_caching", "share the KV blocks of a common token prefix between requests "
                                           "(default: true)")
    p.add_argument("--dtype", default=None, help=f"{' | '.join(DTYPES)} (default: float32 in dynamic mode, "
                                                 "the export's in static mode)")
    p.add_argument("--device", default=None, help=f"{' | '.join(DEVICES)} (default: cpu in dynamic mode, "
                                                  "the export's in static mode)")
    p.add_argument("--src_length", type=int, default=1024, help="maximum prompt tokens")
    p.add_argument("--max_length", type=int, default=1024, help="maximum new tokens")
    p.add_argument("--batch_size", type=int, default=1, help="prompts generated together")
    p.add_argument("--decode_strategy", default="sampling", help="greedy_search | sampling")
    p.add_argument("--top_k", type=int, default=0, help="sample only from the k most probable tokens (0: no limit)")
    p.add_argument("--top_p", type=float, default=0.7,
                   help="sample only from the most probable tokens whose probabilities add up to top_p (1: no limit)")
    p.add_argument("--temperature", type=float, default=0.95, help="divides the logits before sampling; 0 means greedy")
    p.add_argument("--repetition_penalty", type=float, default=1.0,
                   help="divides the logits of tokens already in the prompt or output (1: off)")
    p.add_argument("--seed", type=int, default=42,
                   help="sampling seed; each prompt's samples depend only on it and the prompt's place in the input")
    p.add_argument("--chat_template", default=None,
                   help="'none' sends the raw text; a file path gives a template (default: the tokenizer's own)")
    p.add_argument("--data_file", default=None, help='JSONL, one {"src": ...} a line (default: built-in demo prompts)')
    p.add_argument("--output_file", default=None,
                   help="JSONL results, one line per input, in input order; written to OUTPUT_FILE.partial as they "
                        "finish and renamed at the end (default: none, print only)")
    p.add_argument("--cpu_threads", type=int, default=0, help="CPU math threads (0: all available cores)")
    p.add_argument("--quiet", action="store_true", help="print no generations, only progress and the summary")
    add_bool(p, "--benchmark", "measure instead of printing: synthetic prompts of --src_length tokens (or "
                               "--data_file's) each generating exactly --max_length tokens (default: off)")
    p.add_argument("--benchmark_requests", type=int, default=0,
                   help="synthetic requests with --benchmark (0: --batch_size)")
    p.add_argument("--benchmark_output", default=None, help="JSON file for --benchmark's results (default: none)")
    p.add_argument("--passes", default=None,
                   help="static mode: the IR passes to run on the program, NAME,... or none, in place of the device's "
                        "pipeline (default: the device's, see python -m paddlellm.ops --passes)")
    p.add_argument("--disable_passes", default=None, help="static mode: IR passes not to run, NAME,... (default: none)")
    p.add_argument("--ir_debug", default=None,
                   help="static mode: write the program before and after each IR pass into this directory "
                        "(default: none)")
    p.add_argument("--quant_type", default=None,
                   help="static mode: the export's weight quantization, checked against it (default: the export's)")
    p.add_argument("--cachekv_int8_type", default=None,
                   help="static mode: the export's int8 KV cache, checked against it (default: the export's)")
    add_debug(p)
    return p


NULLABLE = {"inference_model", "block_attn", "dtype", "device", "block_size", "chat_template", "data_file",
            "output_file", "benchmark_output", "passes", "disable_passes", "ir_debug", "quant_type", "cachekv_int8_type"}


def parse_args(argv) -> PredictorArgs:
    namespace = vars(build_parser().parse_args(argv))
    namespace.pop("debug")  # acted on by paddlellm.cli.run_main
    namespace = {key: value for key, value in namespace.items() if value is not None or key in NULLABLE}
    args = PredictorArgs(**namespace)
    check_args(args)
    return args


def check_args(a: PredictorArgs):
    def require(ok, message):
        if not ok:
            raise UserError(message)

    require(a.mode in ("dynamic", "static"), f"unknown --mode '{a.mode}' (choose dynamic or static)")
    if a.dtype is not None:
        check_dtype(a.dtype)
    if a.device is not None:
        check_device_name(a.device)
    check_block_attn(a.block_attn)
    for flag in ("passes", "disable_passes", "ir_debug"):
        require(getattr(a, flag) is None or a.mode == "static",
                f"--{flag} applies to the exported program (--mode static); dynamic mode runs no IR passes")
    for flag in ("quant_type", "cachekv_int8_type"):
        require(getattr(a, flag) is None or a.mode == "static",
                f"--{flag} is chosen at export (llm/predict/export_model.py --{flag}); run the export with --mode static")
    for flag in ("passes", "disable_passes"):
        if getattr(a, flag) is not None:
            from paddlellm.ops.passes import names

            names(getattr(a, flag), f"--{flag}")
    require(a.src_length >= 1, f"--src_length must be at least 1, got {a.src_length}")
    require(a.max_length >= 1, f"--max_length must be at least 1 new token, got {a.max_length}")
    require(a.batch_size >= 1, f"--batch_size must be at least 1, got {a.batch_size}")
    require(a.decode_strategy in ("greedy_search", "sampling"),
            f"unknown --decode_strategy '{a.decode_strategy}' (choose greedy_search or sampling)")
    require(a.top_k >= 0, f"--top_k must be 0 (off) or positive, got {a.top_k}")
    require(0.0 < a.top_p <= 1.0, f"--top_p must be in (0, 1], got {a.top_p}")
    require(a.temperature >= 0.0, f"--temperature must be 0 (greedy) or positive, got {a.temperature}")
    require(a.repetition_penalty > 0.0, f"--repetition_penalty must be positive, got {a.repetition_penalty}")
    require(a.cpu_threads >= 0, f"--cpu_threads must be 0 (all cores) or positive, got {a.cpu_threads}")
    require(a.block_size is None or a.block_size >= 1, f"--block_size must be at least 1, got {a.block_size}")
    require(a.num_blocks >= 0, f"--num_blocks must be 0 (sized from the requests) or positive, got {a.num_blocks}")
    require(a.kv_cache_memory_gb >= 0, f"--kv_cache_memory_gb must be 0 (off) or positive, got {a.kv_cache_memory_gb}")
    require(a.max_num_batched_tokens >= 1, f"--max_num_batched_tokens must be at least 1, got {a.max_num_batched_tokens}")
    require(a.benchmark_requests >= 0, f"--benchmark_requests must be 0 (--batch_size) or positive, got {a.benchmark_requests}")
