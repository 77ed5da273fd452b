"""Shared fixtures: tiny datasets written in their official formats, and a clean environment for every test."""

from __future__ import annotations

import inspect
import io
import json
import os
import random
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("PYTHONHASHSEED", "0")

# What makes a test slow: it runs the command line (``main``, ``predict_rows``), another process, a notebook, a
# Trainer's fit, or a float64 gradcheck over whole sequences.
END_TO_END = re.compile(r"\b(main|predict_rows|fit_and_test|NotebookClient|gradcheck)\(|subprocess\.|Popen|\.fit\(")


def pytest_collection_modifyitems(config, items) -> None:
    """Two speeds: every end-to-end test (:data:`END_TO_END` in its source or its module's helpers it calls) gets the
    ``slow`` marker. ``pytest`` runs the rest (``addopts``: ``-m "not slow"``, about 3 minutes on 2 cores); ``make test`` and
    CI run both (``-m "slow or not slow"``)."""
    for item in items:
        function = getattr(item, "function", None)
        if function is None or item.get_closest_marker("slow"):
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):
            continue
        if END_TO_END.search(source):
            item.add_marker(pytest.mark.slow)


POS_WORDS = ["great", "wonderful", "superb", "loved", "brilliant", "moving", "best", "fun"]
NEG_WORDS = ["awful", "boring", "worst", "hated", "terrible", "dull", "waste", "bad"]
FILLER = ["the", "movie", "film", "was", "a", "plot", "actor", "and", "it", "this", "story", "scene"]


