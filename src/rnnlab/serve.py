"""``rnnlab serve``: one HTTP server for every task (FastAPI + uvicorn).

``POST /predict`` takes ``{"inputs": ["...", ...]}`` (or ``{"input": "..."}``) and answers ``{"outputs": [row, ...]}``,
each row exactly what ``rnnlab predict`` writes for that line (the same ``render_prediction`` of the task's
DataModule; ``error``/``warning`` per input). ``"options"`` asks for more, per kind of task (:data:`OPTIONS`):

* ``classify``: ``explain`` adds ``attribution``, each input token with its gradient x input score for the predicted
  label (positive: the token pushed towards it);
* ``translate``: ``beam_size``, ``nbest`` (the n best ``{translation, score}``) and ``attention`` (the best
  hypothesis' attention weights over the source tokens);
* ``generate``: ``temperature``, ``max_new``, ``top_k``, ``sample_seed``;
* ``music``: ``temperature``, ``generate_steps``, ``sample_seed``; rows also carry the piano roll (PNG) and the MIDI
  file as data URLs;
* ``forecast``: rows also carry the ``history`` the forecast starts from.

Concurrent requests with the same options are predicted as one batch (:class:`Batcher`: up to ``MAX_INPUTS`` inputs,
gathered for up to ``BATCH_WAIT_S``). ``GET /health``, ``GET /stats`` (requests, batches), ``GET /info`` (task, kind,
labels, vocabulary size, options, the training config) and ``GET /`` (a page that adapts to the task). The model is
loaded once, from the ``--ckpt_path`` given on the command line; no request can name a file. A bad request gets a 4xx
with a message and the server goes on serving.
"""

import base64
import concurrent.futures
import html
import json
import queue
import re
import threading
import time
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch

from rnnlab.contract import check_row, row_fields
from rnnlab.errors import RnnlabError, require

MAX_INPUTS = 64  # per request, and per batch of requests
MAX_CHARS = 20_000  # per input
MAX_IMAGE_CHARS = 4_000_000  # per input of a captioner: an image as a data: URL (~3 MB)
BATCH_WAIT_S = 0.005  # how long the first request of a batch waits for others
SPLIT_ITEM = re.compile(r"(train|val|test):\d+")

KINDS = {
    "SequenceClassifier": "classify",
    "SequenceTagger": "tag",
    "Seq2Seq": "translate",
    "ImageCaptioner": "caption",
    "LanguageModel": "generate",
    "PianoRollModel": "music",
    "SequenceRegressor": "forecast",
}
_SAMPLING = {"temperature": (float, 0.0, 5.0), "sample_seed": (int, 0, 2**31 - 1)}
OPTIONS: dict[str, dict[str, tuple]] = {  # kind -> option -> (type, low, high); bool options have no range
    "classify": {"explain": (bool,)},
    "tag": {},
    "translate": {"beam_size": (int, 1, 20), "nbest": (int, 1, 20), "attention": (bool,)},
    "caption": {"beam_size": (int, 1, 20), "nbest": (int, 1, 20), "attention": (bool,)},
    "generate": {"max_new": (int, 1, 2000), "top_k": (int, 1, 100_000), **_SAMPLING},
    "music": {"generate_steps": (int, 1, 2000), **_SAMPLING},
    "forecast": {},
}


def kind_of(model) -> str:
    kind = KINDS.get(type(model).__name__)
    if kind is None:
        raise RnnlabError(
            f"serve covers {', '.join(sorted(KINDS))}; {type(model).__name__} has no predictions to serve"
        )
    return kind


