"""Llama: checkpoint reading, model and loading."""
