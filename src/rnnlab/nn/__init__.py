"""Recurrent building blocks: the driver, the handwritten cells, attention, CRF, pooling."""

from rnnlab.nn.attention import Attention
from rnnlab.nn.cells import GRUCell, LSTMCell, RNNCell
from rnnlab.nn.crf import CRF
from rnnlab.nn.pooling import Pooling
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec

__all__ = ["CRF", "Attention", "GRUCell", "LSTMCell", "Pooling", "RNNCell", "Recurrent", "RecurrentSpec"]
