from rnnlab.callbacks.prediction_writer import PredictionWriter
from rnnlab.callbacks.throughput import ThroughputMonitor

__all__ = ["PredictionWriter", "ThroughputMonitor"]
