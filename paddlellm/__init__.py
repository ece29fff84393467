"""paddlellm: Llama training, static export and fast inference on PaddlePaddle 3.x."""
import warnings

__version__ = "0.1.0"

# Importing paddle warns about ccache (a build cache for custom ops) on every run; it is not our concern.
warnings.filterwarnings("ignore", message="No ccache found")
