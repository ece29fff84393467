"""Tiny random Llamas in HF format, with a byte-level BPE tokenizer and a ChatML template."""
import json
from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paddle runs Llama models on CPUs, NPUs and DCUs.",
    "Once upon a time there was a tiny language model that wanted to be fast.",
    "1234567890 + - * / = () [] {} <> ; : , . ! ?",
    "def add(a, b):\n    return a + b\n",
    "Héllo wörld, ünïcode çharacters and emoji 🙂 work too.",
]


def write_tokenizer(path: Path, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML,
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "add_bos_token": False,
    }))
    return tok


def make_tiny_llama(path: Path, gqa=True, tie=False, seed=0, rope_scaling=None, layers=2):
    """Save a tiny random HF Llama (`layers` layers, hidden 64) plus tokenizer into `path`; return path."""
    import torch
    import transformers

    path.mkdir(parents=True, exist_ok=True)
    tok = write_tokenizer(path, vocab_size=320)
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2 if gqa else 4, max_position_embeddings=512,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=tie, initializer_range=0.2,
        bos_token_id=None, eos_token_id=tok.token_to_id("<|im_end|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
        rope_scaling=rope_scaling,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(path)
    return path
