"""Builds the CPU op library from csrc/cpu on first use and loads it into Paddle.

The library is compiled once by `paddle.utils.cpp_extension.load` (in a child process) into a cache
directory keyed by a hash of the sources, the flags, Paddle, the compiler and Python
(~/.cache/paddlellm/ops/<hash>, or $PADDLELLM_OPS_CACHE/<hash>); a file lock keeps two processes from
building at once. Later processes only load the built .so (milliseconds). Paddle's build chatter (its
"Compiling user custom op" line, the compiler's and setuptools' output, the ccache warning) goes to
build.log in that directory; the user sees one progress line, or one error line naming the log.
"""
import ctypes
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from paddlellm.errors import UserError

NAME = "paddlellm_cpu_ops"
SOURCE_DIR = Path(__file__).resolve().parents[2] / "csrc" / "cpu"
PASS_DIR = SOURCE_DIR.parent / "passes"  # the IR passes, built into every op library
ISAS = ("scalar", "avx2", "avx512")  # index = the library's ISA code
_BUILD_VERSION = "1"  # bump to force a rebuild when this file's build logic changes

_lib = None  # ctypes handle of the loaded library (enough for create_predictor)
_registered = False  # ops registered for eager/to_static calls (register_ops)

# The op libraries of the other devices: the Python package their build installs (its import loads and
# registers the ops) and how to build it. They register the CPU library's op names and signatures, so a
# process loads exactly one library: the one of the device it runs on (see use_device).
DEVICE_LIBRARIES = {
    "npu": ("paddlellm_npu_ops", "cd csrc/npu && python setup.py build bdist_wheel && pip install dist/*.whl"),
    "dcu": ("paddlellm_hip_ops", "cd csrc/hip && python setup_hip.py install"),
    "gpu": ("paddlellm_hip_ops", "cd csrc/hip && python setup_hip.py install"),
}
_device = "cpu"  # whose op library load_library loads (use_device)
_device_library = None  # the imported package of a device library


def sources():
    """The files the library is built from: .cc compiled, .h/.inc hashed (the CPU ops and the IR passes)."""
    if not SOURCE_DIR.is_dir() or not PASS_DIR.is_dir():
        raise UserError(f"the CPU op sources are missing ({SOURCE_DIR} or {PASS_DIR} not found; install paddlellm "
                        f"from its source tree with pip install -e .)")
    return sorted(p for d in (SOURCE_DIR, PASS_DIR) for p in d.iterdir() if p.suffix in (".cc", ".h", ".inc"))


def _paddle_libs():
    import paddle

    return Path(paddle.__file__).resolve().parent / "libs"


def _flags():
    """Compile and link flags. No -march: the ISA-specific code is selected per function at run time.
    OpenMP comes from Paddle's own libiomp5 when it ships one, so our threads and MKL's share one pool
    (a second runtime's spinning threads would compete with MKL's for the cores)."""
    cflags = ["-O3", "-fopenmp", "-std=c++17"]
    libs = _paddle_libs()
    if (libs / "libiomp5.so").exists():
        ldflags = [f"-L{libs}", "-liomp5", f"-Wl,-rpath,{libs}"]
    else:
        ldflags = ["-fopenmp"]
    return cflags, ldflags


def _tool(env_name, config_name, default):
    """The program setuptools will run for CXX or LDSHARED (first word), as a path or None."""
    cmd = os.environ.get(env_name) or sysconfig.get_config_var(config_name) or default
    words = shlex.split(cmd)
    return shutil.which(words[0]) if words else None


def _compiler_id():
    compiler = _tool("CXX", "CXX", "g++")
    linker = _tool("LDSHARED", "LDSHARED", "gcc")
    if compiler is None or linker is None:
        raise UserError("no C++ compiler found (install g++, e.g. apt-get install g++)")
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"the C++ compiler {compiler} does not run: {e} (install g++, e.g. apt-get install g++)")
    return f"{compiler} {out.splitlines()[0] if out else ''}"


def cache_dir():
    """Where this exact build lives (created on first use)."""
    import paddle

    root = os.environ.get("PADDLELLM_OPS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "paddlellm", "ops")
    h = hashlib.sha256()
    for path in sources():
        h.update(f"{path.parent.name}/{path.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    cflags, ldflags = _flags()
    key = [_BUILD_VERSION, *cflags, *ldflags, paddle.__version__, getattr(paddle.version, "commit", ""),
           _compiler_id(), sys.version]
    h.update("\0".join(key).encode())
    return Path(root) / h.hexdigest()[:16]


def library_path():
    return cache_dir() / NAME / f"{NAME}.so"


_BUILD_SCRIPT = """
import json, sys, warnings
warnings.simplefilter("ignore")
from paddle.utils.cpp_extension import load
args = json.loads(sys.argv[1])
load(name=args["name"], sources=args["sources"], extra_cxx_cflags=args["cflags"],
     extra_ldflags=args["ldflags"], build_directory=args["directory"])
"""


def _build(directory):
    """Compile into directory (under the lock). Paddle's load() runs in a child process: its output goes to
    build.log, and the ops it registers there are not registered twice here."""
    if directory.exists():
        shutil.rmtree(directory)  # a build that died half way
    directory.mkdir(parents=True)
    log = directory / "build.log"
    print("building paddlellm CPU ops (first use, ~30 s)", file=sys.stderr, flush=True)
    cflags, ldflags = _flags()
    args = dict(name=NAME, sources=[str(p) for p in sources() if p.suffix == ".cc"], cflags=cflags,
                ldflags=ldflags, directory=str(directory))
    with open(log, "wb") as out:
        code = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, json.dumps(args)], stdout=out,
                              stderr=subprocess.STDOUT).returncode
    so = directory / NAME / f"{NAME}.so"
    if code != 0 or not so.exists():
        errors = [line.strip() for line in log.read_text(errors="replace").splitlines() if "error" in line.lower()]
        first = errors[0] if errors else f"exit status {code}"
        raise UserError(f"building the paddlellm CPU ops failed: {first} (full log: {log})")
    (directory / "ok").write_text(str(so) + "\n")


