"""A bounded load test of ``rnnlab serve`` on loopback: N concurrent clients for T seconds, throughput and latency.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/serve_load.py configs/imdb_lstm.yaml <ckpt> [clients] [seconds]
        [max_batch]

Starts the server in its own process (uvicorn, 127.0.0.1, a free port), waits for ``/health``, then every client
posts one of the task's ``predict_examples`` per request, back to back, for ``seconds``. ``max_batch`` 1 turns the server's batching
of concurrent requests off (results/serve_<config>_unbatched.json). Writes results/serve_<config>.json: requests/s, p50/p99 latency, errors, the command and the machine.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(config: str, ckpt: str, clients: int = 8, seconds: float = 20.0, max_batch: int = 64) -> dict:
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "serve",
            "--config",
            config,
            "--ckpt_path",
            ckpt,
            "--port",
            str(port),
            "--max_batch",
            str(max_batch),
        ],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not come up within 2 minutes")
        examples = httpx.get(f"{url}/info").json()["examples"] or ["hello"]
        latencies: list[float] = []
        errors = [0]
        stop = time.perf_counter() + seconds

        def client(k: int) -> None:
            with httpx.Client(timeout=60) as http:
                n = k
                while time.perf_counter() < stop:
                    start = time.perf_counter()
                    r = http.post(f"{url}/predict", json={"input": examples[n % len(examples)]})
                    latencies.append(time.perf_counter() - start)
                    errors[0] += r.status_code != 200
                    n += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        begin = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - begin
        stats = httpx.get(f"{url}/stats").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = sorted(1000 * x for x in latencies)
    result = {
        "command": f"python benchmarks/serve_load.py {config} {ckpt} {clients} {seconds:g} {max_batch}",
        "max_batch": max_batch,
        "config": config,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(ms),
        "errors": errors[0],
        "requests_per_s": round(len(ms) / elapsed, 1),
        "latency_ms_p50": round(statistics.median(ms), 1),
        "latency_ms_p99": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
        "batches": stats["batches"],
        "mean_batch": round(stats["inputs"] / max(stats["batches"], 1), 2),
        "largest_batch": stats["largest_batch"],
        "note": "one input per request; concurrent requests are batched by the server up to max_batch inputs "
        "(5 ms gathering); server and clients share the machine's CPU cores",
    }
    write(f"serve_{Path(config).stem}" + ("_unbatched" if max_batch == 1 else ""), result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    main(
        args[0],
        args[1],
        int(args[2]) if len(args) > 2 else 8,
        float(args[3]) if len(args) > 3 else 20.0,
        int(args[4]) if len(args) > 4 else 64,
    )
