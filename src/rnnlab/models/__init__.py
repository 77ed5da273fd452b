from rnnlab.models.captioner import ImageCaptioner
from rnnlab.models.classifier import SequenceClassifier
from rnnlab.models.language_model import LanguageModel
from rnnlab.models.music import PianoRollModel
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.models.seq2seq import Seq2Seq
from rnnlab.models.tagger import SequenceTagger
from rnnlab.models.word2vec import Word2Vec

__all__ = [
    "ImageCaptioner",
    "LanguageModel",
    "PianoRollModel",
    "Seq2Seq",
    "SequenceClassifier",
    "SequenceRegressor",
    "SequenceTagger",
    "Word2Vec",
]
