"""``python main.py fit|validate|test|predict --config configs/X.yaml`` (also the ``rnnlab`` console script), and
``rnnlab translate`` (interactive translation) and ``rnnlab serve`` (the HTTP server, :mod:`rnnlab.serve`)."""

from __future__ import annotations

import errno
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from rnnlab.callbacks import (
    ConfusionMatrix,
    GenerationSamples,
    LastCheckpoint,
    PredictionWriter,
    RunSummary,
    ThroughputMonitor,
    TranslationSamples,
    find_last_checkpoint,
)
from rnnlab.compat import CheckpointHparamsHook
from rnnlab.data.base import SequenceDataModule
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule
from rnnlab.runs import run_dir

# Quiet: Lightning's advertising tip and a deprecation inside Lightning itself, which no user can act on; and the
# notice that a checkpoint's ModelCheckpoint folder differs from this run's, which is what `test`/`predict` from a
# checkpoint always do (they write into a new folder, or none).
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r"The dirpath has changed from")


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())

DESCRIPTION = (
    "rnnlab: recurrent sequence models on real data. Train, validate, test and predict with the subcommands below "
    "(each with --config configs/<experiment>.yaml). Three more commands take --config X --ckpt_path Y of a trained "
    "model: 'rnnlab serve' (an HTTP server and a page to try it; --host, --port, --max_batch), 'rnnlab translate' "
    "(interactive translation from stdin; --beam_size, --nbest) and 'rnnlab export' (an ONNX graph; --format onnx, "
    "--output). See docs/serving.md."
)

OPTIONAL_LINKS = (
    "char_vocab_size",
    "unit_features",
    "num_features",
    "horizon",
    "tgt_vocab_size",
    "bos_id",
    "eos_id",
    "in_channels",
    "image_size",
)  # taken by some models only


def _import(class_path: str):
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _init_parameters(class_path: str) -> set[str]:
    import inspect

    cls = _import(class_path)
    return set(inspect.signature(cls.__init__).parameters) if cls is not None else set()


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's own folder (next to ``checkpoints/``, so a second
    run never collides with the first) and sends it to the logger (the W&B run config, ``hparams.yaml``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if stage == "predict":  # predict writes its output file only: no run folder, no logged config
            return
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config, str(folder / self.config_filename), skip_none=False, overwrite=True, multifile=self.multifile
        )
        if trainer.logger is not None:
            trainer.logger.log_hyperparams(self.config.as_dict())


