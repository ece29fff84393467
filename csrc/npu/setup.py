"""Build the paddlellm npu op library for Paddle + paddle-custom-npu (Ascend 910B, CANN 8.0 or newer).

    source /usr/local/Ascend/ascend-toolkit/set_env.sh   # sets ASCEND_TOOLKIT_HOME
    cd csrc/npu && python setup.py build bdist_wheel
    pip install dist/paddlellm_npu_ops-*.whl

Paddle's own setup (paddle.utils.cpp_extension) compiles every op source here into one shared library and
wraps it in a Python package `paddlellm_npu_ops` whose import registers the ops (paddlellm_rms_norm, ...).
The ops have the same names and signatures as the CPU library (csrc/cpu), so a process loads one or the
other. Build flags are paddle-custom-npu's: -DPADDLE_WITH_CUSTOM_DEVICE -DPADDLE_WITH_CUSTOM_KERNEL
-D_GLIBCXX_USE_CXX11_ABI=1, CANN's headers from $ASCEND_TOOLKIT_HOME/include, linked against libascendcl.
libopapi.so (the aclnn operators) is not linked: the ops find their entry points with dlopen/dlsym at run
time, so LD_LIBRARY_PATH must reach CANN's lib64 when they run (set_env.sh does that).
"""

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
DEFINES = ["-DPADDLE_WITH_CUSTOM_DEVICE", "-DPADDLE_WITH_CUSTOM_KERNEL", "-D_GLIBCXX_USE_CXX11_ABI=1"]
HOST_SOURCES = ["../cpu/generation_ops.cc", "../cpu/sampling_ops.cc", "../cpu/isa.cc"]
PASS_SOURCES = sorted(f"../passes/{p.name}" for p in (HERE.parent / "passes").glob("*.cc"))  # the IR passes


def ascend_toolkit() -> pathlib.Path:
    home = os.environ.get("ASCEND_TOOLKIT_HOME") or os.environ.get("ASCEND_HOME_PATH")
    if not home:
        sys.exit(
            "setup.py: ASCEND_TOOLKIT_HOME is not set (source CANN's set_env.sh, e.g. "
            "/usr/local/Ascend/ascend-toolkit/set_env.sh)"
        )
    root = pathlib.Path(home)
    if not (root / "include" / "acl" / "acl.h").is_file():
        sys.exit(f"setup.py: {root}/include/acl/acl.h not found: ASCEND_TOOLKIT_HOME must be a CANN toolkit")
    if not any((root / "lib64").glob("libascendcl.so*")):
        sys.exit(f"setup.py: {root}/lib64/libascendcl.so not found: ASCEND_TOOLKIT_HOME must be a CANN toolkit")
    return root


def build_ext_once():
    """Paddle's build_ext, run once per process.

    `setup.py build bdist_wheel` runs build_ext twice in one process (bdist_wheel's install step runs it
    again). Paddle's build_ext deletes its object files after linking, so the second run recompiles
    everything, and it regenerates the package's Python stub from the ops that loading the library
    registers *anew*: none, the first run registered them all, so the wheel's stub would define no op and
    fail at import. The second run therefore reuses the first one's library and stub when they are there.
    """
    from paddle.utils.cpp_extension import BuildExtension

    base = BuildExtension.with_options(no_python_abi_suffix=True)  # what Paddle's setup uses by default

    class BuildExtOnce(base):
        built = {}  # build_lib -> the outputs of the run that built it

        def run(self):
            key = os.path.abspath(self.build_lib)
            done = BuildExtOnce.built.get(key)
            if done and all(os.path.exists(p) for p in done):
                print(f"build_ext: reusing the library built earlier in this process in {key}")
                return
            super().run()
            BuildExtOnce.built[key] = [os.path.abspath(p) for p in self.get_outputs()]

    return BuildExtOnce


def main() -> None:
    from paddle.utils.cpp_extension import CppExtension, setup

    cann = ascend_toolkit()
    os.chdir(HERE)  # Paddle's setup resolves sources and writes build/ relative to the working directory
    # + the generation helpers' host kernels, shared with the CPU library (csrc/npu/generation_ops.cc registers
    # them), and the IR passes, which insert this library's ops
    sources = sorted(p.name for p in HERE.glob("*.cc")) + HOST_SOURCES + PASS_SOURCES
    setup(
        name="paddlellm_npu_ops",
        version="0.1.0",
        description="paddlellm's Llama inference ops for Ascend NPUs (paddle-custom-npu, aclnn)",
        ext_modules=CppExtension(
            sources=sources,
            include_dirs=[str(HERE), str(cann / "include")],
            library_dirs=[str(cann / "lib64")],
            libraries=["ascendcl", "dl"],
            extra_compile_args={"cxx": ["-std=c++17", "-O2", "-fopenmp", *DEFINES]},
            extra_link_args=[f"-Wl,-rpath,{cann / 'lib64'}", "-fopenmp"],
        ),
        cmdclass={"build_ext": build_ext_once()},
    )


if __name__ == "__main__":
    main()
