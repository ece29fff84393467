#!/usr/bin/env python
"""Side by side: our static predictor's --benchmark, llama.cpp's llama-batched-bench and HF transformers' generate.

    python benchmarks/vs_llamacpp.py [--batch_sizes 1 4 8 12] [--prompt_tokens 128] [--new_tokens 64]
        [--threads 2] [--runs 2] [--stat best|median] [--output FILE.json]
        [--skip_ours | --skip_llamacpp | --skip_hf | --only_ours] [--ours_export_flags '--block_attn']
        [--llamacpp_flags '-ctk q8_0 -ctv q8_0 -fa on']
        [--passes_off_batches 1 8] [--quant q8_0 | a8w8 | q4_0 | q8_0_kept]

Same weights (the reference model SmolLM2-135M-Instruct, de-quantized to F32), same prompt length, new
tokens, threads and batch sizes; each measurement is its own process. Steps:
1. llama.cpp: the llama-cpp-python sdist (pinned below) is downloaded with pip into --llamacpp_cache
   (default ~/.cache/paddlellm/llamacpp/<version>) and its vendored llama.cpp is built with cmake: CPU
   only, every x86 CPU variant as a backend chosen at run time (never an illegal instruction on another
   host). About 12 minutes on 2 cores, once: the build is reused until the version or flags change.
   Needs cmake and a C++ compiler from the system's packages.
2. The reference GGUF (Q4_1) -> an HF checkpoint (F32 safetensors, llm/tools/convert_gguf.py) -> our
   inference export (llm/predict/export_model.py --block_attn) and an F32 GGUF written by llama.cpp's own
   convert_hf_to_gguf.py (it needs torch, numpy and transformers, which the test extras install; its gguf
   package comes from the vendored gguf-py). Kept in --work_dir; the export is redone every time.
3. For each run and batch size B: ours (B requests of P tokens, N new tokens each, EOS ignored, one
   wave, greedy: its step time includes choosing the token), llama-batched-bench (-npp P -ntg N -npl B, prompts not shared) and benchmarks/hf_bench.py
   (greedy generate, min_new_tokens=N); at the --passes_off_batches sizes also ours with no IR pass
   (--passes none: the portable program as exported). Prompt tok/s and decode tok/s are each tool's own numbers;
   peak RSS is each process's maximum resident set (wait4).
4. --quant q8_0 | a8w8 | q4_0: llama.cpp runs a GGUF of that type (q8_0, also for a8w8: convert_hf_to_gguf.py
   --outtype q8_0; q4_0: benchmarks/gguf_requantize.py from the F32 GGUF; every matrix, the tied
   embedding/output included, in blocks of 32 with a float16 scale), ours the export with --quant_type
   weight_only_int8 (per-column scales), a8w8 (the same weights, int8 activations per token) or weight_only_int4
   --group_size 32 (a scale and an offset per column and 32 rows), --quant_lm_head; q8_0_kept: the Q8_0 GGUF's own
   blocks (convert_gguf.py --keep_quant: weight_only_int8 --group_size 32, the lm_head re-quantized so); at the
   --passes_off_batches sizes ours also runs the float32 export (with its IR passes) in place of the passes-off
   run, for the quantized/float32 ratio.
Prints one Markdown table with the ratios and writes every raw number, the machine (CPU, avx2/avx512/amx),
the commit and the date to --output (default WORK_DIR/results.json). The table shows, per tool, batch size
and column, the best of --runs: on a shared machine other work only ever slows a run down, so the fastest
run is the least disturbed (--stat median on a quiet machine; each sample records the load average before
it). Not part of .ci/run.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP_PYTHON = "0.3.36"  # llama-cpp-python on PyPI; its sdist vendors llama.cpp (ggml commit 0c1e570)
CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON",  # libggml-cpu-<variant>.so picked at run time
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
]
TARGETS = ["llama-batched-bench"]
# --quant: llama.cpp's GGUF type (convert_hf_to_gguf.py --outtype) and our export flags for the same weights
# (a8w8 against Q8_0: llama.cpp's Q8_0 products also meet int8 activations)
QUANTS = {"q8_0": ("q8_0", ["--quant_type", "weight_only_int8", "--quant_lm_head"]),
          "a8w8": ("q8_0", ["--quant_type", "a8w8", "--quant_lm_head"]),
          "q4_0": ("q4_0", ["--quant_type", "weight_only_int4", "--quant_lm_head", "--group_size", "32"]),
          "q8_0_kept": ("q8_0", ["--quant_type", "weight_only_int8", "--group_size", "32", "--quant_lm_head"])}
KEPT = ("q8_0_kept",)  # ours exports a checkpoint converted from llama.cpp's own GGUF with --keep_quant
CONVERTER_TYPES = ("f32", "q8_0")  # what convert_hf_to_gguf.py writes; others come from the F32 GGUF by
# benchmarks/gguf_requantize.py


class Failure(Exception):
    """What went wrong and how to fix it: printed as one line, exit 2."""

    def __init__(self, what, fix):
        super().__init__(f"{what} ({fix})")


# ---------------------------------------------------------------- processes
def run_child(cmd, log, env=None, cwd=None):
    """Run cmd with stdout/stderr in log.out/log.err; returns (stdout, seconds, peak RSS in MB of that process)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    started = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise Failure(f"{shlex.join(str(c) for c in cmd)} exited with {proc.returncode}:\n  " + "\n  ".join(tail),
                      f"full output in {out_path} and {err_path}")
    return out_path.read_text(errors="replace"), seconds, usage.ru_maxrss / 1024


