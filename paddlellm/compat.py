"""Fixes for third-party packages that meet in one environment (used by the HF reference side)."""


def hide_paddlecodec_from_transformers():
    """paddlecodec (a paddleformers dependency) installs a `torchcodec` module without package metadata;
    transformers then finds the module, asks for its version and fails to import its models."""
    import transformers.utils
    import transformers.utils.import_utils as import_utils

    import_utils.is_torchcodec_available = transformers.utils.is_torchcodec_available = lambda: False
