"""Fixes for third-party packages that meet in one environment (used by the HF reference side)."""


def hide_paddlecodec_from_transformers():
    """paddlecodec (a paddleformers dependency) installs a `torchcodec` module without package metadata;
    transformers then finds the module, asks for its version and fails to import its models."""
    import transformers.utils
    import transformers.utils.import_utils as import_utils

    import_utils.is_torchcodec_available = transformers.utils.is_torchcodec_available = lambda: False


_IMPORT_NOTICES = ("Due to potential compatibility issues between PaddlePaddle and PyTorch",
                   "PyTorch was not found. Models won't be available")


def quiet_paddleformers_import():
    """Importing paddleformers makes it and transformers log a notice each on stderr (paddleformers hides
    torch from transformers); entry points keep stderr for their own one-line errors."""
    import logging

    def not_a_notice(record):
        return not any(notice in str(record.msg) for notice in _IMPORT_NOTICES)

    for name in ("PaddleFormers", "transformers"):
        logging.getLogger(name).addFilter(not_a_notice)
