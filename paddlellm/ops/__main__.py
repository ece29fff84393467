"""python -m paddlellm.ops [--check | --bench | --passes] [--ops NAME,...] [--threads N]

Without a mode: list every op of the set with its kind and the backends that implement it (spec.py).
--passes: list the IR passes and each device's pipeline (passes.py).
--check: run every available kernel (each CPU ISA this machine has) against its reference on the spec's
cases; one line per op and kernel, every failure in full; exit status 1 if any case fails.
--bench: time each op on its bench shapes against the plain-Paddle ops it replaces (dygraph, median).
"""
import argparse
import sys

from paddlellm.ops.spec import BACKENDS, BY_NAME, OPS


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m paddlellm.ops", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="check every available kernel against its reference")
    mode.add_argument("--bench", action="store_true", help="time the kernels against plain Paddle")
    mode.add_argument("--passes", action="store_true", help="list the IR passes and each device's pipeline")
    p.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (Paddle's and the ops' OpenMP pool)")
    return p.parse_args(argv)


def selected(names):
    from paddlellm.errors import UserError

    if not names:
        return list(OPS)
    unknown = [n for n in names.split(",") if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown op {', '.join(unknown)} (the ops: {', '.join(BY_NAME)})")
    return [BY_NAME[n] for n in names.split(",")]


def list_ops(ops_):
    print("| op | kind | " + " | ".join(BACKENDS) + " | what it does |")
    print("|---|---|" + "---|" * len(BACKENDS) + "---|")
    for op in ops_:
        marks = " | ".join("yes" if b in op.backends else "-" for b in BACKENDS)
        print(f"| paddlellm_{op.name} | {op.kind} | {marks} | {op.summary} |")
    print("hip and npu kernels are compiled by CI (csrc/hip/compile_check.py, csrc/npu/compile_check.py) and "
          "run only on their devices; --check runs the CPU kernels here.")


def list_passes():
    from paddlellm.ops.passes import PASSES, PIPELINES

    print("| pass | what it does | backends | matches on a Llama |")
    print("|---|---|---|---|")
    for p in PASSES:
        print(f"| {p.name} | {p.summary} | {', '.join(p.backends)} | {p.describe_expected()} |")
    for device, names in PIPELINES.items():
        print(f"{device}: {', '.join(names) or 'none'}")


def run_check(ops_):
    from paddlellm.ops.check import check

    failures, lines = [], []
    for op in ops_:
        results = check([op])
        by_backend = {}
        for r in results:
            by_backend.setdefault(r.backend, []).append(r)
        for backend, rs in by_backend.items():
            passed = sum(r.ok for r in rs)
            worst = max(r.nmse for r in rs)
            lines.append(f"paddlellm_{op.name:20s} {backend:11s} {passed}/{len(rs)} cases ok, max NMSE {worst:.2e}")
            failures += [r for r in rs if not r.ok]
        print(lines[-1] if len(by_backend) == 1 else "\n".join(lines[-len(by_backend):]), flush=True)
    for r in failures:
        print(f"FAILED paddlellm_{r.op} [{r.backend}] {r.case}: {r.problem} (NMSE {r.nmse:.2e})")
    print(f"{'FAILED' if failures else 'OK'}: {len(failures)} failing case(s)")
    return 1 if failures else 0


def run_bench(ops_):
    from paddlellm.ops.check import bench

    print("| op | case | kernel us | plain Paddle us | speed-up |\n|---|---|---:|---:|---:|")
    for name, case, kernel, plain in bench(ops_):
        plain_text, ratio = ("-", "-") if plain is None else (f"{plain:.1f}", f"{plain / kernel:.2f}x")
        print(f"| paddlellm_{name} | {case} | {kernel:.1f} | {plain_text} | {ratio} |", flush=True)
    return 0


def main(argv):
    args = parse(argv)
    ops_ = selected(args.ops)
    if args.passes:
        list_passes()
        return 0
    if not (args.check or args.bench):
        list_ops(ops_)
        return 0
    import paddle

    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(args.threads)
    return run_check(ops_) if args.check else run_bench(ops_)


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