def review(rng: random.Random, positive: bool, n_words: int) -> str:
    words = [rng.choice(FILLER) for _ in range(n_words)]
    for _ in range(max(1, n_words // 5)):
        words[rng.randrange(n_words)] = rng.choice(POS_WORDS if positive else NEG_WORDS)
    return " ".join(words).capitalize() + ".<br /><br />" + rng.choice(["Really!", "Yes.", "Hmm..."])


def write_imdb_archive(
    path: Path,
    n_train: int = 40,
    n_test: int = 20,
    n_unsup: int = 10,
    seed: int = 0,
    extra: dict[str, str] | None = None,
) -> Path:
    """An ``aclImdb_v1.tar.gz`` in the official layout: ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, text: str) -> None:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for split, n in (("train", n_train), ("test", n_test)):
            for label in ("pos", "neg"):
                for i in range(n):
                    rating = rng.randint(7, 10) if label == "pos" else rng.randint(1, 4)
                    add(f"aclImdb/{split}/{label}/{i}_{rating}.txt", review(rng, label == "pos", rng.randint(5, 40)))
                # line i: the movie of review i; 3 reviews a movie, some movies with reviews in both classes,
                # train and test movies disjoint (as in the official data)
                first = (0 if label == "pos" else 4) + (0 if split == "train" else 1000)
                add(
                    f"aclImdb/{split}/urls_{label}.txt",
                    "".join(f"http://www.imdb.com/title/tt{first + i // 3:07d}/usercomments\n" for i in range(n)),
                )
        for i in range(n_unsup):
            add(f"aclImdb/train/unsup/{i}_0.txt", review(rng, rng.random() < 0.5, 20))
        for name, text in (extra or {}).items():
            add(name, text)
    return path


@pytest.fixture(scope="session")
def local_data(tmp_path_factory) -> Path:
    """A ``$RNNLAB_LOCAL_DATA`` folder with tiny official-format copies."""
    root = tmp_path_factory.mktemp("local_data")
    write_imdb_archive(root / "imdb" / "aclImdb_v1.tar.gz")
    write_namesex(root / "namesex")
    write_cncorpus(root / "chinese_names")
    write_pytorch_names(root / "pytorch_names" / "data" / "names", as_folder=True)
    write_conll2000(root / "conll2000", edition="nltk")
    write_sinica(root / "sinica_treebank" / "sinica_treebank.zip")
    write_icwb2(root / "icwb2" / "icwb2-data.zip", corpora=("pku", "msr"))
    write_tang(root / "chinese_poetry" / "chinese-poetry-tang.tar.gz")
    write_jsb(root / "jsb_chorales")
    write_multi30k(root / "multi30k")
    write_cmn(root / "cmn_eng" / "cmn.txt")
    write_eng_fra(root / "eng_fra" / "data.zip", extra=200)
    write_shakespeare(root / "tinyshakespeare" / "input.txt")
    write_flickr8k(root / "flickr8k")
    return root


@pytest.fixture
def env(local_data, tmp_path, monkeypatch) -> Path:
    """Run in a fresh working directory with the local copies; returns that directory."""
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local_data))
    monkeypatch.chdir(tmp_path)
    return tmp_path


MALE_CHARS = "偉強軍傑明志豪建"
FEMALE_CHARS = "麗婷芳娟美玲秀雅"


def write_namesex(folder: Path, n: int = 300, seed: int = 0) -> None:
    """``namesex_data_v2.csv`` (BOM, a blank line, stray spaces) and ``testdata.csv`` in the official format."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["gname,sex,fold"]
    for i in range(n):
        sex = i % 2
        chars = MALE_CHARS if sex else FEMALE_CHARS
        name = rng.choice("家文子宇思") + rng.choice(chars)
        lines.append(f"{name},{sex},{i % 10}" if i % 17 else f" {name} , {sex} , {i % 10}")
        if i == 5:
            lines.append("")
    (folder / "namesex_data_v2.csv").write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    test = ["name,sex"] + [
        f"{rng.choice('家文')}{rng.choice(MALE_CHARS if s else FEMALE_CHARS)},{s}" for s in (0, 1) * 10
    ]
    (folder / "testdata.csv").write_text("\n".join(test) + "\n", encoding="utf-8")


def write_cncorpus(folder: Path, n: int = 200, seed: int = 0) -> None:
    """The Chinese-Names-Corpus gender file: header lines, ``dict,sex``, rows with 男/女/未知."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Chinese Names Corpus (Gender)", "# https://github.com/wainshine/Chinese-Names-Corpus", "dict,sex"]
    for i in range(n):
        sex = ["男", "女", "未知"][i % 3]
        chars = MALE_CHARS if sex == "男" else FEMALE_CHARS
        lines.append(f"{rng.choice('王李張劉陳')}{rng.choice('家文')}{rng.choice(chars)},{sex}")
    (folder / "Chinese_Names_Corpus_Gender（120W）.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


LANGUAGE_STEMS = {
    "Russian": ["ov", "ev", "in", "sky"],
    "Japanese": ["moto", "mura", "da", "ka"],
    "Czech": ["ak", "ek", "ova"],
    "German": ["mann", "er", "ber"],
    "Polish": ["ski", "cz"],
}


def setup_for_fit(model, datamodule) -> None:
    """``model.setup("fit")`` as the Trainer calls it after ``datamodule`` (already set up) hands over its Task."""

    class FakeTrainer:
        world_size = 1

    model._trainer = FakeTrainer()
    model.bind_task(datamodule.describe_task(), "fit")
    model.setup("fit")


def language_classifier(**kwargs):
    """A seeded ``SequenceClassifier(**kwargs)`` on the names -> language fixture (under the ``env`` fixture), set up
    for ``fit``: ``(model, datamodule)``."""
    import torch

    from rnnlab.data.names import NameLanguageDataModule
    from rnnlab.models import SequenceClassifier

    dm = NameLanguageDataModule(batch_size=8)
    dm.setup("fit")
    torch.manual_seed(0)
    model = SequenceClassifier(dm.vocab_size, dm.num_classes, **kwargs)
    setup_for_fit(model, dm)
    return model, dm


def write_pytorch_names(path: Path, seed: int = 0, as_folder: bool = False) -> Path:
    """The tutorial's ``data.zip`` (``data/names/<Language>.txt``), or its extracted folder; non-ASCII names."""
    rng = random.Random(seed)
    texts = {}
    for lang, stems in LANGUAGE_STEMS.items():
        n = 60 if lang == "Russian" else 20
        names = [
            rng.choice(["Ab", "Kov", "Tan", "Mul", "Sl", "Dv"]) + rng.choice("aeiou") + rng.choice(stems)
            for _ in range(n)
        ]
        names[0] = {"Czech": "Dvořák", "German": "Müller", "Polish": "Ślusàrski"}.get(lang, names[0])
        texts[lang] = "\n".join(names) + "\n"
    if as_folder:
        path.mkdir(parents=True, exist_ok=True)
        for lang, text in texts.items():
            (path / f"{lang}.txt").write_text(text, encoding="utf-8")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data/eng-fra.txt", "Go.\tVa !\n")
        for lang, text in texts.items():
            z.writestr(f"data/names/{lang}.txt", text)
    return path


# ----------------------------------------------------------------------------- tagging
POS_LEXICON = {
    "DT": ["the", "a", "this"],
    "NN": ["market", "stock", "price", "company", "year"],
    "NNS": ["markets", "stocks", "prices", "shares"],
    "VBD": ["rose", "fell", "said", "closed"],
    "IN": ["in", "of", "on"],
    "JJ": ["strong", "weak", "new"],
    "CD": ["3", "1989", "10"],
    ".": ["."],
}
POS_PATTERNS = [
    ["DT", "JJ", "NN", "VBD", "IN", "CD", "."],
    ["DT", "NNS", "VBD", "."],
    ["NNS", "VBD", "IN", "DT", "NN", "."],
    ["DT", "NN", "VBD", "CD", "NNS", "."],
]
CHUNK_OF = {"DT": "NP", "JJ": "NP", "NN": "NP", "NNS": "NP", "CD": "NP", "VBD": "VP", "IN": "PP", ".": "O"}


def conll2000_text(n: int, seed: int) -> str:
    """CoNLL-2000 lines (``word POS chunk``, blank line between sentences) from a tiny grammar."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        prev = None
        for tag in rng.choice(POS_PATTERNS):
            word = rng.choice(POS_LEXICON[tag])
            word = word.capitalize() if prev is None else word
            chunk = CHUNK_OF[tag]
            iob = "O" if chunk == "O" else ("I-" if prev == chunk else "B-") + chunk
            lines.append(f"{word} {tag} {iob}")
            prev = chunk
        lines.append("")
    return "\n".join(lines) + "\n"


def write_conll2000(folder: Path, edition: str = "nltk", n_train: int = 120, n_test: int = 30) -> None:
    """NLTK's ``conll2000.zip`` or the official ``train.txt.gz``/``test.txt.gz``."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    texts = {"train": conll2000_text(n_train, 0), "test": conll2000_text(n_test, 1)}
    if edition == "nltk":
        with zipfile.ZipFile(folder / "conll2000.zip", "w") as z:
            z.writestr("conll2000/", "")
            z.writestr("conll2000/README", "CoNLL-2000 fixture\n")
            for split, text in texts.items():
                z.writestr(f"conll2000/{split}.txt", text.encode("latin-1"))
    else:
        for split, text in texts.items():
            (folder / f"{split}.txt.gz").write_bytes(gzip.compress(text.encode("latin-1")))


CWS_LEXICON = [
    "我們",
    "住在",
    "同一條",
    "巷子",
    "鄰居",
    "同學",
    "是",
    "也",
    "和",
    "他",
    "美麗",
    "天安門",
    "北京",
    "，",
    "。",
]


def cws_sentences(n: int, seed: int, lexicon=CWS_LEXICON) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(lexicon) for _ in range(rng.randint(2, 8))] for _ in range(n)]


