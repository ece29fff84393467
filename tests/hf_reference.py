"""The independent side of the tests: HF transformers' greedy generation on the same weights."""
import torch


def hf_greedy_tokens(hf_model, prompt_ids, max_new_tokens, eos_ids, pad_id):
    """HF generate's greedy new tokens for one prompt, cut before the first EOS (EOS itself left out, as the
    predictor reports output_ids)."""
    with torch.no_grad():
        out = hf_model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                                max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(eos_ids),
                                pad_token_id=pad_id)
    tokens = out[0, len(prompt_ids):].tolist()
    return tokens[: next((i for i, t in enumerate(tokens) if t in set(eos_ids)), len(tokens))]
