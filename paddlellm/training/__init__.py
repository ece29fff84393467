"""Training: SFT, LoRA and pretraining on paddleformers' Trainer, configured as PaddleNLP's llm/ recipes are."""
from paddlellm.compat import quiet_paddleformers_import

quiet_paddleformers_import()
