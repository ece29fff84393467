"""Shared setup for the conversion tests."""
import sys

# paddlecodec installs a module named `torchcodec` without torchcodec's package metadata; transformers then
# believes torchcodec is present, asks for its version and fails to import LlamaForCausalLM. Hide the stand-in
# (find_spec returns None for a None entry) unless a real torchcodec was already imported.
sys.modules.setdefault("torchcodec", None)
