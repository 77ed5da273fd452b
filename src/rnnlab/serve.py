"""``rnnlab serve``: one HTTP server for every task (FastAPI + uvicorn).

``POST /predict`` takes ``{"inputs": ["...", ...]}`` (or ``{"input": "..."}``) and answers
``{"outputs": [row, ...]}``, each row exactly what ``rnnlab predict`` writes for that line (the same
``render_prediction`` of the task's DataModule: label and probabilities, tags, a translation, generated text, a
forecast; ``error``/``warning`` per input). ``GET /health``, ``GET /info`` (task, labels, vocabulary size, the
training config) and ``GET /`` (a small page to try the model). The model is loaded once, from the ``--ckpt_path``
given on the command line; no request can name a file. Requests are predicted one at a time (a lock around the
model); a bad request gets a 4xx with a message and the server goes on serving.
"""

import html
import json
import threading
from typing import Any

import torch

from rnnlab.errors import RnnlabError, require

MAX_INPUTS = 64  # per request
MAX_CHARS = 20_000  # per input


def predict_rows(model, dm, texts: list[str]) -> list[dict]:
    """Rows for ``texts`` as ``rnnlab predict`` writes them (without the ``line`` numbers), in one batch."""
    items = dm.encode_predict(texts)
    dm.predict_items = items  # what a model's predict_step may look up (``Task.predict_item``)
    valid = [i for i, item in enumerate(items) if "tokens" in item]
    outputs: dict[int, dict] = {}
    if valid:
        batch = dm.collate([(items[i]["tokens"], None, i) for i in valid])
        with torch.no_grad():
            out = model.predict_step(batch, 0)
        for k in range(len(out["index"])):
            row = {key: v[k].detach().cpu() if torch.is_tensor(v) else v[k] for key, v in out.items()}
            outputs[int(row["index"])] = row
    rows = []
    for i, item in enumerate(items):
        row: dict[str, Any] = {"input": item["input"]}
        if "error" in item:
            row["error"] = item["error"]
        elif i in outputs:
            row.update(dm.render_prediction(item, outputs[i]))
            if "warning" in item:
                row["warning"] = item["warning"]
        rows.append(row)
    return rows


def create_app(model, dm, info: dict):
    """The FastAPI application around a loaded ``model`` and its DataModule ``dm`` (set up for ``predict``)."""
    require("fastapi", "serve", "the HTTP server")
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="rnnlab", description=f"{info['task']} on {info['data']}")
    lock = threading.Lock()
    model.eval()

    def locked(texts: list[str]) -> list[dict]:  # in a worker thread: one prediction at a time
        with lock:
            return predict_rows(model, dm, texts)

    def bad(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

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
        long = [i for i, t in enumerate(texts) if len(t) > MAX_CHARS]
        if long:
            return bad(413, f"input {long[0]} has {len(texts[long[0]]):,} characters; the limit is {MAX_CHARS:,}")
        try:
            rows = await run_in_threadpool(locked, texts)
        except RnnlabError as err:
            return bad(422, str(err))
        if all("error" in r for r in rows):
            return JSONResponse({"error": rows[0]["error"], "outputs": rows}, status_code=422)
        return {"outputs": rows}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.replace("{{title}}", html.escape(f"{info['task']} - {info['data']}")).replace(
            "{{examples}}", html.escape("\n".join(info.get("examples", [])))
        )

    return app


def run(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    require("uvicorn", "serve", "the HTTP server")
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rnnlab: {{title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.4}
textarea{width:100%;font:inherit}table{border-collapse:collapse;margin-top:1rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}.error{color:#b00020}
</style></head><body>
<h1>{{title}}</h1>
<form id="form"><label for="text">One input per line</label>
<textarea id="text" name="text" rows="6">{{examples}}</textarea>
<button type="submit">Predict</button></form>
<div id="result" role="status" aria-live="polite"></div>
<script>
const form = document.getElementById("form"), result = document.getElementById("result");
function cell(v){return typeof v === "object" ? JSON.stringify(v) : String(v);}
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const inputs = document.getElementById("text").value.split("\\n");
  const r = await fetch("predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify({inputs})});
  const data = await r.json();
  const rows = data.outputs || [];
  if (!rows.length) { result.innerHTML = `<p class="error">${data.error}</p>`; return; }
  const keys = [...new Set(rows.flatMap(Object.keys))];
  const table = document.createElement("table");
  table.innerHTML = "<tr>" + keys.map(k => `<th>${k}</th>`).join("") + "</tr>";
  for (const row of rows) {
    const tr = table.insertRow();
    for (const k of keys) { const td = tr.insertCell(); td.textContent = k in row ? cell(row[k]) : "";
                            if (k === "error") td.className = "error"; }
  }
  result.replaceChildren(table);
});
</script></body></html>
"""
