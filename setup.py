"""paddlellm: Llama training, static export and fast inference on PaddlePaddle 3.x."""
import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "paddlellm" / "__init__.py").read_text()).group(1)

# paddleformers 1.2.0 pulls packages that disagree about numpy: fast_dataindex pins numpy<=1.26.4,
# while the newest pyarrow (through datasets) needs numpy>=2. These pins import together cleanly.
INSTALL_REQUIRES = [
    "paddlepaddle==3.3.1",
    "paddleformers==1.2.0",
    "numpy==1.26.4",
    "pyarrow==20.0.0",
    "datasets==4.0.0",
    "transformers==5.3.0",
    "tokenizers==0.22.2",
    "sentencepiece==0.2.3",
    "safetensors==0.8.0",
    "jinja2==3.1.6",
    "tqdm==4.70.1",
    "gguf==0.19.0",  # llm/tools/convert_gguf.py, and the quickstart's reference model
]
TEST_REQUIRES = [
    "pytest==9.2.0",
    "torch==2.13.0",
    "accelerate==1.15.0",
]

setup(
    name="paddlellm",
    version=VERSION,
    description="Llama training, static export and fast inference on PaddlePaddle 3.x (CPU, Ascend NPU, Hygon DCU)",
    packages=find_packages(include=["paddlellm", "paddlellm.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
)
