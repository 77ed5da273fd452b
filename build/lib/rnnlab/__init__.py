"""rnnlab: recurrent sequence models on real data with PyTorch Lightning."""

from rnnlab.errors import RnnlabError

__all__ = ["RnnlabError"]
__version__ = "0.1.0"
