"""``rnnlab serve``: the HTTP server around checkpoints trained on the fixtures -- its predictions are the rows
``rnnlab predict`` writes, options add the extras each kind of task offers, concurrent requests are batched, bad
requests get a 4xx with a message while the server goes on serving, and the page works in a real browser (headless
Chromium through Selenium; screenshots kept in ``test-artifacts/browser/``)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import predict_rows
from rnnlab.cli import main, serve_app
from rnnlab.errors import RnnlabError

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from rnnlab.serve import Batcher, check_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
MODELS = {  # kind -> (config, overrides)
    "classify": (
        "imdb_lstm",
        [
            "--model.init_args.embedding_dim=16",
            "--model.init_args.rnn.hidden_size=16",
            "--data.init_args.val_size=20",
            "--data.init_args.batch_size=16",
        ],
    ),
    "translate": (
        "cmn_eng_seq2seq_attn",
        ["--model.init_args.rnn.hidden_size=16", "--model.init_args.embedding_dim=16", "--data.init_args.min_freq=1"],
    ),
    "generate": ("names_generate_gru", ["--model.init_args.rnn.hidden_size=16"]),
    "tag": ("conll2000_pos_bilstm", ["--model.init_args.rnn.hidden_size=12"]),
    "music": ("jsb_chorales_gru", ["--model.init_args.rnn.hidden_size=16"]),
    "forecast": ("macro_gru_local_level", []),
    "caption": (
        "caption_digits_attn",
        ["--data.init_args.num_scenes=[256, 64, 64]", "--model.init_args.rnn.hidden_size=32"],
    ),
}


@pytest.fixture(scope="module")
def trained(local_data, tmp_path_factory):
    """kind -> (config path, overrides, checkpoint): each model trained for one epoch on the fixtures, once."""
    folder = tmp_path_factory.mktemp("serve")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNLAB_LOCAL_DATA", str(local_data))
        mp.chdir(folder)
        for kind, (config, args) in MODELS.items():
            path = str(ROOT / "configs" / f"{config}.yaml")
            main(["fit", "--config", path, *QUIET, *args, "--trainer.max_epochs=1"])
            ckpt = next((folder / "runs" / config / "version_0" / "checkpoints").glob("epoch*.ckpt"))
            out[kind] = (path, [*QUIET, *args], str(ckpt))
    return out


@pytest.fixture
def client(trained, env, request):
    kind = getattr(request, "param", "classify")
    path, args, ckpt = trained[kind]
    app, host, port = serve_app(["--config", path, *args, "--ckpt_path", ckpt])
    assert (host, port) == ("127.0.0.1", 8000)
    return TestClient(app)


@pytest.mark.slow
def test_the_server_predicts_what_predict_writes_and_describes_itself(trained, client):
    path, args, ckpt = trained["classify"]
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["task"] == "SequenceClassifier" and info["labels"] == ["neg", "pos"] and info["vocab_size"] > 10
    assert info["kind"] == "classify" and info["options"] == {"explain": "bool"}
    assert info["row"]["type"] == "ClassificationRow" and info["row"]["fields"]["prob"] == "float"
    assert "IMDBDataModule" in info["config"]
    texts = ["A wonderful film, great acting.", "", "Boring and bad."]
    response = client.post("/predict", json={"inputs": texts})
    assert response.status_code == 200, response.text
    rows = response.json()["outputs"]
    written = predict_rows(path, ckpt, '["A wonderful film, great acting.", "", "Boring and bad."]', *args)
    assert rows == [{k: v for k, v in row.items() if k != "line"} for row in written]
    assert "error" in rows[1] and rows[0]["label"] in ("neg", "pos")
    page = client.get("/").text
    assert "<form" in page and "A wonderful film" in page and '"kind": "classify"' in page


@pytest.mark.slow
def test_explain_attributes_the_prediction_to_the_input_tokens(client):
    plain = client.post("/predict", json={"input": "A wonderful film, great acting."}).json()["outputs"][0]
    row = client.post("/predict", json={"input": "A wonderful film, great acting.", "options": {"explain": True}})
    row = row.json()["outputs"][0]
    assert {k: v for k, v in row.items() if k != "attribution"} == plain, "explain adds, it changes nothing"
    words = [w for w, _ in row["attribution"]]
    assert words == ["a", "wonderful", "film", ",", "great", "acting", "."] or len(words) == 7, words
    assert any(abs(s) > 0 for _, s in row["attribution"])


@pytest.mark.slow
@pytest.mark.parametrize("client", ["translate"], indirect=True)
def test_translation_gives_the_n_best_and_the_attention_of_the_best(client):
    plain = client.post("/predict", json={"input": "大狗看小猫。", "options": {"beam_size": 3}}).json()["outputs"][0]
    options = {"beam_size": 3, "nbest": 3, "attention": True}
    row = client.post("/predict", json={"input": "大狗看小猫。", "options": options}).json()["outputs"][0]
    assert row["translation"] == plain["translation"] == row["nbest"][0]["translation"]
    scores = [h["score"] for h in row["nbest"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    attention = row["attention"]
    assert len(attention["weights"]) == len(attention["target"]) > 0
    for weights in attention["weights"]:
        assert len(weights) == len(attention["source"]) and abs(sum(weights) - 1) < 0.01  # a distribution per step
    bad = client.post("/predict", json={"input": "大狗。", "options": {"beam_size": 2, "nbest": 3}})
    assert bad.status_code == 422 and "nbest (3) cannot exceed beam_size (2)" in bad.json()["error"]


@pytest.mark.slow
@pytest.mark.parametrize("client", ["generate"], indirect=True)
def test_generation_options_set_length_and_temperature(client):
    greedy = {"temperature": 0.0, "max_new": 4}
    rows = [client.post("/predict", json={"input": "Russian", "options": greedy}).json()["outputs"][0] for _ in (0, 1)]
    assert rows[0] == rows[1] and len(rows[0]["output"]) <= 4, "temperature 0 is greedy; max_new bounds the length"
    long = client.post("/predict", json={"input": "Russian", "options": {"max_new": 30, "sample_seed": 1}})
    assert long.status_code == 200 and long.json()["outputs"][0]["category"] == "Russian"
    assert client.get("/info").json()["hparams"]["max_new"] != 4, "a request's options do not stick to the model"


@pytest.mark.slow
@pytest.mark.parametrize("client", ["music"], indirect=True)
def test_music_rows_carry_the_piano_roll_and_the_midi_file(client):
    row = client.post("/predict", json={"input": "scratch", "options": {"generate_steps": 8}}).json()["outputs"][0]
    assert row["steps"] == 8 and row["png_data"].startswith("data:image/png;base64,")
    midi = base64.b64decode(row["midi_data"].split(",", 1)[1])
    assert midi[:4] == b"MThd", "a standard MIDI file"


@pytest.mark.slow
@pytest.mark.parametrize("client", ["forecast"], indirect=True)
def test_forecast_rows_carry_the_history_they_start_from(client):
    info = client.get("/info").json()
    row = client.post("/predict", json={"input": "last"}).json()["outputs"][0]
    assert set(row["history"]) == set(row["forecast"]) == set(info["labels"])
    window = info["hparams"].get("window") or len(next(iter(row["history"].values())))
    assert all(len(v) == window for v in row["history"].values())


def scene_png(folder: Path) -> Path:
    """Test scene 3 of the captioning fixture as a PNG file (what a user uploads)."""
    from PIL import Image

    from rnnlab.data.captions import DigitScenesDataModule

    dm = DigitScenesDataModule(num_scenes=(256, 64, 64), root=str(folder / "data"))
    dm.setup("fit")
    path = folder / "scene.png"
    Image.fromarray(dm.images["test"][3][0].numpy()).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("client", ["caption"], indirect=True)
def test_captions_from_uploaded_images_never_from_paths(client, env):
    path = scene_png(env)
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    options = {"beam_size": 3, "nbest": 2, "attention": True}
    row = client.post("/predict", json={"input": url, "options": options}).json()["outputs"][0]
    assert row["caption"] == row["nbest"][0]["caption"] and len(row["nbest"]) == 2
    attention = row["attention"]
    assert attention["grid"] == 4 and all(len(w) == 16 for w in attention["weights"])
    assert len(attention["weights"]) == len(attention["target"])
    same = client.post("/predict", json={"input": "test:3", "options": {"beam_size": 3}}).json()["outputs"][0]
    assert same["caption"] == row["caption"], "the PNG round trip keeps the scene"
    for bad in (str(path), "/etc/passwd"):
        response = client.post("/predict", json={"input": bad})
        assert response.status_code == 422 and "reads no file a request names" in response.json()["error"]
    broken = client.post("/predict", json={"input": "data:image/png;base64,bm90IGFuIGltYWdl"})
    assert broken.status_code == 422 and "not a readable image" in broken.json()["error"]


def test_options_are_checked_per_kind():
    assert check_options("generate", {"temperature": 1, "max_new": 5}) == {"temperature": 1.0, "max_new": 5}
    cases = [
        ("classify", {"temperature": 1.0}, "unknown option 'temperature' for a classify model (its options: explain)"),
        ("generate", {"max_new": 2.5}, "option 'max_new' takes a int"),
        ("generate", {"temperature": "hot"}, "option 'temperature' takes a float"),
        ("generate", {"temperature": 9.0}, "must be between 0.0 and 5.0"),
        ("translate", {"attention": 1}, "takes true or false"),
        ("tag", [1], '"options" must be an object'),
    ]
    for kind, options, message in cases:
        with pytest.raises(RnnlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_options(kind, options)


def test_concurrent_requests_are_predicted_together_and_each_gets_its_own_rows():
    calls = []

    def work(texts: list[str], options: dict) -> list[dict]:
        calls.append(list(texts))
        time.sleep(0.05)  # while the first batch runs, the other requests queue up
        return [{"input": t, "upper": t.upper(), **options} for t in texts]

    batcher = Batcher(work, max_inputs=8, wait_s=0.01)
    answers: dict[int, list] = {}

    def ask(k: int) -> None:
        answers[k] = batcher([f"r{k}a", f"r{k}b"], {"opt": k % 2} if k >= 6 else {})

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(8):
        extra = {"opt": k % 2} if k >= 6 else {}
        assert answers[k] == [{"input": f"r{k}{s}", "upper": f"R{k}{s.upper()}", **extra} for s in "ab"]
    assert batcher.stats["requests"] == 8 and len(calls) < 8, calls
    assert max(len(c) for c in calls) <= 8
    assert sum(len(c) for c in calls) == 16


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    def work(texts, options):
        if "boom" in texts:
            raise RnnlabError("boom")
        return [{"input": t} for t in texts]

    batcher = Batcher(work, wait_s=0.0)
    with pytest.raises(RnnlabError, match="boom"):
        batcher(["boom"], {})
    assert batcher(["fine"], {}) == [{"input": "fine"}]


@pytest.mark.slow
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(client):
    cases = [
        (client.post("/predict", json={"input": ""}), 422, "empty input"),
        (client.post("/predict", content=b"{not json"), 400, "not JSON"),
        (client.post("/predict", content=b'{"input": "caf\xe9"}'), 400, "not UTF-8"),
        (client.post("/predict", json={"inputs": [1, 2]}), 422, "list of strings"),
        (client.post("/predict", json={"text": "hello"}), 422, "send {"),
        (client.post("/predict", json={"input": "a" * 1_000_000}), 413, "the limit is"),
        (client.post("/predict", json={"inputs": ["ok"] * 65}), 422, "between 1 and 64"),
        (client.post("/predict", json={"input": "ok", "options": {"beam_size": 3}}), 422, "unknown option"),
        (client.post("/predict", json={"input": "good", "ckpt_path": "/etc/passwd"}), 200, None),  # ignored
        (client.get("/translate"), 404, ""),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (status, response.text)
        if message is not None and status != 404:
            assert message in (response.json().get("error") or ""), response.text
    good = client.post("/predict", json={"input": "A great film."})
    assert good.status_code == 200 and good.json()["outputs"][0]["label"] in ("neg", "pos")


@pytest.mark.slow
def test_concurrent_requests_are_all_answered_in_batches(client):
    results = []

    def ask(k: int) -> None:
        results.append(client.post("/predict", json={"inputs": [f"review number {k} was great"] * 3}).status_code)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    stats = client.get("/stats").json()
    assert stats["requests"] == 8 and stats["inputs"] == 24 and 1 <= stats["batches"] <= 8


def test_serve_needs_a_checkpoint(env):
    with pytest.raises(RnnlabError, match="--ckpt_path"):
        serve_app(["--config", str(ROOT / "configs" / "imdb_lstm.yaml")])


# ----------------------------------------------------------------------------------------- in a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def browser():
    """Headless Chromium driven by Selenium (Debian's ``chromium`` and ``chromium-driver``; ``.ci/run`` installs them).
    Without them the browser tests skip, except under CI, where they must run (unless ``.ci/run`` could not install
    them and said so: ``RNNLAB_NO_BROWSER``)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI") and not os.environ.get("RNNLAB_NO_BROWSER"):
            pytest.fail("CI must run the browser tests: apt-get install chromium chromium-driver")
        pytest.skip("no chromium/chromedriver on this machine (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def serving(app):
    """Run ``app`` with uvicorn on a free loopback port in a thread; returns (url, stop)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}/", stop


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, text, check",
    [
        ("classify", "A wonderful film, great acting.", "article .label"),
        ("translate", "大狗看小猫。", "article table.attn"),
        ("generate", "Russian", "article pre.generated"),
        ("tag", "The economy grew fast .", "article .tags .tag sub"),
        ("music", "scratch", "article img"),
        ("forecast", "last", "article figure svg polyline"),
        ("caption", "scene.png", "article .gridmaps table"),
    ],
)
def test_the_page_in_a_real_browser(trained, env, kind, text, check):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    path, args, ckpt = trained[kind]
    app, _, _ = serve_app(["--config", path, *args, "--ckpt_path", ckpt])
    expected = TestClient(app).get("/info").json()
    url, stop = serving(app)
    driver = browser()
    try:
        driver.get(url)
        assert expected["task"] in driver.title
        box = driver.find_element(By.ID, "text")
        box.clear()
        empty_is_wrong = kind not in (
            "music",
            "forecast",
            "caption",
        )  # music, forecast: "from scratch", "the last date"
        if kind == "caption":  # the image is uploaded through the file field
            driver.find_element(By.ID, "images").send_keys(str(scene_png(env)))
        else:
            box.send_keys(text + "\n" * empty_is_wrong)  # the empty second line gets an error row of its own
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 60).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, check)))
        articles = driver.find_elements(By.CSS_SELECTOR, "#result article")
        assert len(articles) == 1 + empty_is_wrong
        if empty_is_wrong:
            assert articles[1].find_element(By.CLASS_NAME, "error").text
        first = articles[0]
        if kind == "caption":
            assert first.find_element(By.CSS_SELECTOR, "img.input").get_attribute("src").startswith("data:image/png")
            assert len(first.find_elements(By.CSS_SELECTOR, ".gridmaps figure")) >= 1
        else:
            assert first.find_element(By.CLASS_NAME, "input").text == text
        if kind == "classify":
            assert first.find_element(By.CLASS_NAME, "label").text.split()[0] in ("neg", "pos")
            assert len(first.find_elements(By.CSS_SELECTOR, ".attribution .tok")) == 7
        if kind == "translate":
            assert first.find_elements(By.CSS_SELECTOR, "ol.nbest li"), "the n-best list"
        if kind == "generate":
            assert first.find_element(By.CSS_SELECTOR, "pre.generated").text
        if kind == "tag":
            units = first.find_elements(By.CSS_SELECTOR, ".tags .tag")
            assert [u.text.split("\n")[0].split()[0] for u in units][:2] == ["The", "economy"] or len(units) >= 5
        if kind == "music":
            assert first.find_element(By.LINK_TEXT, "Download MIDI").get_attribute("href").startswith("data:audio/midi")
        if kind == "forecast":
            assert len(first.find_elements(By.TAG_NAME, "figure")) == len(expected["labels"])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / f"{kind}.png"))
        assert (ARTIFACTS / f"{kind}.png").stat().st_size > 5000
    finally:
        driver.quit()
        stop()