def write_sinica(path: Path, n: int = 150) -> Path:
    """NLTK's ``sinica_treebank.zip``: ``raw`` lines ``#n:n.[id] words`` with the treebank's markers."""
    lines = []
    for i, words in enumerate(cws_sentences(n, 2), start=1):
        marked = list(words)
        if i % 5 == 0:
            marked.insert(1, "‧的")  # empty elements and prefixes that are not text
        if i % 7 == 0:
            marked = [("_11:" + w if w == "是" else w) for w in marked] + ["[+]:"]
        lines.append(f"#{i}:{i}.[{39000 + i}] " + " ".join(marked))
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sinica_treebank/raw", "\n".join(lines) + "\n")
        z.writestr("sinica_treebank/parsed", "#1:1.[1] S(Head:Nab:一)\n")
        z.writestr("sinica_treebank/README", "Sinica Treebank fixture\n")
    return path


def write_icwb2(path: Path, corpora=("pku",), with_training: bool = True) -> Path:
    """``icwb2-data.zip``: ``icwb2-data/{training,testing,gold}/`` files, words separated by two spaces (the
    training file) or full-width spaces (gold), as in the SIGHAN 2005 release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lexicon = [w.replace("條", "条").replace("門", "门").replace("們", "们").replace("麗", "丽") for w in CWS_LEXICON]
    with zipfile.ZipFile(path, "w") as z:
        for corpus in corpora:
            train = cws_sentences(120, 3, lexicon)
            test = cws_sentences(30, 4, lexicon + ["新词"])
            if with_training:
                z.writestr(
                    f"icwb2-data/training/{corpus}_training.utf8", "\n".join("  ".join(ws) for ws in train) + "\n"
                )
            z.writestr(f"icwb2-data/testing/{corpus}_test.utf8", "\n".join("".join(ws) for ws in test) + "\n")
            z.writestr(f"icwb2-data/gold/{corpus}_test_gold.utf8", "\n".join("\u3000".join(ws) for ws in test) + "\n")
            z.writestr(f"icwb2-data/gold/{corpus}_training_words.utf8", "\n".join(sorted(set(lexicon))) + "\n")
    return path


TANG_POEMS = [
    ["秦川雄帝宅，函谷壯皇居。", "綺殿千尋起，離宮百雉餘。"],
    ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"],
    ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"],
    ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"],
    ["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"],
    ["君不見黃河之水天上來，奔流到海不復回。"],  # not regular verse
]


DECOY_POEM = ["錯錯錯錯錯，錯錯錯錯錯。", "錯錯錯錯錯，錯錯錯錯錯。"]  # in folders that must not be read


def write_tang(path: Path, copies: int = 6, prefix: str = "") -> Path:
    """``chinese-poetry-tang.tar.gz``: ``全唐诗/poet.tang.<n>.json`` lists of {author, title, paragraphs, id}. With
    ``prefix`` (``chinese-poetry-<commit>/``) it is the repository's archive: everything under that folder, and
    copies of poet.tang files in ``全唐诗/error/`` and ``strains/json/`` that are not the poems."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add(f"{prefix}全唐诗/README.md", "全唐诗 fixture\n".encode("utf-8"))
        for n in range(2):
            poems = [
                {"author": "佚名", "title": f"詩{i}", "paragraphs": p, "id": f"{n}-{i}"}
                for i, p in enumerate(TANG_POEMS * copies)
            ]
            add(
                f"{prefix}全唐诗/poet.tang.{n * 1000}.json",
                json.dumps(poems, ensure_ascii=False, indent=4).encode("utf-8"),
            )
        if prefix:
            decoy = json.dumps([{"author": "x", "title": "x", "paragraphs": DECOY_POEM, "id": "x"}], ensure_ascii=False)
            for folder in ("全唐诗/error", "strains/json"):
                add(f"{prefix}{folder}/poet.tang.0.json", decoy.encode("utf-8"))
    return path


