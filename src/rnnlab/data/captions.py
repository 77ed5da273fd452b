"""Image captioning data: images in, one sentence out (the one-to-many shape).

:class:`CaptionDataModule` is what every captioning dataset shares: a subclass reads ``{split: [(image, [captions])]}``
(:meth:`~CaptionDataModule.read_examples`; images ``uint8 [C, H, W]`` of one size) and this class builds a word
vocabulary on the training captions, encodes ``<bos> caption <eos>``, and batches through the project's one batching
path (``pad_collate``'s ``image`` layout: ``Batch.images`` and the caption as ``target``). Training has one sample
per (image, caption) pair; validation and test one per image, every caption of it a BLEU reference.

* :class:`DigitScenesDataModule`: scenes of 1-4 of the 1,797 real handwritten digit scans that scikit-learn ships
  (UCI, 8x8) on a 32x32 canvas, captioned from their layout ("a 3 left of a 7 above a 1"). The digit images are split
  first (seeded), so test scenes are built from digit images no training scene contains.
* :class:`Flickr8kDataModule`: Flickr8k in its official layout -- ``Flickr8k_Dataset.zip`` (``Flicker8k_Dataset/
  *.jpg``, or that folder extracted) and ``Flickr8k_text.zip`` (``Flickr8k.token.txt``: ``image#k<TAB>caption``, and
  the ``Flickr_8k.{train,dev,test}Images.txt`` split lists) -- or Karpathy's split JSON (``karpathy_json``).

``predict`` inputs are image files (``.png``/``.jpg``), ``data:image/...;base64,`` URLs (what the server's page
sends), or ``<split>:<n>`` for image ``n`` of a split.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from rnnlab.contract import CaptionRow, Task
from rnnlab.data.base import SequenceDataModule, seeded_split
from rnnlab.data.batching import SequenceDataset
from rnnlab.data.sources import RemoteFile, Source, fetch, register
from rnnlab.data.text import BOS, EOS, Vocabulary
from rnnlab.errors import RnnlabError

log = logging.getLogger(__name__)


class CaptionDataset(SequenceDataset):
    """``(image, caption ids, index)`` samples: ``images [N, C, H, W]`` shared by the captions that describe them
    (``image_of[k]``: the image of caption ``k``). Batches group captions of similar length."""

    def __init__(self, images: Tensor, image_of: Sequence[int], captions: Sequence[Tensor]) -> None:
        super().__init__(list(captions))
        self.images, self.image_of = images, list(image_of)

    def __getitem__(self, i: int):
        return self.images[self.image_of[i]], self.sequences[i], i


def load_image(data, size: int, channels: int, name: str) -> Tensor:
    """An image file (path, bytes or file object) -> ``uint8 [channels, size, size]`` (resized, RGB or grey)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image = image.convert("RGB" if channels == 3 else "L").resize((size, size), Image.BILINEAR)
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise RnnlabError(f"{name} is not a readable image ({err})") from None
    return pixels.view(size, size, channels).permute(2, 0, 1).contiguous()


