"""paddlellm: Llama training, static export and fast inference on PaddlePaddle 3.x."""

__version__ = "0.1.0"