CHORDS = [[48, 64, 67, 72], [53, 65, 69, 72], [55, 62, 67, 71], [48, 64, 67, 72]]  # C F G C, four voices


def jsb_pieces(n: int, seed: int) -> list:
    rng = random.Random(seed)
    return [[list(CHORDS[(i + s) % 4]) for i in range(rng.randint(8, 16))] for s in range(n)]


def write_jsb(folder: Path) -> None:
    """``jsb-chorales-quarter.json`` and ``-16th.json``: {"train", "valid", "test"} of pieces of pitch lists."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    data = {"test": jsb_pieces(4, 2), "train": jsb_pieces(12, 0), "valid": jsb_pieces(4, 1)}
    (folder / "jsb-chorales-quarter.json").write_text(json.dumps(data))
    (folder / "jsb-chorales-16th.json").write_text(json.dumps(data))


# a toy parallel "language": each English word has one German, French and Chinese counterpart
LEXICON = {
    "a": ("ein", "un", "一"),
    "dog": ("hund", "chien", "狗"),
    "cat": ("katze", "chat", "猫"),
    "runs": ("rennt", "court", "跑"),
    "sleeps": ("schläft", "dort", "睡"),
    "man": ("mann", "homme", "人"),
    "big": ("großer", "grand", "大"),
    "small": ("kleiner", "petit", "小"),
    "red": ("roter", "rouge", "红"),
    "ball": ("ball", "balle", "球"),
    "sees": ("sieht", "voit", "看"),
    "the": ("der", "le", "这"),
}


def parallel_sentences(n: int, seed: int) -> list[dict[str, str]]:
    """Aligned toy sentences: ``{"en": ..., "de": ..., "fr": ..., "zh": ...}``, word-by-word translations."""
    rng = random.Random(seed)
    words = sorted(LEXICON)
    out = []
    for _ in range(n):
        en = [rng.choice(words) for _ in range(rng.randint(2, 7))]
        row = {"en": " ".join(en).capitalize() + "."}
        for k, lang in enumerate(("de", "fr")):
            row[lang] = " ".join(LEXICON[w][k] for w in en).capitalize() + "."
        row["zh"] = "".join(LEXICON[w][2] for w in en) + "。"
        out.append(row)
    return out


def flickr_image(seed: int, size: int = 40) -> bytes:
    """A small JPEG: a coloured square on a background, both drawn from ``seed``."""
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    x, y = rng.randrange(size // 2), rng.randrange(size // 2)
    image.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + size // 3, y + size // 3))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def write_flickr8k(folder: Path, sizes=(16, 8, 8), corrupt: tuple[str, ...] = (), extracted: bool = False) -> dict:
    """Flickr8k's official files: ``Flickr8k_Dataset.zip`` (``Flicker8k_Dataset/<id>.jpg``; or that folder extracted)
    and ``Flickr8k_text.zip`` (``Flickr8k.token.txt`` with 5 ``image#k<TAB>caption`` lines per image, the
    ``Flickr_8k.{train,dev,test}Images.txt`` lists). ``corrupt``: image files written as garbage. Returns
    ``{split: [file names]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    colours = ["red", "blue", "green", "white", "black"]
    splits, n = {}, 0
    for split, size in zip(("train", "dev", "test"), sizes):
        splits[split] = [f"{1000 + n + k}_{k:04x}.jpg" for k in range(size)]
        n += size
    names = [name for part in splits.values() for name in part]
    tokens = [
        f"{name}#{k}\ta {colours[(i + k) % 5]} square on a {colours[(i + 2 * k + 1) % 5]} background ."
        for i, name in enumerate(names)
        for k in range(5)
    ]
    with zipfile.ZipFile(folder / "Flickr8k_text.zip", "w") as z:
        z.writestr("Flickr8k.token.txt", "\n".join(tokens) + "\n")
        for split, stem in (("train", "train"), ("dev", "dev"), ("test", "test")):
            z.writestr(f"Flickr_8k.{stem}Images.txt", "\n".join(splits[split]) + "\n")
    images = {name: b"not a jpeg" if name in corrupt else flickr_image(i) for i, name in enumerate(names)}
    if extracted:
        (folder / "Flicker8k_Dataset").mkdir(exist_ok=True)
        for name, data in images.items():
            (folder / "Flicker8k_Dataset" / name).write_bytes(data)
    else:
        with zipfile.ZipFile(folder / "Flickr8k_Dataset.zip", "w") as z:
            for name, data in images.items():
                z.writestr(f"Flicker8k_Dataset/{name}", data)
    return splits


def write_multi30k(folder: Path, sizes: dict[str, int] | None = None) -> None:
    """Multi30k task 1 layout: ``data/task1/raw/<split>.<lang>.gz``, one sentence per line, aligned."""
    import gzip

    sizes = sizes or {"train": 200, "val": 20, "test_2016_flickr": 20, "test_2017_flickr": 15, "test_2018_flickr": 15}
    raw = folder / "data" / "task1" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate(sizes.items()):
        rows = parallel_sentences(n, seed=100 + k)
        for lang in ("en", "de", "fr"):
            text = "\n".join(r[lang] for r in rows) + "\n"
            (raw / f"{split}.{lang}.gz").write_bytes(gzip.compress(text.encode("utf-8")))


def write_cmn(path: Path, n: int = 300) -> Path:
    """Tatoeba ``cmn.txt``: English TAB Chinese TAB attribution."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{r['en']}\t{r['zh']}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i} (x) & #{i + 1} (y)"
        for i, r in enumerate(parallel_sentences(n, seed=7))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


SHAKESPEARE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nO Romeo, Romeo!\n\n"
)


def write_shakespeare(path: Path, copies: int = 1000) -> Path:
    """tiny shakespeare's ``input.txt``: speeches, a speaker's name and a colon on a line of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SHAKESPEARE * copies, encoding="utf-8")
    return path


