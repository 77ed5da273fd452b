"""What a DataModule hands to its model: batches, and once, before the first batch, a :class:`Task`.

The model reads nothing else from the DataModule: at the end of its ``setup`` (after the splits are loaded) the
DataModule calls ``model.bind_task(self.describe_task(), stage)``. Outside a Trainer, call
``model.bind_task(dm.describe_task(), "fit")`` yourself.
Architecture sizes (``vocab_size``, ``num_classes``, ...) stay init arguments that the CLI links, so a checkpoint
rebuilds its model without data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypedDict, get_args, get_origin, get_type_hints

from torch import Tensor

from rnnlab.errors import RnnlabError

IGNORE_INDEX = -100  # padding value for per-step targets (cross-entropy ignores it)


@dataclass
class Batch:
    """A padded batch, one field per meaning:

    * ``tokens``: ids, ``[B, T]`` or ``[B, T, K]`` (K ids per step: a word and its characters' ids; padding =
      ``pad_id``); None when the inputs are real numbers;
    * ``features``: real-valued inputs ``[B, T, F]`` (time series, piano rolls); None for ids;
    * ``lengths [B]``: true lengths, >= 1;
    * ``target``: ``[B]`` for one label per sequence, ``[B, T(, F)]`` for one per step (padding = -100), ``[B, T']``
      for a target sequence of its own length (seq2seq), or None;
    * ``flags``: per-step 0/1 beside a per-step target (the tagger's "this unit was not seen in training"), or None;
    * ``index [B]``: positions of the samples in their dataset (for predictions, and for checks under DDP);
    * ``category [B]``: one id per sequence that conditions it (the language of a name to generate), or None;
    * ``images [B, C, H, W]``: float images in [0, 1] (image captioning; ``lengths`` is then all ones), or None.
    """

    tokens: Tensor | None
    lengths: Tensor
    target: Tensor | None
    index: Tensor
    features: Tensor | None = None
    flags: Tensor | None = None
    category: Tensor | None = None
    images: Tensor | None = None

    def __len__(self) -> int:
        return self.lengths.shape[0]


@dataclass(frozen=True)
class Task:
    """One DataModule's description of its task, complete after its ``setup``. Fields a task does not have keep
    their defaults.

    Every task: ``vocab`` (ids <-> units: ``tokens()``, ``decode()``; None for real-valued inputs), ``labels`` (class,
    tag, category or variable names), ``pad_id``, ``predict_item(i)`` (the ``i``-th ``predict`` input as encoded:
    ``{"input", "tokens", ...}``), ``train_batches()`` (training batches per epoch, counted on a throw-away loader:
    it raises TypeError for a stream without a length).
    Classification: ``class_counts`` (training examples per class), ``train_examples()`` (the training split's
    encoded sequences and targets, for counted experts), ``collate(samples)`` (``(tokens, target, index)`` samples
    -> :class:`Batch`, as the loaders batch them).
    Language models: ``bos_id``/``eos_id`` (None: the data has no such symbol), ``stateful`` (batches continue the
    previous batch's streams), ``line_end_ids`` (ids that end a line of a poem).
    Tagging: ``scheme`` (how tags form spans: ``tags``, ``bmes``, ``bio``), ``unit_features`` (ids per step).
    Time series: ``scale`` (per-variable standard deviations the model's outputs are in).
    Translation: ``target_lang``, ``decode_target(ids)`` (target ids -> text), ``references(split)`` (every
    reference translation of each example of ``val``/``test``).
    word2vec: ``counts`` (training unigram counts), ``mode`` (``skipgram``/``cbow``), ``set_epoch(epoch)`` (re-seed
    the training pairs).
    """

    vocab: Any = None
    labels: Sequence[str] = ()
    pad_id: int = 0
    predict_item: Callable[[int], dict] = field(default=lambda i: {})
    train_batches: Optional[Callable[[], int]] = None
    class_counts: Optional[Sequence[int]] = None
    train_examples: Optional[Callable[[], tuple[Sequence[Tensor], Tensor]]] = None
    collate: Optional[Callable[[Sequence[tuple]], Batch]] = None
    bos_id: Optional[int] = None
    eos_id: Optional[int] = None
    stateful: bool = False
    line_end_ids: Sequence[int] = ()
    scheme: str = "tags"
    unit_features: int = 1
    scale: Optional[Tensor] = None
    target_lang: str = ""
    decode_target: Optional[Callable[[Sequence[int]], str]] = None
    references: Optional[Callable[[str], list[list[str]]]] = None
    counts: Optional[Tensor] = None
    mode: Optional[str] = None
    set_epoch: Optional[Callable[[int], None]] = None

    @property
    def words(self) -> list[str]:
        """The vocabulary in id order ([] without one)."""
        return self.vocab.tokens() if self.vocab is not None else []

    def banned_ids(self) -> tuple[int, ...]:
        """Ids a generator must never write: ``<pad>``, ``<unk>`` and the start symbol when the data has one."""
        return (0, 1) + ((self.bos_id,) if self.bos_id is not None else ())


# ------------------------------------------------------------------------------------------ prediction rows
# One row per input line: what `rnnlab predict` writes (JSONL/CSV) and what `rnnlab serve` answers. A DataModule names
# its row type (``prediction_row``); its ``render_prediction`` fills the task's fields, the writer and the server add
# the common ones, and both check every row against the type (:func:`check_row`). Fields marked "served" are extras
# that the server adds on request (``options``).
class PredictionRow(TypedDict, total=False):
    line: int  # 1-based input line (files; the server's rows are in request order)
    input: str
    error: str  # the line could not be predicted, and why (no other field then)
    warning: str  # predicted, with a caveat (unknown characters, a converted script)


class ClassificationRow(PredictionRow, total=False):
    label: str
    prob: float
    top: str  # the top classes with probabilities: "Russian 0.93, Czech 0.03, English 0.01"
    attribution: list  # served: [[token, gradient x input], ...]


class TaggingRow(PredictionRow, total=False):
    output: str  # the input with its tags (word/TAG ...) or its segmentation (words separated by spaces)


class GenerationRow(PredictionRow, total=False):
    category: str  # the category asked for (a conditional model)
    output: str  # the prompt and its continuation


class TranslationRow(PredictionRow, total=False):
    translation: str
    score: float  # the hypothesis' length-normalised log-probability (beam search)
    nbest: list  # served: [{"translation": ..., "score": ...}, ...]
    attention: dict  # served: {"source": [...], "target": [...], "weights": [[...], ...]}


class CaptionRow(PredictionRow, total=False):
    caption: str
    score: float
    nbest: list  # served: [{"caption": ..., "score": ...}, ...]
    attention: dict  # served: {"grid": side, "target": [...], "weights": [[...], ...]}


class MusicRow(PredictionRow, total=False):
    midi: str  # path of the MIDI file written
    png: str  # path of the piano-roll picture written
    steps: int
    notes_per_step: float
    pitch_min: Optional[int]
    pitch_max: Optional[int]
    in_key_share: float  # share of the generated notes in the primer's pitch classes
    midi_data: str  # served: the MIDI file as a data: URL
    png_data: str  # served: the picture as a data: URL


class NeighboursRow(PredictionRow, total=False):
    neighbours: str  # the nearest words by cosine similarity: "movie 0.81, film 0.77, ..."


class ForecastRow(PredictionRow, total=False):
    origin: str  # the last period the forecast starts after
    units: str  # of the values (the series' transformation, e.g. logdiff)
    forecast: dict  # {variable: [step 1, ..., step H]}
    history: dict  # served: {variable: [values of the window read]}


def row_fields(row_type: type) -> dict[str, str]:
    """``{field: type}`` of a row type, as text (what the server's ``/info`` shows)."""

    def name(t) -> str:
        return " | ".join(name(a) for a in get_args(t)) if get_args(t) else getattr(t, "__name__", str(t))

    return {k: name(t).replace("NoneType", "None") for k, t in get_type_hints(row_type).items()}


def check_row(row_type: type, row: dict) -> dict:
    """``row`` if it is a ``row_type``: only its fields, each of its type; a RnnlabError naming the field otherwise
    (a DataModule's ``render_prediction`` and its row type disagree)."""
    hints = get_type_hints(row_type)
    for key, value in row.items():
        if key not in hints:
            raise RnnlabError(f"prediction field {key!r} is not in {row_type.__name__} (fields: {', '.join(hints)})")
        expected = hints[key]
        allowed = tuple(t for t in get_args(expected) if isinstance(t, type)) or (get_origin(expected) or expected,)
        if float in allowed:
            allowed += (int,)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise RnnlabError(
                f"prediction field {key!r} of {row_type.__name__} must be {row_fields(row_type)[key]}, got "
                f"{type(value).__name__}"
            )
    if "input" not in row:
        raise RnnlabError(f"a {row_type.__name__} needs its input")
    return row