def check_options(kind: str, options: Any) -> dict:
    """``options`` of a request, checked against :data:`OPTIONS`; a RnnlabError says what is wrong."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise RnnlabError('"options" must be an object, e.g. {"temperature": 0.8}')
    allowed = OPTIONS[kind]
    out = {}
    for name, value in options.items():
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            raise RnnlabError(f"unknown option {name!r} for a {kind} model (its options: {known})")
        kind_, *bounds = allowed[name]
        if kind_ is bool:
            if not isinstance(value, bool):
                raise RnnlabError(f"option {name!r} takes true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or (kind_ is int and value != int(value)):
            raise RnnlabError(f"option {name!r} takes a {kind_.__name__}, got {value!r}")
        elif not bounds[0] <= value <= bounds[1]:
            raise RnnlabError(f"option {name!r} must be between {bounds[0]} and {bounds[1]}, got {value!r}")
        out[name] = kind_(value)
    if kind in ("translate", "caption") and out.get("nbest", 1) > out.get("beam_size", 5):
        raise RnnlabError(f"nbest ({out['nbest']}) cannot exceed beam_size ({out.get('beam_size', 5)})")
    return out


def predict_rows(model, dm, texts: list[str], options: dict | None = None) -> list[dict]:
    """Rows for ``texts`` as ``rnnlab predict`` writes them (without the ``line`` numbers), batched by the
    DataModule's own ``predict_dataloader`` as ``predict`` batches them, with the extras that ``options`` ask for
    (see the module docstring)."""
    options = dict(options or {})
    kind = KINDS.get(type(model).__name__, "")
    dm.predict_texts, dm.predict_file = list(texts), None
    try:
        loader = dm.predict_dataloader()  # encodes the inputs into dm.predict_items, which predict_step may read
    except RnnlabError:  # none of them can be predicted: each row says why
        loader = []
    items = dm.predict_items
    outputs: dict[int, dict] = {}
    extras: dict[int, dict] = {}
    settings = {k: options[k] for k in getattr(model, "inference_hparams", ()) if k in options}
    saved = {k: model.hparams[k] for k in settings}
    model.hparams.update(settings)
    try:
        for batch_idx, batch in enumerate(loader):
            with torch.no_grad():
                out = model.predict_step(batch, batch_idx)
            for k in range(len(out["index"])):
                row = {key: v[k].detach().cpu() if torch.is_tensor(v) else v[k] for key, v in out.items()}
                outputs[int(row["index"])] = row
            if kind == "classify" and options.get("explain"):
                extras.update(_attributions(model, dm, batch))
            if kind in ("translate", "caption") and (options.get("nbest", 1) > 1 or options.get("attention")):
                extras.update(_translation_extras(model, dm, batch, options, kind))
    finally:
        model.hparams.update(saved)
    rows = []
    for i, item in enumerate(items):
        row: dict[str, Any] = {"input": item["input"]}
        if "error" in item:
            row["error"] = item["error"]
        elif i in outputs:
            row.update(dm.render_prediction(item, outputs[i]))
            row.update(extras.get(i, {}))
            if kind == "music":
                row.update(_music_files(row))
            if kind == "forecast":
                row["history"] = _history(dm, item)
            if "warning" in item:
                row["warning"] = item["warning"]
        rows.append(check_row(dm.prediction_row, row))
    return rows


def _attributions(model, dm, batch) -> dict[int, dict]:
    """Gradient x input of each input token's embedding for the predicted label's log-probability."""
    captured: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        captured["x"] = output.detach().requires_grad_()
        return captured["x"]

    handle = model.embedding.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logp = torch.log_softmax(model(batch.tokens.long(), batch.lengths).float(), -1)
            logp.amax(-1).sum().backward()
    finally:
        handle.remove()
    x = captured["x"]
    scores = (x.grad * x).sum(-1).detach()
    vocab = dm.vocab
    out = {}
    for k, index in enumerate(batch.index.tolist()):
        n = int(batch.lengths[k])
        words = vocab.decode(batch.tokens[k, :n].tolist())
        out[index] = {"attribution": [[w, round(float(s), 4)] for w, s in zip(words, scores[k, :n])]}
    return out


def _translation_extras(model, dm, batch, options: dict, kind: str) -> dict[int, dict]:
    """The n best outputs and the best one's attention: over the source tokens (translation) or over the image's
    grid of ``grid x grid`` locations, row by row (captioning)."""
    beam = options.get("beam_size", model.hparams.beam_size)
    src = model.source(batch)
    ids, scores = model.beam_search(src, batch.lengths, max(beam, 1))
    weights = model.attention_map(src, batch.lengths, ids[:, 0]) if options.get("attention") else None
    out = {}
    for k, index in enumerate(batch.index.tolist()):
        row: dict[str, Any] = {}
        text = "caption" if kind == "caption" else "translation"
        if options.get("nbest", 1) > 1:
            row["nbest"] = [
                {text: dm.decode_target(ids[k, j].tolist()), "score": round(float(scores[k, j]), 4)}
                for j in range(options["nbest"])
            ]
        if options.get("attention") and weights is not None:
            target = dm.target_tokens(ids[k, 0].tolist())
            if kind == "caption":
                side = int(model.grid_size**0.5)
                attention: dict[str, Any] = {"grid": side}
                w = weights[k, : len(target)]
            else:
                attention = {"source": dm.source_tokens(src[k, : int(batch.lengths[k])].tolist())}
                w = weights[k, : len(target), : len(attention["source"])]
            attention["target"] = target
            attention["weights"] = [[round(float(v), 3) for v in r] for r in w]
            row["attention"] = attention
        out[index] = row
    return out


def _music_files(row: dict) -> dict:
    out = {}
    for key, mime in (("png", "image/png"), ("midi", "audio/midi")):
        path = Path(row.get(key, ""))
        if path.is_file():
            out[f"{key}_data"] = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
    return out


def _history(dm, item: dict) -> dict:
    """The window the forecast starts from, per variable, in the units of the forecast."""
    mean, std = torch.tensor(dm.state["mean"]), torch.tensor(dm.state["std"])
    values = torch.as_tensor(item["tokens"]).double() * std + mean
    return {c: [round(float(v), 6) for v in values[:, k]] for k, c in enumerate(dm.labels)}


class Batcher:
    """Predicts concurrent requests together: a worker thread takes the first waiting request, gathers the others
    with the same options that arrive within ``wait_s`` (up to ``max_inputs`` inputs in all), runs ``work`` once on
    all their inputs and hands each request its rows."""

    def __init__(
        self, work: Callable[[list[str], dict], list[dict]], max_inputs: int = MAX_INPUTS, wait_s=BATCH_WAIT_S
    ):
        self.work, self.max_inputs, self.wait_s = work, max_inputs, wait_s
        self.queue: queue.Queue = queue.Queue()
        self.backlog: deque = deque()
        self.stats = {"requests": 0, "batches": 0, "inputs": 0, "largest_batch": 0}
        threading.Thread(target=self._loop, daemon=True, name="rnnlab-batcher").start()

    def __call__(self, texts: list[str], options: dict) -> list[dict]:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.queue.put((json.dumps(options, sort_keys=True), texts, options, future))
        return future.result()

    def _next(self, timeout: float | None):
        if self.backlog:
            return self.backlog.popleft()
        return self.queue.get(timeout=timeout) if timeout is None or timeout > 0 else self.queue.get_nowait()

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            group, n = [first], len(first[1])
            deadline = time.perf_counter() + self.wait_s
            while n < self.max_inputs:
                try:
                    request = self._next(deadline - time.perf_counter())
                except queue.Empty:
                    break
                if request[0] != first[0] or n + len(request[1]) > self.max_inputs:
                    self.backlog.append(request)  # the next batch starts with it
                    break
                group.append(request)
                n += len(request[1])
            texts = [t for request in group for t in request[1]]
            try:
                rows = self.work(texts, first[2])
            except Exception as err:  # every request of the batch gets the error
                for request in group:
                    request[3].set_exception(err)
                continue
            self.stats["requests"] += len(group)
            self.stats["batches"] += 1
            self.stats["inputs"] += n
            self.stats["largest_batch"] = max(self.stats["largest_batch"], n)
            start = 0
            for request in group:
                request[3].set_result(rows[start : start + len(request[1])])
                start += len(request[1])


def create_app(model, dm, info: dict, max_batch: int = MAX_INPUTS):
    """The FastAPI application around a loaded ``model`` and its DataModule ``dm`` (set up for ``predict``);
    concurrent requests are predicted together up to ``max_batch`` inputs (1: one request at a time)."""
    require("fastapi", "serve", "the HTTP server")
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    kind = kind_of(model)
    info = {
        **info,
        "kind": kind,
        "options": {k: v[0].__name__ for k, v in OPTIONS[kind].items()},
        "row": {"type": dm.prediction_row.__name__, "fields": row_fields(dm.prediction_row)},
        "batching": {"max_inputs": max_batch, "wait_ms": BATCH_WAIT_S * 1000},
    }
    app = FastAPI(title="rnnlab", description=f"{info['task']} on {info['data']}")
    model.eval()
    batcher = Batcher(lambda texts, options: predict_rows(model, dm, texts, options), max_inputs=max_batch)

    def bad(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/stats")
    def stats() -> dict:
        return dict(batcher.stats)

    @app.get("/info")
    def get_info() -> dict:
        return info

    @app.post("/predict")
    async def predict(request: Request):
        body = await request.body()
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as err:
            return bad(400, f"the request body is not UTF-8 ({err.reason} at byte {err.start})")
        except json.JSONDecodeError as err:
            return bad(400, f"the request body is not JSON: {err.msg} (line {err.lineno}, column {err.colno})")
        if not isinstance(payload, dict) or not ({"input", "inputs"} & set(payload)):
            return bad(422, 'send {"inputs": ["text", ...]} or {"input": "text"}')
        texts = payload.get("inputs", [payload.get("input")])
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return bad(422, '"inputs" must be a list of strings ("input": one string)')
        if not 1 <= len(texts) <= MAX_INPUTS:
            return bad(422, f"send between 1 and {MAX_INPUTS} inputs per request, got {len(texts)}")
        limit = MAX_IMAGE_CHARS if kind == "caption" else MAX_CHARS
        long = [i for i, t in enumerate(texts) if len(t) > limit]
        if long:
            return bad(413, f"input {long[0]} has {len(texts[long[0]]):,} characters; the limit is {limit:,}")
        if kind == "caption" and any(not t.startswith("data:image/") and not SPLIT_ITEM.fullmatch(t) for t in texts):
            return bad(422, "send images as data: URLs (data:image/png;base64,...) or <split>:<n>; the server reads "
                       "no file a request names")  # fmt: skip
        try:
            options = check_options(kind, payload.get("options"))
            rows = await run_in_threadpool(batcher, texts, options)
        except RnnlabError as err:
            return bad(422, str(err))
        if all("error" in r for r in rows):
            return JSONResponse({"error": rows[0]["error"], "outputs": rows}, status_code=422)
        return {"outputs": rows}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        text = resources.files("rnnlab").joinpath("page.html").read_text(encoding="utf-8")
        public = {k: info[k] for k in ("task", "data", "kind", "labels", "options", "examples")}
        return (
            text.replace("{{title}}", html.escape(f"{info['task']} - {info['data']}"))
            .replace("{{examples}}", html.escape("\n".join(info.get("examples", []))))
            .replace("{{info}}", json.dumps(public).replace("<", "\\u003c"))
        )

    return app


def run(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    require("uvicorn", "serve", "the HTTP server")
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
