from rnnlab.models.classifier import SequenceClassifier

__all__ = ["SequenceClassifier"]
