"""``rnnlab serve``: the HTTP server around a checkpoint trained on the fixtures -- its predictions are the rows
``rnnlab predict`` writes, and bad requests get a 4xx with a message while the server goes on serving."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from conftest import predict_rows
from rnnlab.cli import main, serve_app
from rnnlab.errors import RnnlabError

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMDB = str(ROOT / "configs" / "imdb_lstm.yaml")
TINY = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--model.init_args.embedding_dim=16",
    "--model.init_args.hidden_size=16",
    "--data.init_args.val_size=20",
    "--data.init_args.batch_size=16",
]


@pytest.fixture
def imdb_client(env):
    main(["fit", "--config", IMDB, *TINY, "--trainer.max_epochs=1"])
    ckpt = next((env / "runs" / "imdb_lstm" / "version_0" / "checkpoints").glob("*.ckpt"))
    app, host, port = serve_app(["--config", IMDB, *TINY, "--ckpt_path", str(ckpt)])
    assert (host, port) == ("127.0.0.1", 8000)
    return TestClient(app), ckpt


def test_the_server_predicts_what_predict_writes_and_describes_itself(imdb_client):
    client, ckpt = imdb_client
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["task"] == "SequenceClassifier" and info["labels"] == ["neg", "pos"] and info["vocab_size"] > 10
    assert "imdb_lstm" in info["config"] or "IMDBDataModule" in info["config"]
    texts = ["A wonderful film, great acting.", "", "Boring and bad."]
    response = client.post("/predict", json={"inputs": texts})
    assert response.status_code == 200, response.text
    rows = response.json()["outputs"]
    written = predict_rows(IMDB, ckpt, '["A wonderful film, great acting.", "", "Boring and bad."]', *TINY)
    assert rows == [{k: v for k, v in row.items() if k != "line"} for row in written]
    assert "error" in rows[1] and rows[0]["label"] in ("neg", "pos")
    page = client.get("/").text
    assert "<form" in page and "A wonderful film" in page and "SequenceClassifier" in page


def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(imdb_client):
    client, _ = imdb_client
    cases = [
        (client.post("/predict", json={"input": ""}), 422, "empty input"),
        (client.post("/predict", content=b"{not json"), 400, "not JSON"),
        (client.post("/predict", content=b'{"input": "caf\xe9"}'), 400, "not UTF-8"),
        (client.post("/predict", json={"inputs": [1, 2]}), 422, "list of strings"),
        (client.post("/predict", json={"text": "hello"}), 422, "send {"),
        (client.post("/predict", json={"input": "a" * 1_000_000}), 413, "the limit is"),
        (client.post("/predict", json={"inputs": ["ok"] * 65}), 422, "between 1 and 64"),
        (client.post("/predict", json={"input": "good", "ckpt_path": "/etc/passwd"}), 200, None),  # ignored
        (client.get("/translate"), 404, ""),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (status, response.text)
        if message is not None and status != 404:
            assert message in (response.json().get("error") or ""), response.text
    good = client.post("/predict", json={"input": "A great film."})
    assert good.status_code == 200 and good.json()["outputs"][0]["label"] in ("neg", "pos")


def test_concurrent_requests_are_all_answered(imdb_client):
    client, _ = imdb_client
    results = []

    def ask(k: int) -> None:
        results.append(client.post("/predict", json={"inputs": [f"review number {k} was great"] * 3}).status_code)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8


def test_serve_needs_a_checkpoint(env):
    with pytest.raises(RnnlabError, match="--ckpt_path"):
        serve_app(["--config", IMDB])
