"""Shared fixtures: tiny random Llamas and their exports."""
import pytest


def _hide_paddlecodec_from_transformers():
    """paddlecodec (a paddleformers dependency) installs a `torchcodec` module without package metadata;
    transformers then finds the module, asks for its version and fails to import its models."""
    import transformers.utils
    import transformers.utils.import_utils as import_utils

    import_utils.is_torchcodec_available = transformers.utils.is_torchcodec_available = lambda: False


_hide_paddlecodec_from_transformers()

from tiny_models import make_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """GQA (4 query heads, 2 KV heads), untied embeddings."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny_gqa"), gqa=True, tie=False)


@pytest.fixture(scope="session")
def tiny_llama_mha(tmp_path_factory):
    """No GQA (4 and 4 heads), tied embeddings."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny_mha"), gqa=False, tie=True, seed=1)


@pytest.fixture(scope="session")
def exported(tiny_llama, tmp_path_factory):
    from paddlellm.export.exporter import export_model

    return export_model(tiny_llama, tmp_path_factory.mktemp("exported") / "inference")


@pytest.fixture(scope="session")
def exported_mha(tiny_llama_mha, tmp_path_factory):
    from paddlellm.export.exporter import export_model

    return export_model(tiny_llama_mha, tmp_path_factory.mktemp("exported_mha") / "inference")