def use_device(device, present=True):
    """Selects the op library this process loads: the device's own (DEVICE_LIBRARIES) when the device is
    present, else the CPU library, whose ops take the same inputs and attributes: enough to trace a program
    for the device here and run it there. A process loads one library: choosing another after the first
    load is an error."""
    global _device
    chosen = device if present and device in DEVICE_LIBRARIES else "cpu"
    if chosen != _device and (_lib is not None or _device_library is not None):
        raise UserError(f"this process already loaded the {_device} op library, so it cannot run ops for "
                        f"--device {device} (use one device per process)")
    _device = chosen
    return chosen


def library_device():
    """The device whose op library load_library loads (see use_device)."""
    return _device


def _load_device_library():
    global _device_library, _registered
    if _device_library is None:
        import importlib

        package, build = DEVICE_LIBRARIES[_device]
        try:
            _device_library = importlib.import_module(package)  # registers the ops (Paddle's generated stub)
        except ImportError as e:
            raise UserError(f"the paddlellm {_device} ops are not installed ({package}: {e}); build and install "
                            f"them from paddlellm's source tree: {build}") from None
        _registered = True
    return _device_library.__file__


def load_library():
    """Builds the op library (first use) and loads it; returns its path. Idempotent, cheap after the first call.
    This is what a process needs before paddle.inference.create_predictor on a program holding the ops:
    the predictor registers the ops itself from the loaded library. For another device (use_device), imports
    the installed package of that device's library instead."""
    global _lib
    if _device != "cpu":
        return _load_device_library()
    if _lib is not None:
        return _lib._name
    directory = cache_dir()
    so = directory / NAME / f"{NAME}.so"
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(str(directory) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not ((directory / "ok").exists() and so.exists()):
                _build(directory)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _lib = ctypes.CDLL(str(so))
    return str(so)


def register_ops():
    """load_library(), then register the ops with Paddle's eager and program-building APIs (what the
    Python calls in paddlellm.ops need). In a process that did this, create_predictor logs two harmless
    "op already registered" warnings (glog), so a predictor-only process should use load_library()."""
    global _registered
    so = load_library()
    if not _registered:  # (a device library registered its ops on import)
        from paddle.utils.cpp_extension import load_op_meta_info_and_register_op

        load_op_meta_info_and_register_op(so)
        _registered = True
    return so


def library_id():
    """What identifies the op library this process loads (a build of the CPU sources, or an installed device
    library): part of the optimized-program cache key."""
    if _device != "cpu":
        path = Path(_load_device_library())
        return f"{_device}:{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
    return f"cpu:{cache_dir().name}"


def _handle():
    """ctypes handle of the loaded op library (CPU or device)."""
    if _device == "cpu":
        load_library()
        return _lib
    _load_device_library()
    return ctypes.CDLL(getattr(_device_library, "so_path", _device_library.__file__))


def forget_pass_matches():
    """Clear the IR passes' match counts (before a predictor runs them)."""
    _handle().paddlellm_forget_pass_matches()


def pass_matches(name):
    """How often IR pass `name` matched in its last run in this process (None: it has not run)."""
    handle = _handle()
    handle.paddlellm_pass_matches.restype = ctypes.c_int64
    count = handle.paddlellm_pass_matches(name.encode())
    return None if count < 0 else count


def cpu_isa():
    """The ISA the CPU kernels use now ("avx512", "avx2" or "scalar"), following PADDLELLM_CPU_ISA; None in a
    process that runs another device's library."""
    if _device != "cpu":
        return None
    load_library()
    code = _lib.paddlellm_cpu_isa()
    if code < 0:
        value = os.environ.get("PADDLELLM_CPU_ISA")
        raise UserError(f"PADDLELLM_CPU_ISA={value} cannot be used on this CPU (use one of "
                        f"{', '.join(supported_isas())}, or unset it)")
    return ISAS[code]


def supported_isas():
    """The kernel ISAs this CPU can run, best last."""
    load_library()
    return [name for code, name in enumerate(ISAS) if _lib.paddlellm_cpu_isa_supported(code)]


def has_avx_vnni():
    """Whether this CPU has AVX-VNNI (VEX byte dot products): the avx2 level's int4 / a8w8 kernels then use them."""
    load_library()
    return bool(_lib.paddlellm_cpu_has_avx_vnni())


def num_threads():
    """OpenMP threads a parallel op call would use now."""
    load_library()
    return _lib.paddlellm_cpu_num_threads()


if __name__ == "__main__":  # python -m paddlellm.ops.build: build now, print where
    print(load_library())
    print("ISA:", cpu_isa(), "supported:", ", ".join(supported_isas()), "threads:", num_threads())