class CaptionDataModule(SequenceDataModule):
    """Base of the captioning datasets; see the module docstring.

    Args:
        image_size: images are resized to ``image_size x image_size``.
        min_freq: caption words seen fewer times in training read as ``<unk>``.
        max_caption_len: longer training captions are left out (words).
    """

    batch_layout = "image"
    bos_id, eos_id = 2, 3
    in_channels = 3
    predict_examples = ("test:0", "test:1")
    predict_bad_example = "no-such-image.png"

    def __init__(self, image_size: int = 128, min_freq: int = 1, max_caption_len: int = 30, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_size, self.min_freq, self.max_caption_len = image_size, min_freq, max_caption_len
        self.vocab: Optional[Vocabulary] = None
        self.refs: dict[str, list[list[str]]] = {}
        self.images: dict[str, Tensor] = {}

    def encoding_args(self) -> dict:
        return {"image_size": self.image_size, "min_freq": self.min_freq, "max_caption_len": self.max_caption_len}

    # ------------------------------------------------------------- subclass API
    def read_examples(self) -> dict[str, list[tuple[Tensor, list[str]]]]:
        """``{"train"|"val"|"test": [(image uint8 [C, H, W], [caption, ...]), ...]}``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- building
    def build(self, state: Optional[dict]) -> dict:
        examples = self.read_examples()
        for split in ("train", "val", "test"):
            if not examples.get(split):
                raise RnnlabError(f"{self.name}: the {split!r} split has no images; check the data and the split sizes")
        if state is None:
            captions = [c for _, caps in examples["train"] for c in caps]
            vocab = Vocabulary.build(captions, level="word", lowercase=True, min_freq=self.min_freq,
                                     extra_specials=(BOS, EOS))  # fmt: skip
            state = {"vocab": vocab.to_str()}
        self.on_state(state)
        splits = {}
        for split, items in examples.items():
            pairs = [(i, c) for i, (_, caps) in enumerate(items) for c in (caps if split == "train" else caps[:1])]
            ids = self.vocab.encode([c for _, c in pairs])
            keep = [k for k, seq in enumerate(ids) if seq and (split != "train" or len(seq) <= self.max_caption_len)]
            splits[split] = {
                "images": torch.stack([image for image, _ in items]),
                "image_of": [pairs[k][0] for k in keep],
                "targets": [torch.tensor([self.bos_id, *ids[k], self.eos_id], dtype=torch.int32) for k in keep],
                "references": [[self.normalized(c) for c in caps] for _, caps in items],
            }
        return {"state": state, "splits": splits}

    def on_state(self, state: dict) -> None:
        self.vocab = Vocabulary.from_str(state["vocab"])
        if self.vocab.token_to_id(BOS) != 2 or self.vocab.token_to_id(EOS) != 3:
            raise RnnlabError("the vocabulary is malformed: <bos> must be id 2 and <eos> id 3")

    def make_dataset(self, split: str, data: dict) -> CaptionDataset:
        self.images[split] = data["images"]
        refs = data["references"]
        self.refs[split] = [refs[i] for i in data["image_of"]]  # per sample (val/test: one sample per image)
        return CaptionDataset(data["images"], data["image_of"], data["targets"])

    # ----------------------------------------------------------------- text out
    def normalized(self, caption: str) -> str:
        return " ".join(self.vocab.split(caption))

    def decode_target(self, ids: Sequence[int]) -> str:
        return " ".join(self.vocab.decode_generated(ids, self.bos_id, self.eos_id))

    def target_tokens(self, ids: Sequence[int]) -> list[str]:
        return self.vocab.tokens_until_eos(ids, self.eos_id)

    def all_references(self, split: str) -> list[list[str]]:
        return self.refs[split]

    def describe_task(self) -> Task:
        return replace(
            super().describe_task(),
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            target_lang="en",
            decode_target=self.decode_target,
            references=self.all_references,
        )

    @property
    def tgt_vocab_size(self) -> int:
        self._ensure_state()
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return 0  # the inputs are images

    # ----------------------------------------------------------------- predict
    def encode_predict(self, texts: list[str]) -> list[dict]:
        items = []
        for raw in texts:
            spec = raw.strip()
            try:
                image = self._predict_image(spec)
            except RnnlabError as err:
                items.append({"input": raw, "error": str(err)})
                continue
            items.append({"input": raw, "tokens": image})
        return items

    def _predict_image(self, spec: str) -> Tensor:
        if not spec:
            raise RnnlabError("empty input: give an image file, a data: URL or <split>:<n>")
        if spec.startswith("data:image/"):
            head, _, data = spec.partition(",")
            if ";base64" not in head:
                raise RnnlabError("a data: URL must be base64-encoded (data:image/png;base64,...)")
            try:
                raw = base64.b64decode(data, validate=True)
            except ValueError:
                raise RnnlabError("the data: URL is not valid base64") from None
            return load_image(raw, self.image_size, self.in_channels, "the data: URL")
        match = re.fullmatch(r"(train|val|test):(\d+)", spec)
        if match:
            if not self.images:
                self.setup("fit")
            split, n = match.group(1), int(match.group(2))
            if n >= len(self.images[split]):
                raise RnnlabError(f"{split} has images 0-{len(self.images[split]) - 1}, got {n}")
            return self.images[split][n]
        path = Path(spec)
        if not path.is_file():
            raise RnnlabError(f"image {spec!r} not found: give an image file, a data: URL or <split>:<n>")
        return load_image(path, self.image_size, self.in_channels, str(path))

    prediction_row = CaptionRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        row = {"caption": self.decode_target(output["generated"].tolist())}
        if "score" in output:
            row["score"] = round(float(output["score"]), 4)
        return row


# ------------------------------------------------------------------------------------------- digit scenes
DIGIT_WORDS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
PLACES = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}


def scene_caption(layout: list[tuple[int, int, int]]) -> str:
    """The caption of a scene from its layout ``[(row, col, digit), ...]`` on a 3x3 grid: one digit, its place
    ("a 4 in the top right"); several, read left to right and top to bottom, each related to the next ("a 3 left of a
    7 above a 1"): ``left of`` on one row, ``above`` in one column, ``above and left of``/``above and right of``."""
    cells = sorted(layout)
    if len(cells) == 1:
        r, c, d = cells[0]
        return f"a {DIGIT_WORDS[d]} in the {PLACES[(r, c)]}"
    words = [f"a {DIGIT_WORDS[cells[0][2]]}"]
    for (r0, c0, _), (r1, c1, d1) in zip(cells, cells[1:]):
        if r1 == r0:
            relation = "left of"
        elif c1 == c0:
            relation = "above"
        else:
            relation = "above and left of" if c1 > c0 else "above and right of"
        words.append(f"{relation} a {DIGIT_WORDS[d1]}")
    return " ".join(words)


class DigitScenesDataModule(CaptionDataModule):
    """Scenes of real handwritten digits with captions from their layout; see the module docstring.

    Args:
        num_scenes: scenes per split (train, val, test).
        max_digits: 1..max_digits digits per scene (at most 9: one per cell of the 3x3 grid).
        digit_split: fractions of the 1,797 digit images kept for the val and test scenes (the rest: training).
    """

    name = "digit_scenes"
    in_channels = 1
    CANVAS, CELL = 32, 10  # a 3x3 grid of 10x10 cells (digits are 8x8, jittered by up to 2 pixels)

    def __init__(
        self,
        num_scenes: tuple[int, int, int] = (8000, 1000, 1000),
        max_digits: int = 4,
        digit_split: tuple[float, float] = (0.2, 0.2),
        image_size: int = 32,
        **kwargs,
    ) -> None:
        kwargs.setdefault("batch_size", 64)
        super().__init__(image_size=image_size, **kwargs)
        if not 1 <= max_digits <= 9:
            raise RnnlabError(f"max_digits must be between 1 and 9 (one per grid cell), got {max_digits}")
        if self.image_size != self.CANVAS:
            raise RnnlabError(f"digit scenes are {self.CANVAS}x{self.CANVAS}: leave image_size at {self.CANVAS}")
        self.num_scenes, self.max_digits, self.digit_split = tuple(num_scenes), max_digits, tuple(digit_split)

    def encoding_args(self) -> dict:
        return {**super().encoding_args(), "scenes": self.num_scenes, "max": self.max_digits, "split": self.digit_split}

    def read_examples(self) -> dict[str, list[tuple[Tensor, list[str]]]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images * (255 / 16), dtype=torch.float32).round().to(torch.uint8)
        labels = digits.target.tolist()
        pools = seeded_split(list(range(len(labels))), list(self.digit_split), self.seed)  # val, test, train
        by_split = dict(zip(("val", "test", "train"), pools))
        out = {}
        self.used: dict[str, set[int]] = {}  # the digit images each split's scenes contain
        for k, (split, n) in enumerate(zip(("train", "val", "test"), self.num_scenes)):
            g = torch.Generator().manual_seed(self.seed * 1000 + k)
            self.used[split] = set()
            out[split] = [self._scene(images, labels, by_split[split], g, self.used[split]) for _ in range(n)]
        return out

    def _scene(self, images: Tensor, labels: list[int], pool: list[int], g: torch.Generator, used: set[int]):
        count = int(torch.randint(1, self.max_digits + 1, (1,), generator=g))
        cells = torch.randperm(9, generator=g)[:count].tolist()
        canvas = torch.zeros(1, self.CANVAS, self.CANVAS, dtype=torch.uint8)
        layout = []
        for cell in cells:
            r, c = divmod(cell, 3)
            index = pool[int(torch.randint(len(pool), (1,), generator=g))]
            used.add(index)
            dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=g))
            y, x = 1 + r * self.CELL + dy, 1 + c * self.CELL + dx
            canvas[0, y : y + 8, x : x + 8] = torch.maximum(canvas[0, y : y + 8, x : x + 8], images[index])
            layout.append((r, c, labels[index]))
        return canvas, [scene_caption(layout)]