def write_eng_fra(path: Path, extra: int = 0, seed: int = 0) -> Path:
    """The PyTorch tutorial's ``data.zip`` holding ``data/eng-fra.txt`` (English TAB French); ``extra`` more pairs
    that the tutorial's filter keeps (they start with "I am", "he is", ...)."""
    rng = random.Random(seed)
    prefixes = [("I am", "Je suis"), ("He is", "Il est"), ("We are", "Nous sommes"), ("They are", "Ils sont")]
    generated = []
    for _ in range(extra):
        en, fr = rng.choice(prefixes)
        words = [rng.choice(sorted(LEXICON)) for _ in range(rng.randint(1, 4))]
        generated.append(f"{en} {' '.join(words)}.\t{fr} {' '.join(LEXICON[w][1] for w in words)}.")
    lines = generated + [
        "Go.\tVa !",
        "I am cold.\tJ'ai froid.",
        "I'm tired.\tJe suis fatigué.",
        "He is tall.\tIl est grand.",
        "She's a very good teacher and everyone likes her a lot.\tC'est une très bonne enseignante et tout le "
        "monde l'aime beaucoup.",
        "We are here.\tNous sommes ici.",
        "You're late!\tTu es en retard !",
        "They are busy.\tIls sont occupés.",
        "Tom runs.\tTom court.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data/eng-fra.txt", "\n".join(lines) + "\n")
        z.writestr("data/names/English.txt", "Smith\n")
    return path


