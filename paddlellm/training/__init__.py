"""Training: SFT, LoRA and pretraining on paddleformers' Trainer, configured as PaddleNLP's llm/ recipes are."""