# ----------------------------------------------------------------------------------------------- Flickr8k
FLICKR8K_URL = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/"
IMAGES_DIR = "Flicker8k_Dataset"  # (sic) the folder name inside the official zip


def _check_flickr8k(path: Path) -> str:
    if path.is_dir():
        return f"{sum(1 for _ in path.glob('*.jpg'))} images"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        raise RnnlabError(f"{path} is not a zip archive; download Flickr8k again") from None
    if path.name == "Flickr8k_text.zip" and not any(n.endswith("Flickr8k.token.txt") for n in names):
        raise RnnlabError(f"{path} lacks Flickr8k.token.txt; replace it with the official Flickr8k_text.zip")
    return f"{len(names)} members"


register(
    Source(  # the dataset is distributed on request by the University of Illinois; these are its common mirrors
        "flickr8k",
        files=(
            RemoteFile("Flickr8k_Dataset.zip", FLICKR8K_URL + "Flickr8k_Dataset.zip", extracted=IMAGES_DIR),
            RemoteFile("Flickr8k_text.zip", FLICKR8K_URL + "Flickr8k_text.zip"),
        ),
        homepage="https://hockenmaier.cs.illinois.edu/8k-pictures.html",
        check=_check_flickr8k,
        license="research use only (Flickr terms of use)",
    )
)


