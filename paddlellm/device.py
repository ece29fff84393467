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


def is_present(device):
    """Whether this Paddle build and machine have the device."""
    if device == "gpu":
        return paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "dcu":
        return paddle.is_compiled_with_rocm() and paddle.device.cuda.device_count() > 0
    if device == "npu":
        return "npu" in paddle.device.get_all_custom_device_type()
    return device == "cpu"


def check_device(device):
    """Raise unless `device` is a known name and present in this Paddle build and machine."""
    check_device_name(device)
    if not is_present(device):
        install = {"gpu": "paddlepaddle-gpu on a machine with an NVIDIA GPU", "dcu": "paddlepaddle-dcu on a Hygon DCU "
                   "machine", "npu": "paddle-custom-npu on an Ascend machine"}[device]
        raise UserError(f"device {device} is not present (install {install}, or use --device cpu)")
    return device


def paddle_place(device):
    """The place name Paddle uses: a DCU is a 'gpu' to paddlepaddle-dcu."""
    return {"cpu": "cpu", "gpu": "gpu", "dcu": "gpu", "npu": "npu"}[device]


def compute_dtype(dtype, device):
    """CPU Paddle has no bfloat16/float16 matmul kernels: there the weights stay narrow and the math is float32."""
    return "float32" if device == "cpu" else dtype


def kv_cache_dtype(dtype, math_dtype, cachekv_int8_type=None):
    """The KV cache's dtype for weights in `dtype` whose math runs in `math_dtype` (compute_dtype): int8 with
    --cachekv_int8_type; else the math's dtype, except that bfloat16 weights keep a bfloat16 cache where the math is
    float32 (the CPU): half the bytes attention reads each step, widened as the kernels load them. (float16 has
    no CPU cache kernels: its cache stays float32.)"""
    if cachekv_int8_type:
        return "int8"
    return "bfloat16" if dtype == "bfloat16" else math_dtype


def check_cache_dtype(dtype, device):
    """The npu's attention kernels (CANN's) take 16-bit KV caches only, and the cache is in compute_dtype."""
    if device == "npu" and compute_dtype(dtype, device) == "float32":
        raise UserError("--device npu needs --dtype float16 or bfloat16: CANN's paged attention takes 16-bit KV "
                        "caches only")


def uses_cpu_ops(device, dtype):
    """Whether the model runs on the CPU's own ops (packed weights, one fused op per layer): float32 and
    bfloat16 weights on the CPU (see LlamaForCausalLM.use_cpu_ops)."""
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
