#!/usr/bin/env python3
"""Compile-check the npu op sources without CANN or an NPU: real Paddle headers + CANN's ACL runtime headers.

CANN's runtime headers (acl/acl.h, acl/acl_rt.h, acl/acl_base.h) ship inside the torch-npu wheel on PyPI
(torch_npu/include/third_party/acl/inc). This script downloads that wheel once (pip download --no-deps, into
~/.cache/paddlellm/torch_npu or $PADDLELLM_TORCH_NPU_CACHE), extracts only that include folder, then runs
`g++ -std=c++17 -fsyntax-only` on every csrc/npu/*.cc with the defines paddle-custom-npu's ops are built with
and the include paths of the installed Paddle and Python. The aclnn operator headers are not in the wheel:
the sources declare those prototypes themselves (aclnn_decls.h) and resolve them at run time, so a syntax
check covers everything they include.

Prints one line per source; exits 1 with the compiler's output if any source fails, 2 (one line) if the
headers or the compiler cannot be had.

    python csrc/npu/compile_check.py [-j JOBS] [sources ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import warnings
import zipfile

TORCH_NPU_VERSION = "2.7.1"
# The wheel's headers do not depend on the Python version or platform tag; pin one wheel so that the
# download is the same from any interpreter.
WHEEL_PYTHON = "3.11"
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
ACL_PREFIX = "torch_npu/include/third_party/acl/inc/"
DEFINES = ["-DPADDLE_WITH_CUSTOM_DEVICE", "-DPADDLE_WITH_CUSTOM_KERNEL", "-D_GLIBCXX_USE_CXX11_ABI=1"]

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


class CheckError(Exception):
    """A one-line failure before any source is compiled (download, headers, compiler)."""


def cache_dir() -> pathlib.Path:
    env = os.environ.get("PADDLELLM_TORCH_NPU_CACHE")
    base = pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "paddlellm" / "torch_npu"
    return base


def acl_include() -> pathlib.Path:
    """The ACL include folder, downloaded and extracted on first use."""
    root = cache_dir() / f"torch_npu-{TORCH_NPU_VERSION}"
    inc = root / ACL_PREFIX
    if (inc / "acl" / "acl.h").is_file():
        return inc
    download = cache_dir() / "download"
    download.mkdir(parents=True, exist_ok=True)
    wheels = sorted(download.glob(f"torch_npu-{TORCH_NPU_VERSION}-*.whl"))
    if not wheels:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--python-version", WHEEL_PYTHON, "--platform", WHEEL_PLATFORM,
            f"torch-npu=={TORCH_NPU_VERSION}", "-d", str(download),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(download.glob(f"torch_npu-{TORCH_NPU_VERSION}-*.whl"))
        if proc.returncode != 0 or not wheels:
            lines = [l.strip() for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
            errors = [l for l in lines if l.startswith("ERROR")]
            why = (errors or lines or [f"pip exited with {proc.returncode}"])[-1]
            raise CheckError(f"could not download torch-npu=={TORCH_NPU_VERSION} (it carries CANN's ACL headers): {why}")
    try:
        with zipfile.ZipFile(wheels[-1]) as whl:
            members = [m for m in whl.namelist() if m.startswith(ACL_PREFIX) and not m.endswith("/")]
            if not members:
                raise CheckError(f"{wheels[-1].name} has no {ACL_PREFIX} folder")
            tmp = root.with_name(root.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            for m in members:
                whl.extract(m, tmp)
            shutil.rmtree(root, ignore_errors=True)
            tmp.rename(root)
    except zipfile.BadZipFile as e:
        wheels[-1].unlink(missing_ok=True)  # a truncated download: fetch it again next time
        raise CheckError(f"{wheels[-1].name} is not a readable wheel ({e}); removed it, run again") from None
    if not (inc / "acl" / "acl.h").is_file():
        raise CheckError(f"acl/acl.h is missing from {inc}")
    for w in wheels:  # 25 MB; the extracted headers are all that is kept
        w.unlink(missing_ok=True)
    return inc


def paddle_info() -> tuple[str, pathlib.Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import paddle
            import paddle.sysconfig
        except ImportError as e:
            raise CheckError(f"Paddle is not importable from {sys.executable}: {e}") from None
    return paddle.__version__, pathlib.Path(paddle.sysconfig.get_include())


def compile_one(cxx: str, src: pathlib.Path, includes: list[str]) -> tuple[pathlib.Path, int, str]:
    cmd = [cxx, "-std=c++17", "-fsyntax-only", *DEFINES, *includes, str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return src, proc.returncode, proc.stderr + proc.stdout


def host_sources() -> list[pathlib.Path]:
    """The sources outside csrc/npu that setup.py builds into the library too: the generation helpers' host
    kernels (csrc/cpu) and the IR passes (csrc/passes)."""
    spec = importlib.util.spec_from_file_location("npu_setup", HERE / "setup.py")
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    return [(HERE / name).resolve() for name in setup.HOST_SOURCES + setup.PASS_SOURCES]


def rel(p: pathlib.Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="*", help="sources to check (default: every csrc/npu/*.cc)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="compilers to run at once (default 1)")
    args = ap.parse_args(argv)
    sources = [pathlib.Path(s).resolve() for s in args.sources] or sorted(HERE.glob("*.cc")) + host_sources()
    if not sources:
        print("compile_check: no sources in csrc/npu", file=sys.stderr)
        return 2
    try:
        cxx = os.environ.get("CXX") or shutil.which("g++")
        if not cxx:
            raise CheckError("no C++ compiler found (install g++, e.g. apt-get install g++)")
        version, paddle_inc = paddle_info()
        acl_inc = acl_include()
    except CheckError as e:
        print(f"compile_check: {e}", file=sys.stderr)
        return 2
    includes = [
        f"-I{HERE}",
        f"-I{paddle_inc}",
        f"-I{paddle_inc / 'third_party'}",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{acl_inc}",
    ]
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for src, rc, out in pool.map(lambda s: compile_one(cxx, s, includes), sources):
            if rc == 0:
                print(f"compiled {rel(src)} against Paddle {version} and CANN headers", flush=True)
            else:
                failed += 1
                print(f"FAILED {rel(src)} (g++ -fsyntax-only exited {rc}):\n{out.rstrip()}", flush=True)
    if failed:
        print(f"compile_check: {failed} of {len(sources)} sources failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