# ----------------------------------------------------------------------------- downloads
def _zip_cmn(folder: Path) -> None:
    text = write_cmn(folder / "cmn.txt").read_bytes()
    (folder / "cmn.txt").unlink()
    with zipfile.ZipFile(folder / "cmn-eng.zip", "w") as z:
        z.writestr("cmn.txt", text)
        z.writestr("_about.txt", "Tatoeba sentence pairs, fixture\n")


def _tang_archive(folder: Path) -> None:
    from rnnlab.data.poetry import COMMIT

    write_tang(folder / "chinese-poetry-tang.tar.gz", prefix=f"chinese-poetry-{COMMIT}/")


# each registered dataset's files as its official URLs serve them (file names as in the URLs' paths)
DOWNLOAD_FIXTURES = {
    "imdb": lambda d: write_imdb_archive(d / "aclImdb_v1.tar.gz"),
    "namesex": write_namesex,
    "chinese_names": write_cncorpus,
    "pytorch_names": lambda d: write_pytorch_names(d / "data.zip"),
    "conll2000": lambda d: write_conll2000(d, edition="official"),
    "conll2000_nltk": lambda d: write_conll2000(d, edition="nltk"),
    "sinica_treebank": lambda d: write_sinica(d / "sinica_treebank.zip"),
    "icwb2": lambda d: write_icwb2(d / "icwb2-data.zip", corpora=("pku", "msr")),
    "chinese_poetry": _tang_archive,
    "jsb_chorales": write_jsb,
    "multi30k": write_multi30k,
    "cmn_eng": _zip_cmn,
    "eng_fra": lambda d: write_eng_fra(d / "data.zip", extra=200),
    "tinyshakespeare": lambda d: write_shakespeare(d / "input.txt"),
    "flickr8k": write_flickr8k,
}


