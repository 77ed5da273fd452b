from rnnlab.callbacks.confusion import ConfusionMatrix
from rnnlab.callbacks.prediction_writer import PredictionWriter
from rnnlab.callbacks.resume import LastCheckpoint, find_last_checkpoint
from rnnlab.callbacks.samples import GenerationSamples, PianoRollSamples, TranslationSamples
from rnnlab.callbacks.summary import RunSummary
from rnnlab.callbacks.throughput import ThroughputMonitor

__all__ = [
    "ConfusionMatrix",
    "GenerationSamples",
    "LastCheckpoint",
    "find_last_checkpoint",
    "PianoRollSamples",
    "PredictionWriter",
    "RunSummary",
    "ThroughputMonitor",
    "TranslationSamples",
]
