"""Compiles the device code of every csrc/hip/*.hip file with hipcc, for gfx906 and gfx90a (no GPU, no
ROCm Paddle needed: the .hip files include only HIP headers and this directory's own headers), and checks the
Paddle bindings (*.cc) and the IR passes built into the library (csrc/passes) with the host compiler against the
installed Paddle's headers: all of their code but the one line that asks a tensor for its stream, which only a
ROCm Paddle's headers have (PADDLE_WITH_HIP).

    python csrc/hip/compile_check.py            # hipcc, HIP_PLATFORM=amd
    python csrc/hip/compile_check.py --nvcc     # also nvcc (the same sources as CUDA, through gpu_compat.h)

Prints one line per file, e.g. `compiled csrc/hip/rms_norm.hip for gfx906, gfx90a`, `compiled
csrc/hip/model_ops.cc (host code) against Paddle 3.3.1's headers`; exits non-zero with the
compiler's output when one fails. Debian's hipcc: apt-get install -y --no-install-recommends hipcc.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHS = ("gfx906", "gfx90a")
NVCC_ARCH = "sm_80"
FLAGS = ["-O3", "-std=c++17", "--gpu-max-threads-per-block=1024"]  # as setup_hip.py builds them


def shown(path):
    try:
        return str(path.relative_to(HERE.parents[1]))
    except ValueError:
        return str(path)


def run(cmd, env, source):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"compile_check: {shown(source)} failed:\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvcc", action="store_true", help=f"also compile each file as CUDA with nvcc ({NVCC_ARCH})")
    args = parser.parse_args()

    hipcc = shutil.which("hipcc")
    if hipcc is None:
        sys.exit("compile_check: hipcc not found (install it: apt-get install -y --no-install-recommends hipcc)")
    nvcc = shutil.which("nvcc") if args.nvcc else None
    if args.nvcc and nvcc is None:
        sys.exit("compile_check: --nvcc given but nvcc is not on PATH")
    sources = sorted(HERE.glob("*.hip"))
    if not sources:
        sys.exit(f"compile_check: no .hip files in {HERE}")

    env = dict(os.environ, HIP_PLATFORM="amd")  # hipcc otherwise guesses (and picks nvidia when it sees nvcc)
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            obj = Path(tmp) / (src.stem + ".o")
            arch_flags = [f"--offload-arch={a}" for a in ARCHS]
            run([hipcc, *arch_flags, *FLAGS, "-I", str(HERE), "-c", str(src), "-o", str(obj)], env, src)
            print(f"compiled {shown(src)} for {', '.join(ARCHS)}", flush=True)
            if nvcc:
                run([nvcc, "-x", "cu", f"-arch={NVCC_ARCH}", "-O3", "-std=c++17", "-I", str(HERE), "-c", str(src),
                     "-o", str(obj)], dict(os.environ), src)
                print(f"compiled {shown(src)} for {NVCC_ARCH} (nvcc)", flush=True)
    check_bindings()


def check_bindings():
    import sysconfig
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import paddle
        import paddle.sysconfig
    include = Path(paddle.sysconfig.get_include())
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        sys.exit("compile_check: no C++ compiler for the bindings (install g++)")
    for src in sorted(HERE.glob("*.cc")) + sorted((HERE.parent / "passes").glob("*.cc")):
        run([cxx, "-std=c++17", "-fsyntax-only", "-fopenmp", "-DPADDLE_NO_PYTHON", "-I", str(HERE), "-I", str(include),
             "-I", str(include / "third_party"), "-I", sysconfig.get_paths()["include"], str(src)], dict(os.environ),
            src)
        print(f"compiled {shown(src)} (host code) against Paddle {paddle.__version__}'s headers", flush=True)


if __name__ == "__main__":
    main()