def registered_sources() -> dict:
    """Every dataset the project registers (importing every ``rnnlab.data`` module), without the tests' own."""
    import importlib
    import pkgutil

    import rnnlab.data
    from rnnlab.data import sources

    for module in pkgutil.iter_modules(rnnlab.data.__path__):
        importlib.import_module(f"rnnlab.data.{module.name}")
    return {k: v for k, v in sources._REGISTRY.items() if not k.startswith("t_")}


def served_name(remote) -> str:
    """The path under ``<server>/<dataset>/`` that serves ``remote``: the URL's file name for a zip of which one
    member is kept, else the file's own name."""
    from pathlib import PurePosixPath

    return PurePosixPath(remote.url).name if remote.member else remote.name


@pytest.fixture(scope="session")
def mirror_server(tmp_path_factory):
    """A loopback HTTP server holding a fixture of every registered dataset, as ``<base>/<dataset>/<file>``."""
    import functools
    import http.server
    import threading

    www = tmp_path_factory.mktemp("www")
    for name, write in DOWNLOAD_FIXTURES.items():
        (www / name).mkdir()
        write(www / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def mirror(mirror_server, monkeypatch):
    """Every registered dataset's URLs point at the loopback server; pinned sha256 become the fixtures' (so the
    pinned path is exercised too). Returns the served folder."""
    import dataclasses
    from urllib.parse import quote

    from rnnlab.data import sources

    www, base = mirror_server
    monkeypatch.delenv("RNNLAB_LOCAL_DATA", raising=False)  # downloads, not local copies (CI sets it)
    for name, source in registered_sources().items():
        files = []
        for remote in source.files:
            served = www / name / served_name(remote)
            files.append(
                dataclasses.replace(
                    remote,
                    url=f"{base}/{name}/{quote(served_name(remote))}",
                    sha256=sources.sha256sum(served) if remote.sha256 else None,
                )
            )
        monkeypatch.setitem(sources._REGISTRY, name, dataclasses.replace(source, files=tuple(files)))
    return www


@pytest.fixture
def downloading_env(env, mirror, monkeypatch) -> Path:
    """``env`` without local copies: every dataset is downloaded from the loopback mirror into ``./data``."""
    monkeypatch.delenv("RNNLAB_LOCAL_DATA", raising=False)
    return env


class _ParserBuilt(Exception):
    pass


@pytest.fixture(scope="session")
def cli_parser():
    """The CLI's own parser (``RnnlabCLI``'s, all subcommands), built once: parsing a pair with it is what
    ``--print_config`` does, without building the parser 264 times."""
    from rnnlab.cli import RnnlabCLI

    class ParserOnly(RnnlabCLI):
        def parse_arguments(self, parser, args):
            raise _ParserBuilt(parser)

    with pytest.raises(_ParserBuilt) as built:
        ParserOnly(args=["fit"])
    return built.value.args[0]


def predict_rows(config, ckpt, texts: str, *extra: str, output: str = "predictions.jsonl") -> list[dict]:
    """``predict`` through the CLI from checkpoint ``ckpt`` on ``texts`` (a JSON list, as typed on a command line),
    writing ``output`` in the working directory; returns its JSONL rows."""
    from rnnlab.cli import main

    main(
        [
            "predict",
            "--config",
            str(config),
            *extra,
            "--ckpt_path",
            str(ckpt),
            "--data.init_args.predict_texts",
            texts,
            "--prediction_writer.output",
            output,
        ]
    )
    return [json.loads(line) for line in Path(output).read_text(encoding="utf-8").splitlines()]


def rnn_args(kwargs: dict, layers: str = "num_layers") -> dict:
    """``kwargs`` of a model with its flat recurrent settings (``hidden_size``, ``cell``, ``impl``, ...; ``layers``
    names the layer count: ``encoder_layers`` for Seq2Seq) gathered into ``rnn=RecurrentSpec(...)``."""
    from rnnlab.nn.recurrent import RecurrentSpec

    names = {"cell": "cell", "impl": "impl", "hidden_size": "hidden_size", "bidirectional": "bidirectional"}
    names.update({"packed": "packed", layers: "num_layers"})
    rest = {k: v for k, v in kwargs.items() if k not in names}
    spec = {names[k]: v for k, v in kwargs.items() if k in names}
    return {**rest, "rnn": RecurrentSpec(**spec)} if spec else rest