class Flickr8kDataModule(CaptionDataModule):
    """Flickr8k (8,091 photos, 5 captions each) in its official layout; see the module docstring.

    Args:
        karpathy_json: Karpathy's ``dataset_flickr8k.json`` (splits and tokenised captions) instead of the official
            token file and split lists.
        max_bad_fraction: unreadable images are skipped with a count; more than this fraction of them is an error.
    """

    name = "flickr8k"
    predict_examples = ("test:0", "test:1")

    def __init__(self, karpathy_json: Optional[str] = None, max_bad_fraction: float = 0.01, **kwargs) -> None:
        kwargs.setdefault("batch_size", 32)
        super().__init__(**kwargs)
        self.karpathy_json, self.max_bad_fraction = karpathy_json, max_bad_fraction

    def encoding_args(self) -> dict:
        return {**super().encoding_args(), "karpathy": self.karpathy_json}

    def captions_and_splits(self, text_zip: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """``({image file: [captions]}, {split: [image files]})`` from Karpathy's JSON or the official text zip."""
        if self.karpathy_json:
            path = Path(self.karpathy_json)
            if not path.is_file():
                raise RnnlabError(f"karpathy_json {path} not found: give the path of dataset_flickr8k.json")
            images = json.loads(path.read_text(encoding="utf-8"))["images"]
            captions = {im["filename"]: [s["raw"] for s in im["sentences"]] for im in images}
            names = {"train": "train", "restval": "train", "val": "val", "test": "test"}
            splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
            for im in images:
                splits[names[im["split"]]].append(im["filename"])
            return captions, splits
        with zipfile.ZipFile(text_zip) as z:
            members = {Path(n).name: n for n in z.namelist()}

            def lines(name: str) -> list[str]:
                if name not in members:
                    raise RnnlabError(f"{text_zip} lacks {name}; replace it with the official Flickr8k_text.zip")
                return z.read(members[name]).decode("utf-8").splitlines()

            captions: dict[str, list[str]] = {}
            for n, line in enumerate(lines("Flickr8k.token.txt"), 1):
                if not line.strip():
                    continue
                key, tab, caption = line.partition("\t")
                if not tab or "#" not in key:
                    raise RnnlabError(f"Flickr8k.token.txt line {n}: expected 'image.jpg#k<TAB>caption', got {line!r}")
                captions.setdefault(key.rsplit("#", 1)[0], []).append(caption.strip())
            stems = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                     "test": "Flickr_8k.testImages.txt"}  # fmt: skip
            splits = {split: [x.strip() for x in lines(name) if x.strip()] for split, name in stems.items()}
        return captions, splits

    def read_examples(self) -> dict[str, list[tuple[Tensor, list[str]]]]:
        files = fetch("flickr8k", self.root, self.local_dir)
        captions, splits = self.captions_and_splits(files["Flickr8k_text.zip"])
        source = files["Flickr8k_Dataset.zip"]
        archive = zipfile.ZipFile(source) if source.is_file() else None
        members = {Path(n).name: n for n in archive.namelist()} if archive else {}
        out, bad, total = {}, [], 0
        try:
            for split, names in splits.items():
                items = []
                for name in names:
                    if name not in captions:
                        raise RnnlabError(f"{name} is in the {split} split but has no caption in the captions file")
                    total += 1
                    if archive is not None:
                        if name not in members:
                            raise RnnlabError(f"image {name} is missing from {source}")
                        data = archive.read(members[name])
                    else:
                        path = source / name
                        if not path.is_file():
                            raise RnnlabError(f"image {path} is missing: the images folder is incomplete")
                        data = path.read_bytes()
                    try:
                        items.append((load_image(data, self.image_size, self.in_channels, name), captions[name]))
                    except RnnlabError:
                        bad.append(name)
                out[split] = items
        finally:
            if archive is not None:
                archive.close()
        if bad:
            log.warning("flickr8k: %d of %d images unreadable, skipped: %s", len(bad), total, ", ".join(bad[:5]))
            if len(bad) > self.max_bad_fraction * total:
                raise RnnlabError(
                    f"flickr8k: {len(bad)} of {total} images are unreadable (e.g. {bad[0]}); the archive is damaged -- "
                    f"download it again"
                )
        return out
