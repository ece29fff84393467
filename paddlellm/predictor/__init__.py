"""The predictor: prompts in, generations out, over a dynamic model or an exported static program."""