def child_env():
    env = dict(os.environ)  # each tool gets the thread count as its own flag
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


# ---------------------------------------------------------------- llama.cpp build (cached)
def llamacpp_source(cache):
    """The extracted llama-cpp-python sdist in cache/src (downloaded with pip once)."""
    src = cache / "src"
    if (src / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return src
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.is_file():
        print(f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON} sdist (77 MB) with pip ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(cache)]
        if subprocess.run(cmd).returncode != 0 or not sdist.is_file():
            raise Failure(f"pip could not download llama-cpp-python=={LLAMA_CPP_PYTHON}",
                          "check that PyPI is reachable")
    partial = cache / "src.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(partial, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (top,) = partial.iterdir()  # llama_cpp_python-<version>/
    os.replace(top, src)
    shutil.rmtree(partial)
    return src


def build_llamacpp(cache):
    """llama.cpp's bin directory, built once per version and flags; returns (bin dir, build record)."""
    src = llamacpp_source(cache) / "vendor" / "llama.cpp"
    build, stamp = cache / "build", cache / "build.json"
    wanted = {"llama_cpp_python": LLAMA_CPP_PYTHON, "cmake_args": CMAKE_ARGS, "targets": TARGETS}
    record = json.loads(stamp.read_text()) if stamp.is_file() else {}
    binaries = [build / "bin" / t for t in TARGETS]
    if {k: record.get(k) for k in wanted} == wanted and all(b.is_file() for b in binaries):
        return build / "bin", record
    if shutil.which("cmake") is None:
        raise Failure("cmake not found", "apt-get install cmake, or your system's cmake package")
    if not any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++")):
        raise Failure("no C++ compiler found", "apt-get install g++, or your system's C++ compiler package")
    stamp.unlink(missing_ok=True)
    if build.exists() and record:  # other flags or version: start clean
        shutil.rmtree(build)
    log = cache / "build.log"
    print(f"building llama.cpp (llama-cpp-python {LLAMA_CPP_PYTHON}) in {build}; log: {log}. "
          "About 12 minutes on 2 cores, once.", flush=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        configure = ["cmake", "-S", src, "-B", build, *CMAKE_ARGS]
        if subprocess.run([str(c) for c in configure], stdout=f, stderr=subprocess.STDOUT).returncode != 0:
            raise Failure("configuring llama.cpp with cmake failed", f"see {log}")
        jobs = str(len(os.sched_getaffinity(0)))
        cmd = ["cmake", "--build", str(build), "--config", "Release", "-j", jobs, "--target", *TARGETS]
        if _run_with_progress(cmd, f) != 0:
            raise Failure("building llama.cpp failed", f"see {log}")
    record = {**wanted, "build_seconds": round(time.perf_counter() - started),
              "built": datetime.datetime.now().isoformat(timespec="seconds"), "jobs": int(jobs)}
    stamp.write_text(json.dumps(record, indent=1) + "\n")
    print(f"built llama.cpp in {record['build_seconds'] / 60:.1f} min", flush=True)
    return build / "bin", record


def _run_with_progress(cmd, log):
    """Run a cmake build, its output to log, its [ NN%] lines as a progress bar."""
    from tqdm import tqdm

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with tqdm(total=100, unit="%", desc="llama.cpp build") as bar:
        for line in proc.stdout:
            log.write(line)
            m = re.match(r"\[\s*(\d+)%\]", line)
            if m and int(m.group(1)) > bar.n:
                bar.update(int(m.group(1)) - bar.n)
    return proc.wait()


# ---------------------------------------------------------------- models
def prepare_models(work, llamacpp_src, export_flags, need_ours, need_gguf, quant=None):
    """The F32 HF checkpoint (kept), llama.cpp's GGUF of it (F32 or the --quant type; kept) and our inference
    export (redone; with --quant, the quantized one and the float32 one)."""
    sys.path.insert(0, str(ROOT))
    from paddlellm.reference import reference_gguf

    env = child_env()
    checkpoint = work / "checkpoint"
    if not (checkpoint / "model.safetensors").is_file():
        print("converting the reference GGUF to an F32 checkpoint ...", flush=True)
        run_child([sys.executable, ROOT / "llm/tools/convert_gguf.py", "--gguf", reference_gguf(),
                   "--output_path", checkpoint, "--overwrite"], work / "logs" / "convert_gguf", env)
    outtype = QUANTS[quant][0] if quant else "f32"
    gguf = work / f"smollm2-{outtype}.gguf"
    if need_gguf and not gguf.is_file():
        vendored = llamacpp_src / "vendor" / "llama.cpp"
        genv = {**env, "PYTHONPATH": os.pathsep.join([str(vendored / "gguf-py"), env["PYTHONPATH"]])}
        converted = outtype if outtype in CONVERTER_TYPES else "f32"
        source = work / f"smollm2-{converted}.gguf"
        if not source.is_file():
            print(f"writing the {converted.upper()} GGUF with llama.cpp's convert_hf_to_gguf.py ...", flush=True)
            partial = source.with_name(source.name + ".partial")
            run_child([sys.executable, vendored / "convert_hf_to_gguf.py", checkpoint, "--outtype", converted,
                       "--outfile", partial], work / "logs" / "convert_hf_to_gguf", genv)
            os.replace(partial, source)
        if source != gguf:
            print(f"re-quantizing it to {outtype.upper()} (benchmarks/gguf_requantize.py) ...", flush=True)
            run_child([sys.executable, ROOT / "benchmarks/gguf_requantize.py", source, gguf, outtype],
                      work / "logs" / "gguf_requantize", genv)
    exports = {"float32": (work / "inference", export_flags, checkpoint)}
    if quant in KEPT:
        kept = work / f"checkpoint_{quant}"
        print(f"converting {gguf.name} with --keep_quant ...", flush=True)
        run_child([sys.executable, ROOT / "llm/tools/convert_gguf.py", "--gguf", gguf, "--output_path", kept,
                   "--overwrite", "--keep_quant"], work / "logs" / "convert_gguf_kept", env)
        exports[quant] = (work / f"inference_{quant}", export_flags + QUANTS[quant][1], kept)
    elif quant:
        exports[quant] = (work / f"inference_{quant}", export_flags + QUANTS[quant][1], checkpoint)
    for name, (inference, flags, source) in exports.items() if need_ours else ():
        print(f"exporting our inference model ({' '.join(flags) or 'no extra flags'}) ...", flush=True)
        run_child([sys.executable, ROOT / "llm/predict/export_model.py", "--model_name_or_path", source,
                   "--output_path", inference, "--inference_model", *flags], work / "logs" / f"export_{name}", env)
    return checkpoint, gguf, exports[quant or "float32"][0], exports["float32"][0]


# ---------------------------------------------------------------- the three measurements
def run_ours(inference, P, N, B, T, work, tag, passes=None):
    name = "ours" if passes is None else f"ours_passes_{passes}"
    out = work / "logs" / f"{name}_b{B}_{tag}.json"
    cmd = [sys.executable, ROOT / "llm/predict/predictor.py", "--model_name_or_path", inference,
           "--inference_model", "--mode", "static", "--benchmark", "--src_length", P, "--max_length", N,
           "--batch_size", B, "--benchmark_requests", B, "--cpu_threads", T, "--benchmark_output", out,
           "--decode_strategy", "greedy_search",  # as HF's generate here; llama-batched-bench picks no tokens
           # every prompt in one step, then every request decoding together: llama-batched-bench's schedule
           # (the predictor's default budget, 256 tokens, would stagger the requests' prompts)
           "--max_num_batched_tokens", B * P] + ([] if passes is None else ["--passes", passes])
    out.unlink(missing_ok=True)
    log = work / "logs" / f"{name}_b{B}_{tag}"
    _, seconds, rss = run_child(cmd, log, child_env())
    if not out.is_file():
        raise Failure("our predictor wrote no --benchmark_output JSON", f"see {log}.out; --skip_ours to go without")
    raw = json.loads(out.read_text())
    raw.pop("samples", None)  # per-request samples stay in the log file
    return {"prompt_tps": raw["prompt_tokens_per_s"], "decode_tps": raw["decode_tokens_per_s"],
            "peak_rss_mb": rss, "process_s": seconds, "raw": raw}


def parse_batched_bench(stdout):
    """The JSONL records of `llama-batched-bench --output-format jsonl` (one per pp/tg/pl combination)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"speed_tg"' in line]


def run_llamacpp(bin_dir, gguf, P, N, B, T, work, tag, flags=()):
    log = work / "logs" / f"llamacpp_b{B}_{tag}"
    cmd = [bin_dir / "llama-batched-bench", "-m", gguf, "-c", B * (P + N), "-b", 2048, "-ub", 512,
           "-npp", P, "-ntg", N, "-npl", B, "-t", T, "--output-format", "jsonl", *flags]
    stdout, seconds, rss = run_child(cmd, log, child_env())
    records = parse_batched_bench(stdout)
    if len(records) != 1:
        raise Failure(f"expected one result line from llama-batched-bench, got {len(records)}", f"see {log}.out")
    return {"prompt_tps": records[0]["speed_pp"], "decode_tps": records[0]["speed_tg"], "peak_rss_mb": rss,
            "process_s": seconds, "raw": records[0]}


def llamacpp_cpu_variant(bin_dir, gguf, work):
    """Which libggml-cpu-<variant>.so llama.cpp loads on this CPU (only its verbose log says; a tiny run)."""
    cmd = [bin_dir / "llama-batched-bench", "-m", gguf, "-c", 256, "-npp", 8, "-ntg", 2, "-npl", 1, "-t", 1, "-v"]
    run_child(cmd, work / "logs" / "llamacpp_variant", child_env())
    found = re.search(r"libggml-cpu-([\w.]+)\.so", (work / "logs" / "llamacpp_variant.err").read_text(errors="replace"))
    return found.group(1) if found else None


def run_hf(checkpoint, P, N, B, T, work, tag):
    cmd = [sys.executable, ROOT / "benchmarks/hf_bench.py", "--model_name_or_path", checkpoint,
           "--prompt_tokens", P, "--new_tokens", N, "--batch_size", B, "--threads", T]
    stdout, seconds, rss = run_child(cmd, work / "logs" / f"hf_b{B}_{tag}", child_env())
    raw = json.loads(stdout.strip().splitlines()[-1])
    return {"prompt_tps": raw["prompt_tokens_per_s"], "decode_tps": raw["decode_tokens_per_s"],
            "peak_rss_mb": rss, "process_s": seconds, "raw": raw}


# ---------------------------------------------------------------- report
def machine_info():
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M) or re.match("()", "")).group(1).split())
    return {"cpu": name.group(1).strip() if name else platform.processor() or platform.machine(),
            "cores_usable": len(os.sched_getaffinity(0)),
            "flags": {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")},
            "platform": platform.platform(), "python": platform.python_version()}


def git_commit():
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "HEAD")
    return commit + ("-dirty" if commit and git("status", "--porcelain", "--untracked-files=no") else "")


def summary(samples, key, stat):
    """The median, or the best run's value (highest tok/s; lowest peak RSS)."""
    values = [s[key] for s in samples if s.get(key) is not None]
    if not values:
        return None
    if stat == "median":
        return statistics.median(values)
    return min(values) if key == "peak_rss_mb" else max(values)


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def make_table(rows, baseline="ours_passes_off"):
    """Markdown table; rows: {"batch", "ours"|"llamacpp"|"hf"|baseline: {"prompt_tps", "decode_tps",
    "peak_rss_mb"} or None}; the last column: ours over `baseline` (ours with no IR pass, or ours in float32)."""
    last = "decode ours passes on/off" if baseline == "ours_passes_off" else "decode ours / ours float32"
    lines = ["| batch | prompt tok/s ours / llama.cpp / HF | decode tok/s ours / llama.cpp / HF "
             "| decode ours/llama.cpp | prompt ours/llama.cpp | decode ours/HF | peak RSS MB ours / llama.cpp / HF "
             f"| {last} |",
             "|---:|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        tools = [r.get(t) or {} for t in ("ours", "llamacpp", "hf")]
        prompt = [t.get("prompt_tps") for t in tools]
        decode = [t.get("decode_tps") for t in tools]
        rss = [t.get("peak_rss_mb") for t in tools]
        passes_off = (r.get(baseline) or {}).get("decode_tps")
        lines.append(f"| {r['batch']} | {' / '.join(fmt(x) for x in prompt)} | {' / '.join(fmt(x) for x in decode)} "
                     f"| {fmt(ratio(decode[0], decode[1]), 2)} | {fmt(ratio(prompt[0], prompt[1]), 2)} "
                     f"| {fmt(ratio(decode[0], decode[2]), 2)} | {' / '.join(fmt(x, 0) for x in rss)} "
                     f"| {fmt(ratio(decode[0], passes_off), 2)} |")
    return "\n".join(lines)


def write_whole(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def check_our_benchmark_flag():
    help_text = subprocess.run([sys.executable, ROOT / "llm/predict/predictor.py", "--help"], capture_output=True,
                               text=True, env=child_env()).stdout
    if "--benchmark_output" not in help_text:
        raise Failure("llm/predict/predictor.py has no --benchmark_output in this version",
                      "pass --skip_ours to compare llama.cpp and HF alone")


# ---------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 8, 12])
    p.add_argument("--prompt_tokens", type=int, default=128, help="P: tokens in each prompt")
    p.add_argument("--new_tokens", type=int, default=64, help="N: tokens generated per prompt (EOS ignored)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for each of the three")
    p.add_argument("--runs", type=int, default=2, help="rounds over all batch sizes (interleaved)")
    p.add_argument("--stat", choices=["best", "median"], default="best",
                   help="which of the runs the table shows (per tool, batch size and column)")
    p.add_argument("--work_dir", default=str(ROOT / "output" / "vs_llamacpp"),
                   help="checkpoint, GGUF, export and logs")
    p.add_argument("--llamacpp_cache", default=str(Path.home() / ".cache/paddlellm/llamacpp" / LLAMA_CPP_PYTHON),
                   help="where the llama-cpp-python sdist and the llama.cpp build are kept")
    p.add_argument("--llamacpp_flags", default="",
                   help="more llama-batched-bench flags, e.g. '-ctk q8_0 -ctv q8_0 -fa on' (an int8 KV cache, as ours "
                        "with --ours_export_flags '--block_attn --cachekv_int8_type dynamic')")
    p.add_argument("--ours_export_flags", default="--block_attn",
                   help="extra flags for our export_model.py (e.g. '--block_attn --block_size 32')")
    p.add_argument("--passes_off_batches", type=int, nargs="*", default=[1, 8],
                   help="batch sizes at which ours also runs with no IR pass (--passes none), for the on/off ratio "
                        "(with --quant: the float32 export, for the quantized/float32 ratio)")
    p.add_argument("--quant", choices=sorted(QUANTS), default=None,
                   help="quantized weights: llama.cpp's GGUF of this type against our matching --quant_type export")
    p.add_argument("--output", default=None, help="JSON file for every raw number (default: WORK_DIR/results.json)")
    p.add_argument("--skip_ours", action="store_true")
    p.add_argument("--skip_llamacpp", action="store_true")
    p.add_argument("--skip_hf", action="store_true")
    p.add_argument("--only_ours", action="store_true", help="same as --skip_llamacpp --skip_hf")
    p.add_argument("--build_only", action="store_true", help="build (or find) llama.cpp and stop")
    args = p.parse_args()
    if args.only_ours:
        args.skip_llamacpp = args.skip_hf = True
    if args.new_tokens < 2 or args.prompt_tokens < 1 or args.threads < 1 or min(args.batch_sizes) < 1:
        p.error("--new_tokens must be >= 2; --prompt_tokens, --threads and --batch_sizes >= 1")
    P, N, T = args.prompt_tokens, args.new_tokens, args.threads
    work, cache = Path(args.work_dir).resolve(), Path(args.llamacpp_cache).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)

    if not args.skip_ours and not args.build_only:
        check_our_benchmark_flag()
    bin_dir, build_record = None, None
    if not args.skip_llamacpp or args.build_only:
        bin_dir, build_record = build_llamacpp(cache)
        print(f"llama.cpp: {bin_dir}", flush=True)
        if args.build_only:
            return
    need_gguf = not args.skip_llamacpp or args.quant in KEPT
    src = llamacpp_source(cache) if need_gguf else None
    checkpoint, gguf, inference, inference_float32 = prepare_models(
        work, src, shlex.split(args.ours_export_flags), not args.skip_ours, need_gguf, args.quant)

    variant = None if args.skip_llamacpp else llamacpp_cpu_variant(bin_dir, gguf, work)
    baseline = "ours_float32" if args.quant else "ours_passes_off"
    tools = [t for t, skip in (("ours", args.skip_ours), ("llamacpp", args.skip_llamacpp), ("hf", args.skip_hf),
                               (baseline, args.skip_ours or not args.passes_off_batches)) if not skip]
    samples = {t: {B: [] for B in args.batch_sizes} for t in tools}

    def measured(tool, B):
        return tool != baseline or B in args.passes_off_batches
    from tqdm import tqdm

    processes = sum(measured(t, B) for t in tools for B in args.batch_sizes)
    with tqdm(total=args.runs * processes, desc="benchmark", unit="process") as bar:
        for run in range(args.runs):
            for B in args.batch_sizes:
                for tool in [t for t in tools if measured(t, B)]:
                    bar.set_postfix_str(f"{tool} batch {B}")
                    load = round(os.getloadavg()[0], 2)
                    if tool == "ours":
                        s = run_ours(inference, P, N, B, T, work, run)
                    elif tool == "ours_passes_off":
                        s = run_ours(inference, P, N, B, T, work, run, passes="none")
                    elif tool == "ours_float32":
                        s = run_ours(inference_float32, P, N, B, T, work, f"float32_{run}")
                    elif tool == "llamacpp":
                        s = run_llamacpp(bin_dir, gguf, P, N, B, T, work, run, shlex.split(args.llamacpp_flags))
                    else:
                        s = run_hf(checkpoint, P, N, B, T, work, run)
                    s["loadavg_1m_before"] = load
                    samples[tool][B].append(s)
                    bar.update()

    rows = []
    for B in args.batch_sizes:
        row = {"batch": B}
        for tool in tools:
            s = samples[tool][B]
            row[tool] = {k: summary(s, k, args.stat) for k in ("prompt_tps", "decode_tps", "peak_rss_mb")}
        rows.append(row)
    table = make_table(rows, baseline)
    machine = machine_info()
    print()
    weights = f"{args.quant.upper()} (ours: {' '.join(QUANTS[args.quant][1])})" if args.quant else "F32"
    print(f"{machine['cpu']}, {T} threads, prompt {P} tokens, {N} new tokens, {weights}, {args.stat} of {args.runs} run(s)"
          + (f"; llama.cpp {LLAMA_CPP_PYTHON} ({variant} CPU backend)" if variant else ""))
    print(table)
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": git_commit(),
        "machine": machine,
        "settings": {"prompt_tokens": P, "new_tokens": N, "threads": T, "runs": args.runs, "stat": args.stat,
                     "batch_sizes": args.batch_sizes, "ours_export_flags": args.ours_export_flags,
                     "llamacpp_flags": args.llamacpp_flags,
                     "passes_off_batches": args.passes_off_batches, "quant": args.quant},
        "llamacpp": {"llama_cpp_python": LLAMA_CPP_PYTHON, "build": build_record, "cpu_variant": variant},
        "table": table, "medians": rows, "samples": {t: {str(B): v for B, v in s.items()} for t, s in samples.items()},
    }
    output = Path(args.output) if args.output else work / "results.json"
    write_whole(output, json.dumps(result, indent=1) + "\n")
    print(f"\nraw numbers: {output}")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
