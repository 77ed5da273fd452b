"""Run by ``test_matrix.py`` under torchrun (2 processes): a ``fast_dev_run`` of each experiment named on the command
line with ``configs/trainer/ddp.yaml`` on the CPU (gloo); each rank appends ``{"name", "status"}`` per experiment to
``<report>-<rank>.jsonl``. One launch for all experiments: the process group is set up once and reused."""

import json
import os
import sys

from rnnlab.cli import main
from test_matrix import ROOT, experiment_args  # the names come in dependency order: vectors before their readers


def run() -> None:
    report, names = sys.argv[1], sys.argv[2:]
    rank = os.environ["RANK"]
    for k, name in enumerate(names):
        # the first experiment keeps the preset's 4 loader workers per rank; the others run without: 33 fits in one
        # process, each starting and stopping persistent workers, hit a CPython 3.11 race in fork (a worker forked
        # while another thread held the interpreter's thread-list lock hung for good, 1 run in 3) -- a risk of this
        # loop, not of a training run, which starts its workers once
        workers = [] if k == 0 else ["--data.init_args.num_workers=0"]
        try:
            main(
                [
                    "fit",
                    *experiment_args(name),
                    "--config",
                    str(ROOT / "configs" / "trainer" / "ddp.yaml"),
                    "--trainer.accelerator=cpu",
                    "--trainer.devices=2",
                    "--trainer.fast_dev_run=true",
                    *workers,
                ]
            )
            status = "ok"
        except SystemExit as exit_:
            status = f"exit {exit_.code}"
        except Exception as err:  # report and go on: the test names every failing experiment
            status = f"{type(err).__name__}: {err}"
        with open(f"{report}-{rank}.jsonl", "a") as f:
            f.write(json.dumps({"name": name, "status": status}) + "\n")
        if status != "ok":  # a rank that failed alone would leave the other waiting in a collective
            break


if __name__ == "__main__":
    run()
