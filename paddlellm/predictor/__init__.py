"""The predictor: prompts in, generations out, over a dynamic model or an exported static program.

The Python API (see llm.py): `from paddlellm.predictor import LLM, SamplingParams`.
"""


def __getattr__(name):  # the API loads Paddle; the scheduler and block manager below it do not
    if name in ("LLM", "RequestOutput"):
        from paddlellm.predictor import llm

        return getattr(llm, name)
    if name == "SamplingParams":
        from paddlellm.predictor.sampling import SamplingParams

        return SamplingParams
    raise AttributeError(name)
