"""Devices and dtypes: which names are valid, which are present, what the math runs in."""
import paddle

from paddlellm.errors import UserError

DEVICES = ("cpu", "gpu", "npu", "dcu")
DTYPES = ("float32", "bfloat16", "float16")


def check_dtype(dtype):
    if dtype not in DTYPES:
        raise UserError(f"unknown --dtype '{dtype}' (choose one of: {', '.join(DTYPES)})")
    return dtype


def check_device_name(device):
    if device not in DEVICES:
        raise UserError(f"unknown --device '{device}' (choose one of: {', '.join(DEVICES)})")
    return device


def check_device(device):
    """Raise unless `device` is a known name and present in this Paddle build and machine."""
    check_device_name(device)
    if device == "gpu" and not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        raise UserError("device gpu is not present (install paddlepaddle-gpu on a machine with an NVIDIA GPU, or use --device cpu)")
    if device == "dcu" and not (paddle.is_compiled_with_rocm() and paddle.device.cuda.device_count() > 0):
        raise UserError("device dcu is not present (install paddlepaddle-dcu on a Hygon DCU machine, or use --device cpu)")
    if device == "npu" and "npu" not in paddle.device.get_all_custom_device_type():
        raise UserError("device npu is not present (install paddle-custom-npu on an Ascend machine, or use --device cpu)")
    return device


def paddle_place(device):
    """The place name Paddle uses: a DCU is a 'gpu' to paddlepaddle-dcu."""
    return {"cpu": "cpu", "gpu": "gpu", "dcu": "gpu", "npu": "npu"}[device]


def compute_dtype(dtype, device):
    """CPU Paddle has no bfloat16/float16 matmul kernels: there the weights stay narrow and the math is float32."""
    return "float32" if device == "cpu" else dtype


def has_block_kernels(device):
    """Whether this version has the device's kernels for the paged-KV ops of block attention (csrc/cpu)."""
    return device == "cpu"


def uses_cpu_ops(device, dtype):
    """Whether the model runs on the CPU op set (paddlellm.ops, csrc/cpu): float32 and bfloat16 weights on the
    CPU (see LlamaForCausalLM.use_cpu_ops)."""
    return device == "cpu" and dtype in ("float32", "bfloat16")


def main(argv):
    """`python -m paddlellm.device --check NAME`: exit 0 if the device is present, else one error line."""
    if len(argv) != 2 or argv[0] != "--check":
        raise UserError("usage: python -m paddlellm.device --check cpu|gpu|npu|dcu")
    check_device(argv[1])
    return 0


if __name__ == "__main__":
    import sys

    from paddlellm.cli import run_main

    sys.exit(run_main(main))
