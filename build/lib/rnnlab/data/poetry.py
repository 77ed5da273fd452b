"""Tang poems (全唐诗, github chinese-poetry/chinese-poetry) for a character language model that writes poems.

``chinese-poetry-tang.tar.gz`` holds ``全唐诗/poet.tang.<n>.json`` (the download is the repository's archive at a
pinned commit, ``chinese-poetry-<commit>/全唐诗/...``; the copies in ``全唐诗/error/`` and ``strains/`` are not read): lists of ``{author, title, paragraphs, id}`` where
``paragraphs`` are couplets such as ``秦川雄帝宅，函谷壯皇居。`` (traditional characters). One poem is one sequence,
``<bos> poem <eos>``.
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

from rnnlab.contract import Task
from rnnlab.data.base import seeded_split
from rnnlab.data.charlm import DocumentLMDataModule
from rnnlab.data.names import _Converter
from rnnlab.data.sources import RemoteFile, Source, fetch, register, tar_files
from rnnlab.errors import RnnlabError

REPO = "https://github.com/chinese-poetry/chinese-poetry"
COMMIT = "99ebbef7e1345c0985c44b9fd96a3f9e776f117b"  # 2026-05-06; the branch moves, this archive does not
POEM_FILE = re.compile(r"(^|/)全唐诗/poet\.tang\.(\d+)\.json$")
PUNCT = "，。？！；：、"
LINE_END = re.compile(f"[{PUNCT}]")


def _check(path: Path) -> str:
    count = len(_poem_members(path))
    if not count:
        raise RnnlabError(f"{path} holds no 全唐诗/poet.tang.<n>.json files; rebuild it from {REPO}")
    return f"{count} poet.tang JSON files"


def _poem_members(path: Path) -> list[str]:
    try:
        with tarfile.open(path) as tar:
            return [m.name for m in tar_files(tar, path) if POEM_FILE.search(m.name)]
    except tarfile.TarError as err:
        raise RnnlabError(f"{path} is not a tar archive ({err}); rebuild it from {REPO}") from None


register(
    Source(
        "chinese_poetry",
        files=(RemoteFile("chinese-poetry-tang.tar.gz", f"{REPO}/archive/{COMMIT}.tar.gz"),),
        homepage=REPO,
        check=_check,
        license="MIT",
    )
)


def read_tang(path: Path) -> list[dict]:
    """Every poem of the archive, in file order: ``[{"author", "title", "paragraphs"}]``."""
    poems = []
    with tarfile.open(path) as tar:
        members = sorted(
            (m for m in tar_files(tar, path) if POEM_FILE.search(m.name)),
            key=lambda m: int(POEM_FILE.search(m.name).group(2)),
        )
        for m in members:
            try:
                data = json.loads(tar.extractfile(m).read().decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise RnnlabError(f"{path}: {m.name} is not UTF-8 JSON ({err})") from None
            if not isinstance(data, list):
                raise RnnlabError(f"{path}: {m.name} should hold a list of poems")
            poems.extend(data)
    return poems


def poem_lines(text: str) -> list[str]:
    """``秦川雄帝宅，函谷壯皇居。`` -> ``["秦川雄帝宅", "函谷壯皇居"]`` (lines end at Chinese punctuation)."""
    return [line for line in LINE_END.split(text) if line]


def regular_form(text: str) -> Optional[tuple[int, int]]:
    """``(characters per line, lines)`` if the poem is regular verse -- 4 or 8 lines of 5 or 7 characters, ending in
    alternating ``，``/``。`` -- else None."""
    lines = poem_lines(text)
    marks = LINE_END.findall(text)
    if len(lines) not in (4, 8) or len(marks) != len(lines) or not text or text[-1] not in PUNCT:
        return None
    width = len(lines[0])
    if width not in (5, 7) or any(len(line) != width for line in lines):
        return None
    if any(m != ("，" if i % 2 == 0 else "。") for i, m in enumerate(marks)):
        return None
    return width, len(lines)


class TangPoetryDataModule(DocumentLMDataModule):
    """Tang poems, one per sequence. Seeded 90/5/5 split by poem.

    Args:
        form: ``any`` poem, or only ``regular`` verse (4 or 8 lines of 5 or 7 characters, ，/。 alternating).
        line_chars: with ``form: regular``, keep only 5- or 7-character verse (None: both).
        script: ``as_is`` (traditional, as published) or ``simplified`` (OpenCC).
        max_chars: drop longer poems (batches of very long poems are mostly padding).
        val_fraction, test_fraction: held-out shares.
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule`; ``predict_texts`` are first characters or first
            lines (an empty string starts from nothing), or ``藏头:春夏秋冬`` for an acrostic.
    """

    name = "chinese_poetry"
    predict_examples = ("春眠", "藏头:春花")
    predict_bad_example = "藏头:"

    def __init__(
        self,
        form: Literal["any", "regular"] = "regular",
        line_chars: Optional[int] = None,
        script: Literal["as_is", "simplified"] = "as_is",
        max_chars: int = 128,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if form not in ("any", "regular"):
            raise RnnlabError(f"form must be 'any' or 'regular', got {form!r}")
        if line_chars not in (None, 5, 7):
            raise RnnlabError(f"line_chars must be 5, 7 or null, got {line_chars!r}")
        if script not in ("as_is", "simplified"):
            raise RnnlabError(f"script must be 'as_is' or 'simplified', got {script!r}")
        self.form, self.line_chars, self.script, self.max_chars = form, line_chars, script, max_chars
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._convert = _Converter(script)

    def encoding_args(self) -> dict:
        return {
            "form": self.form,
            "line_chars": self.line_chars,
            "script": self.script,
            "max_chars": self.max_chars,
            "min_freq": self.min_freq,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
        }

    def normalize(self, text: str) -> str:
        return self._convert(text)

    def describe_task(self) -> Task:
        return replace(super().describe_task(), line_end_ids=tuple(self.line_end_ids))

    @property
    def line_end_ids(self) -> list[int]:
        self._ensure_state()
        return [i for i in self.vocab.lookup(PUNCT) if i != self.vocab.unk_id]

    def encode_predict(self, texts: list[str]) -> list[dict]:
        """Prefixes, or ``藏头:春夏秋冬`` for an acrostic: line ``k`` starts with the ``k``-th given character."""
        items = []
        for raw in texts:
            head, sep, chars = raw.strip().partition(":")
            if sep and head.strip() in ("藏头", "acrostic"):
                chars = self.normalize(chars.strip())
                ids = self.vocab.lookup(chars)
                if not chars or self.vocab.unk_id in ids:
                    bad = sorted({c for c, i in zip(chars, ids) if i == self.vocab.unk_id})
                    items.append(
                        {
                            "input": raw,
                            "error": "give the first characters of the lines after '藏头:'"
                            if not chars
                            else f"characters never seen in training: {', '.join(map(repr, bad))}",
                        }
                    )
                    continue
                item = super().encode_predict([""])[0]
                items.append({**item, "input": raw, "line_heads": ids})
            else:
                items.extend(super().encode_predict([raw]))
        return items

    def keep(self, text: str) -> bool:
        if not text or len(text) > self.max_chars:
            return False
        if self.form == "any":
            return True
        shape = regular_form(text)
        return shape is not None and (self.line_chars is None or shape[0] == self.line_chars)

    def read_documents(self) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
        path = fetch(self.name, self.root, self.local_dir)["chinese-poetry-tang.tar.gz"]
        texts = ["".join(p.get("paragraphs") or []).strip() for p in read_tang(path)]
        poems = [self.normalize(t) for t in texts if self.keep(t)]
        if len(poems) < 10:
            raise RnnlabError(
                f"only {len(poems)} poems pass form={self.form!r}, line_chars={self.line_chars}, "
                f"max_chars={self.max_chars}; relax the filter"
            )
        val, test, train = seeded_split([(p, 0) for p in poems], [self.val_fraction, self.test_fraction], self.seed)
        return {"val": val, "test": test, "train": train}, []