class RnnlabParser(LightningArgumentParser):
    """A config or command-line mistake is reported first (``error: ...`` with the key and what was expected),
    followed by a one-line pointer to ``--help`` -- not below a hundred lines of usage text."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"error: {_condense(message)}\n(all options: {prog} --help)\n")
        sys.exit(2)


def _condense(message: str) -> str:
    """jsonargparse's message for a bad ``model``/``data`` argument lists every Union subtype it tried (the class and
    None); keep the part about the class: ``model (rnnlab.models.SequenceClassifier): Option 'hiden_size' is not
    accepted``."""
    import re

    m = re.search(
        r'Parser key "(\w+)":.*?Problem with given class_path \'([\w.]+)\':\n(.*?)\n\s*- Expected a '
        r"<class 'NoneType'>",
        message,
        re.S,
    )
    if not m:
        return message.strip()
    detail = " ".join(line.strip() for line in m.group(3).splitlines() if line.strip())
    optional = re.search(  # a bad value of an optional field (``rnn.cell``): what it expected and what it got
        r'Parser key "([\w.]+)":\s*Does not validate against any of the Union subtypes\s*Subtypes: \[.*?\]\s*'
        r"Errors:\s*- (Expected a [^\n]+?)\s*- Expected a <class 'NoneType'>\s*Given value type: [^\n]+\s*"
        r"Given value: ([^\n]+)",
        m.group(3) + message[m.end(3) :],
    )
    if optional:
        detail = f'Parser key "{optional.group(1)}": {optional.group(2)}. Got value: {optional.group(3)}'
    return f"{m.group(1)} ({m.group(2)}): {detail}"


def rnn_from_flat(hparams: dict) -> dict:
    """The ``rnn`` settings of a checkpoint written before they were one spec: its flat ``cell``, ``hidden_size``, ...
    (the layer count was ``encoder_layers`` in a Seq2Seq, ``decoder_layers`` in an ImageCaptioner)."""
    layers = hparams.get("encoder_layers", hparams.get("decoder_layers", hparams.get("num_layers")))
    flat = {k: hparams[k] for k in ("cell", "impl", "hidden_size", "bidirectional", "packed") if k in hparams}
    return {**flat, **({"num_layers": layers} if layers is not None else {})}


class RnnlabCLI(CheckpointHparamsHook, LightningCLI):
    """LightningCLI with rnnlab's defaults: DataModule properties linked into the model, checkpointing and early
    stopping on ``val/acc`` (override with ``--checkpoint.monitor`` etc.), a prediction writer, a throughput monitor,
    and ``--ckpt_path`` also supplying the vocabulary (``data.vocab_from``) for validate/test/predict."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_callback", LoggerSaveConfigCallback)
        kwargs.setdefault("parser_class", RnnlabParser)
        kwargs.setdefault(
            "trainer_defaults",
            {
                "default_root_dir": "runs",
                "use_distributed_sampler": False,  # LengthBucketSampler shards by rank itself
                "callbacks": [LearningRateMonitor(logging_interval="epoch")],
            },
        )
        kwargs.setdefault("auto_configure_optimizers", True)
        kwargs.setdefault("parser_kwargs", {"description": DESCRIPTION})
        super().__init__(
            RnnlabModule, SequenceDataModule, *args, subclass_mode_model=True, subclass_mode_data=True, **kwargs
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,
                "checkpoint.filename": "epoch{epoch}-step{step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {"early_stopping.monitor": "val/acc", "early_stopping.mode": "max", "early_stopping.patience": 3}
        )
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
        parser.add_lightning_class_args(RunSummary, "run_summary")
        parser.add_lightning_class_args(ConfusionMatrix, "confusion_matrix")
        parser.add_lightning_class_args(GenerationSamples, "samples")
        parser.add_lightning_class_args(TranslationSamples, "translation_samples")
        for prop in ("vocab_size", "num_classes", "pad_id", *OPTIONAL_LINKS):
            parser.link_arguments(f"data.{prop}", f"model.init_args.{prop}", apply_on="instantiate")

    def apply_checkpoint_hparams(self) -> bool:
        """As LightningCLI's (the checkpoint's hyperparameters replace the config's, so the architecture matches the
        weights), except for a model's ``inference_hparams`` (e.g. sampling temperature): there the command line
        wins. Keys a model does not take (links meant for other models) are dropped. False: a checkpoint without a
        class path, for Lightning's own handling."""
        if not self.config.get("subcommand"):
            return True
        sub = self.config[self.config.subcommand]
        if sub.get("ckpt_path") == "last" and self.config.subcommand == "fit":
            sub.ckpt_path = self._resolve_last(sub)
        ckpt_path = sub.get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return True
        import torch

        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        self._saved_logger = checkpoint.get("rnnlab_logger") or {}  # the W&B run a resumed fit continues
        hparams = checkpoint.get("hyper_parameters", {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if not hparams or class_path is None:
            return False
        cls = _import(class_path)
        accepted = _init_parameters(class_path)
        if "rnn" in accepted and "rnn" not in hparams:  # checkpoints from before the rnn settings were one spec
            hparams["rnn"] = rnn_from_flat(hparams)
        keep = {k: v for k, v in hparams.items() if k in accepted and k not in getattr(cls, "inference_hparams", ())}
        model = {"class_path": class_path, "dict_kwargs": keep}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": model}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise
        return True

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        # data properties linked into models that do not take them (a classifier has no character encoder) come
        # back from a checkpoint's hyperparameters as unexpected keyword arguments: drop them
        extra = cfg.model.get("dict_kwargs") or {}
        if extra:
            accepted = _init_parameters(cfg.model.class_path)
            for key in [k for k in extra if k in OPTIONAL_LINKS and k not in accepted]:
                del extra[key]
        if self.subcommand == "predict":  # no metrics to log: no new version folder per predict call
            cfg.trainer.logger = False
        ckpt = cfg.get("ckpt_path")
        if self.subcommand == "fit" and ckpt and Path(str(ckpt)).is_file():
            _continue_logger_run(cfg.trainer.get("logger"), str(ckpt), getattr(self, "_saved_logger", {}))
        init = cfg.data.init_args
        if ckpt and Path(str(ckpt)).is_file() and not init.get("vocab_from"):
            init.vocab_from = str(ckpt)

    @staticmethod
    def _resolve_last(cfg) -> str | None:
        """``--ckpt_path last``: the newest ``last.ckpt`` of this experiment (``<save_dir>/<name>/*/checkpoints``);
        the resumed run writes to a new version folder, so nothing of the interrupted one is overwritten. None
        (start from scratch, as a first SLURM job does) when there is none."""
        from lightning.pytorch.utilities import rank_zero_info

        logger = cfg.trainer.get("logger")
        args = logger.get("init_args") if hasattr(logger, "get") else None
        root = Path(cfg.trainer.get("default_root_dir") or "runs")
        if args is not None and args.get("save_dir"):
            root = Path(str(args.get("save_dir"))) / str(args.get("name") or "lightning_logs")
        found = find_last_checkpoint(root)
        rank_zero_info(
            f"--ckpt_path last: resuming from {found}"
            if found
            else f"--ckpt_path last: no last.ckpt under {root}/*/checkpoints/, starting from scratch"
        )
        return str(found) if found else None


def _continue_logger_run(logger, ckpt: str, saved: dict) -> None:
    """A fit resumed from a checkpoint of a W&B run continues that run: its id is kept in every checkpoint
    (``rnnlab_logger``, read with the checkpoint's hyperparameters) and becomes the logger's ``id`` unless one is
    given."""
    args = logger.get("init_args") if hasattr(logger, "get") else None
    if args is None or "Wandb" not in str(logger.get("class_path")) or args.get("id") or args.get("version"):
        return
    if saved.get("class", "").startswith("Wandb") and saved.get("version"):
        args.id = saved["version"]
        from lightning.pytorch.utilities import rank_zero_info

        rank_zero_info(f"W&B: continuing run {args.id} of {ckpt}")


def _rnnlab_error(err: BaseException) -> RnnlabError | None:
    """The RnnlabError behind ``err``: jsonargparse wraps one raised by a model's or datamodule's ``__init__`` (e.g.
    an invalid combination of arguments) in a ValueError of its own."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, RnnlabError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _worker_message(message: str) -> str:
    """A DataLoader worker's error arrives as ``Caught RnnlabError in DataLoader worker process 0. Original
    Traceback ...``: keep the message it ends with."""
    marker = "rnnlab.errors.RnnlabError: "
    if message.startswith("Caught ") and marker in message:
        return message.rsplit(marker, 1)[1].strip()
    return message


def _split_options(args: list[str], options: dict) -> tuple[list[str], dict]:
    """Take ``options`` (``--name value`` or ``--name=value``, defaults given) out of ``args``; the rest goes to the
    CLI parser."""
    rest, found, it = [], dict(options), iter(args)
    for arg in it:
        key, eq, value = arg.partition("=")
        if key in found:
            found[key] = value if eq else next(it, None)
        else:
            rest.append(arg)
    return rest, found


def load_for_inference(args: list[str], ckpt: Optional[str]):
    """``(model, datamodule, cli)`` for serving a checkpoint: the config and overrides in ``args``, the model with
    the checkpoint's hyperparameters and weights, the DataModule with the checkpoint's vocabulary, set up for
    ``predict`` (no training data needed)."""
    if not ckpt or not Path(ckpt).is_file():
        raise RnnlabError(f"give --ckpt_path <a checkpoint written by fit>, got {ckpt!r}")
    cli = RnnlabCLI(args=[*args, f"--data.init_args.vocab_from={ckpt}"], run=False)
    model = type(cli.model).load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    dm = cli.datamodule
    dm.setup("predict")
    model.bind_task(dm.describe_task(), "predict")
    return model, dm, cli


def translate(args: list[str], lines=None, out=None) -> None:
    """``rnnlab translate --config X --ckpt_path Y [--beam_size 5] [--nbest N] [other overrides]``: interactive
    translation, as JoeyNMT's ``translate`` mode: one source sentence a line from stdin, its translation on stdout
    (with ``--nbest N``: the N best, one ``rank<TAB>score<TAB>translation`` line each, then an empty line). A line
    that cannot be read gets ``error: ...`` and the next line is read."""
    import torch

    lines = sys.stdin if lines is None else lines
    out = sys.stdout if out is None else out
    rest, options = _split_options(args, {"--ckpt_path": None, "--beam_size": "5", "--nbest": "1"})
    try:
        beam, nbest = int(options["--beam_size"]), int(options["--nbest"])
    except (TypeError, ValueError):
        raise RnnlabError("--beam_size and --nbest take whole numbers") from None
    if not 1 <= nbest <= max(beam, 1):
        raise RnnlabError(f"--nbest must be between 1 and --beam_size ({beam}), got {nbest}")
    model, dm, _ = load_for_inference(rest, options["--ckpt_path"])
    if not hasattr(model, "beam_search"):
        raise RnnlabError(f"translate needs a translation config (Seq2Seq); {type(model).__name__} does not translate")
    for line in lines:
        item = dm.encode_predict([line.rstrip("\n")])[0]
        if "tokens" not in item:
            print(f"error: {item['error']}", file=out, flush=True)
            continue
        batch = dm.collate([(item["tokens"], None, 0)])
        with torch.no_grad():
            ids, scores = model.beam_search(batch.tokens.long(), batch.lengths, max(beam, 1))
        if nbest == 1:
            print(dm.decode_target(ids[0, 0].tolist()), file=out, flush=True)
            continue
        for k in range(nbest):
            print(f"{k + 1}\t{float(scores[0, k]):.4f}\t{dm.decode_target(ids[0, k].tolist())}", file=out)
        print(file=out, flush=True)


def serve_app(args: list[str]):
    """The FastAPI app of ``rnnlab serve`` (see :mod:`rnnlab.serve`) and its ``(host, port)``."""
    from rnnlab import serve

    defaults = {"--ckpt_path": None, "--host": "127.0.0.1", "--port": "8000", "--max_batch": str(serve.MAX_INPUTS)}
    rest, options = _split_options(args, defaults)
    try:
        port, max_batch = int(options["--port"]), int(options["--max_batch"])
    except (TypeError, ValueError):
        raise RnnlabError(
            f"--port and --max_batch take whole numbers, got {options['--port']!r}, {options['--max_batch']!r}"
        ) from None
    if max_batch < 1:
        raise RnnlabError(f"--max_batch must be at least 1 (1: no batching of concurrent requests), got {max_batch}")
    model, dm, cli = load_for_inference(rest, options["--ckpt_path"])
    hparams = {k: v for k, v in dict(model.hparams).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
    info = {
        "task": type(model).__name__,
        "data": type(dm).__name__,
        "labels": list(getattr(dm, "labels", None) or []),
        "vocab_size": len(dm.vocab) if getattr(dm, "vocab", None) is not None else None,
        "checkpoint": str(options["--ckpt_path"]),
        "hparams": hparams,
        "config": cli.parser.dump(cli.config, skip_none=False),
        "examples": list(getattr(dm, "predict_examples", ())),
    }
    return serve.create_app(model, dm, info, max_batch=max_batch), options["--host"], port


def export(args: list[str]) -> Path:
    """``rnnlab export --config X --ckpt_path Y [--format onnx] [--output model.onnx]``: the checkpoint as an ONNX
    graph with dynamic batch and length axes, and its description beside it (see :mod:`rnnlab.export`). The graph is
    checked against PyTorch with onnxruntime on a batch of the model's own ``predict`` examples."""
    from rnnlab import export as onnx_export

    rest, options = _split_options(args, {"--ckpt_path": None, "--format": "onnx", "--output": None})
    if options["--format"] not in onnx_export.FORMATS:
        raise RnnlabError(f"--format must be one of {', '.join(onnx_export.FORMATS)}, got {options['--format']!r}")
    model, dm, _ = load_for_inference(rest, options["--ckpt_path"])
    output = Path(options["--output"] or Path(options["--ckpt_path"]).with_suffix(".onnx"))
    dm.predict_texts, dm.predict_file = list(getattr(dm, "predict_examples", ())) or ["a"], None
    batch = next(iter(dm.predict_dataloader()))  # the task's own examples, batched as predict batches them
    example = {"tokens": batch.tokens, "lengths": batch.lengths}
    vocab = getattr(dm, "vocab", None)
    sidecar = {
        "data": type(dm).__name__,
        "labels": list(getattr(dm, "labels", None) or []),
        "vocabulary": vocab.tokens() if vocab is not None and hasattr(vocab, "tokens") else None,
        "pad_id": model.hparams.get("pad_id", 0),
        "checkpoint": str(options["--ckpt_path"]),
    }
    path = onnx_export.export_onnx(model, example, output, sidecar)
    try:
        diff = onnx_export.verify(model, example, path)
        print(f"wrote {path} and {path}.json; onnxruntime matches PyTorch to {diff:.1e}", file=sys.stderr)
    except RnnlabError as err:  # onnxruntime is optional: the graph is written all the same
        print(f"wrote {path} and {path}.json; not checked ({err})", file=sys.stderr)
    return path


def main(args=None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["translate"]:
            return translate(argv[1:])
        if argv[:1] == ["export"]:
            export(argv[1:])
            return None
        if argv[:1] == ["serve"]:
            from rnnlab.serve import run

            return run(*serve_app(argv[1:]))
        RnnlabCLI(args=args)
    except (RnnlabError, ValueError) as err:
        cause = _rnnlab_error(err)
        if cause is None:
            raise
        print(f"error: {_worker_message(str(cause))}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(
            f"error: no space left on the device while writing {err.filename or 'a file'} ({err}). Checkpoints "
            f"are written to a temporary file and renamed, so the previous one is intact: free some space and "
            f"resume with --ckpt_path last",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
