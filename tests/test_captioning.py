"""Image captioning: the digit scenes (captions from layouts, test scenes from unseen digit images), the Flickr8k
loader in its official layouts (token file + split lists, Karpathy's JSON, zipped or extracted images, a corrupt
image skipped with a count, a missing one named), the image batch layout, and the captioner -- the translation
model's decoding code on a CNN's grid: beam 1 is greedy, attention is a distribution over the grid, the doubly
stochastic term adds to the loss, and fit/test/predict run from the config."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import rnn_args, write_flickr8k
from rnnlab.data.batching import pad_collate
from rnnlab.data.captions import DigitScenesDataModule, Flickr8kDataModule, scene_caption
from rnnlab.errors import RnnlabError
from rnnlab.models import ImageCaptioner

ROOT = Path(__file__).resolve().parents[1]


def test_scene_captions_follow_the_layout():
    assert scene_caption([(0, 2, 4)]) == "a 4 in the top right"
    assert scene_caption([(1, 1, 0)]) == "a 0 in the center"
    assert scene_caption([(0, 2, 7), (0, 0, 3)]) == "a 3 left of a 7", "read left to right"
    assert scene_caption([(0, 1, 3), (2, 1, 1)]) == "a 3 above a 1"
    assert scene_caption([(0, 0, 3), (0, 1, 7), (1, 0, 1)]) == "a 3 left of a 7 above and right of a 1"
    assert scene_caption([(0, 0, 5), (2, 2, 6)]) == "a 5 above and left of a 6"


def test_digit_scenes_hold_out_the_digit_images_of_the_test_scenes(tmp_path):
    dm = DigitScenesDataModule(num_scenes=(300, 60, 60), root=str(tmp_path))
    examples = dm.read_examples()
    assert [len(examples[s]) for s in ("train", "val", "test")] == [300, 60, 60]
    assert not dm.used["test"] & dm.used["train"] and not dm.used["val"] & dm.used["train"]
    assert len(dm.used["train"]) > 300, "many different digit images in training"
    image, (caption,) = examples["test"][0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.uint8 and image.max() > 100
    digits = caption.split().count("a")
    assert 1 <= digits <= 4
    ink = (image[0] > 0).float()
    assert ink.sum() > 10 * digits, "each digit leaves ink on the canvas"
    again = DigitScenesDataModule(num_scenes=(300, 60, 60), root=str(tmp_path)).read_examples()
    assert torch.equal(again["test"][5][0], examples["test"][5][0]) and again["test"][5][1] == examples["test"][5][1]


def test_images_batch_with_their_captions():
    images = [torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8) for _ in range(3)]
    captions = [torch.tensor([2, 5, 3]), torch.tensor([2, 5, 6, 7, 3]), torch.tensor([2, 3])]
    batch = pad_collate([(im, cap, i) for i, (im, cap) in enumerate(zip(images, captions))], layout="image")
    assert batch.images.shape == (3, 1, 8, 8) and batch.images.dtype == torch.float32
    assert torch.allclose(batch.images[1], images[1].float() / 255) and batch.tokens is None
    assert batch.target.shape == (3, 5) and batch.target[2].tolist() == [2, 3, -100, -100, -100]


def test_flickr8k_official_layout_and_karpathy_json(local_data, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local_data))
    dm = Flickr8kDataModule(image_size=24, root=str(tmp_path / "cache"), batch_size=4)
    dm.setup("fit")
    assert [len(dm.images[s]) for s in ("train", "val", "test")] == [16, 8, 8]
    assert len(dm.dataset("train")) == 16 * 5 and len(dm.dataset("test")) == 8, "5 captions per training image"
    assert dm.images["train"].shape[1:] == (3, 24, 24)
    refs = dm.all_references("test")[0]
    assert len(refs) == 5 and refs[0].startswith("a ") and refs[0].endswith(" background .")
    batch = dm.collate([dm.dataset("train")[i] for i in range(4)])
    assert batch.images.shape == (4, 3, 24, 24) and batch.target[:, 0].tolist() == [2] * 4

    karpathy = tmp_path / "dataset_flickr8k.json"
    with zipfile.ZipFile(local_data / "flickr8k" / "Flickr8k_text.zip") as z:
        lines = z.read("Flickr8k.token.txt").decode().splitlines()
    names = sorted({line.split("#")[0] for line in lines})
    images = [
        {
            "filename": name,
            "split": ["train", "restval", "val", "test"][i % 4],
            "sentences": [{"raw": line.split("\t")[1]} for line in lines if line.startswith(name)],
        }
        for i, name in enumerate(names)
    ]
    karpathy.write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    dm = Flickr8kDataModule(image_size=24, root=str(tmp_path / "cache"), karpathy_json=str(karpathy))
    dm.setup("fit")
    assert [len(dm.images[s]) for s in ("train", "val", "test")] == [16, 8, 8]  # restval joins train


def test_flickr8k_skips_a_corrupt_image_with_a_count_and_names_a_missing_one(tmp_path, monkeypatch, caplog):
    local = tmp_path / "local"
    splits = write_flickr8k(local / "flickr8k", sizes=(30, 4, 4), corrupt=("1003_0003.jpg",), extracted=True)
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(local))
    dm = Flickr8kDataModule(image_size=16, root=str(tmp_path / "cache"), max_bad_fraction=0.05)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert len(dm.images["train"]) == 29 and "1 of 38 images unreadable, skipped: 1003_0003.jpg" in caplog.text
    (local / "flickr8k" / "Flicker8k_Dataset" / splits["test"][1]).unlink()
    with pytest.raises(RnnlabError, match=f"image .*{splits['test'][1]} is missing"):
        Flickr8kDataModule(image_size=16, root=str(tmp_path / "cache2")).setup("fit")
    strict = Flickr8kDataModule(image_size=16, root=str(tmp_path / "cache3"), max_bad_fraction=0.0)
    (local / "flickr8k" / "Flicker8k_Dataset" / splits["test"][1]).write_bytes(b"garbage")
    with pytest.raises(RnnlabError, match="2 of 38 images are unreadable"):
        strict.setup("fit")


def captioner(**kwargs) -> ImageCaptioner:
    torch.manual_seed(0)
    args = dict(tgt_vocab_size=12, in_channels=1, image_size=16, channels=(8, 16, 16), embedding_dim=8,
                hidden_size=16, dropout=0.0, max_decode_len=7)  # fmt: skip
    return ImageCaptioner(**rnn_args({**args, **kwargs}, layers="decoder_layers")).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_captioner_decodes_with_the_translation_models_code(cell):
    model = captioner(cell=cell)
    images, lengths = torch.rand(3, 1, 16, 16), torch.ones(3, dtype=torch.long)
    assert model.grid_size == 16, "16x16 -> two halvings -> a 4x4 grid"
    greedy = model.greedy(images, lengths)
    ids, scores = model.beam_search(images, lengths, beam_size=1)
    assert torch.equal(ids[:, 0, : greedy.shape[1]], greedy)
    weights = model.attention_map(images, lengths, greedy)
    assert weights.shape == (3, greedy.shape[1], 16) and torch.allclose(weights.sum(-1), torch.ones(3, greedy.shape[1]))
    ids, scores = model.beam_search(images, lengths, beam_size=4)
    assert ids.shape[:2] == (3, 4) and (scores[:, :-1] >= scores[:, 1:]).all()
    assert captioner(attention="none").attention_map(images, lengths, greedy) is None


def test_the_doubly_stochastic_term_adds_to_the_loss():
    from rnnlab.contract import Batch

    images = torch.rand(2, 1, 16, 16)
    target = torch.tensor([[2, 5, 6, 3], [2, 7, 3, -100]])
    batch = Batch(None, torch.ones(2, dtype=torch.long), target, torch.arange(2), images=images)
    losses = []
    for weight in (0.0, 1.0):
        model = captioner(doubly_stochastic=weight).train()
        model.log = lambda *a, **k: None
        losses.append(float(model.training_step(batch, 0)))
    # two or three steps spread over 16 locations leave most of them almost unvisited: (1 - ~0.2)^2 each
    assert losses[1] > losses[0] + 5


def test_a_torchvision_encoder_is_optional_and_says_how_to_get_it():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(RnnlabError, match="pip install 'rnnlab\\[caption\\]'"):
            captioner(encoder="resnet18")
    else:
        with pytest.raises(RnnlabError, match="encoder must be cnn, resnet18"):
            captioner(encoder="vgg16")


@pytest.mark.slow
def test_caption_config_fits_tests_and_predicts_image_files(env):
    from PIL import Image

    from conftest import predict_rows
    from rnnlab.cli import main

    config = str(ROOT / "configs" / "caption_digits_attn.yaml")
    args = [
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.init_args.num_scenes=[256, 64, 64]",
        "--model.init_args.rnn.hidden_size=32",
    ]
    main(["fit", "--config", config, *args, "--trainer.max_epochs=2"])
    run = env / "runs" / "caption_digits_attn" / "version_0"
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val/bleu" in header and "val/exact" in header
    ckpt = str(run / "checkpoints" / "last.ckpt")
    main(["test", "--config", config, *args, "--ckpt_path", ckpt])
    scene = DigitScenesDataModule(num_scenes=(256, 64, 64))
    scene.setup("fit")
    Image.fromarray(scene.images["test"][3][0].numpy()).resize((64, 64)).save(env / "scene.png")
    rows = predict_rows(config, ckpt, '["scene.png", "test:3", "", "missing.png"]', *args)
    assert isinstance(rows[0]["caption"], str) and isinstance(rows[1]["caption"], str) and "score" in rows[0]
    assert "empty input" in rows[2]["error"] and "'missing.png' not found" in rows[3]["error"]
