"""The package's layers: inference never imports training, and no module reaches into another's private names."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "paddlellm"
INFERENCE_MODULES = ("paddlellm.export.main", "paddlellm.export.exporter", "paddlellm.predictor.main",
                     "paddlellm.models.llama.loader", "paddlellm.models.llama.lora", "paddlellm.convert.main")


def test_export_and_predict_import_no_training_code():
    code = (f"import sys\nfor name in {INFERENCE_MODULES!r}: __import__(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paddleformers' or m.startswith('paddlellm.training')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_no_module_imports_private_names_of_another():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("paddlellm"):
                offenders += [f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_")]
    assert offenders == []


def test_inference_packages_never_import_training_even_inside_functions():
    """A lazy import inside a function (as the LoRA merge once was) escapes the sys.modules check above."""
    offenders = []
    for package in ("export", "predictor", "models", "convert"):
        for path in (PACKAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                offenders += [f"{path.relative_to(PACKAGE)}: {name}" for name in names
                              if name.split(".")[0] == "paddleformers" or name.startswith("paddlellm.training")]
    assert offenders == []
