"""Shared fixtures: tiny random Llamas and their exports."""
import pytest

from paddlellm.compat import hide_paddlecodec_from_transformers

hide_paddlecodec_from_transformers()

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


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory):
    """The reference model (SmolLM2-135M-Instruct GGUF) converted by our importer: an HF-format directory."""
    from paddlellm.convert.gguf import convert
    from paddlellm.reference import reference_gguf

    return convert(reference_gguf(), tmp_path_factory.mktemp("smollm2") / "checkpoint")
