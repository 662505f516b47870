"""The training loop of `netdsl train`: a shaped net and a dataset in, a trained model out.

The last stage of the training backend. `train` builds the training graph
(`backends/train_graph.py`), has onnxruntime-training 1.19.2 derive its gradient graph, then
per batch runs forward and backward there and the update in numpy (`backends/sgd.py`) on views
of onnxruntime's own parameter and gradient buffers (no copies). Batch-norm running statistics
follow each batch's mean and variance (PyTorch's convention: running = (1 - m) running + m batch,
the variance unbiased). After each epoch it evaluates the inference model
(`to_onnx(mode="inference")` with the current weights and running statistics) in an onnxruntime
InferenceSession, so the accuracy reported is the exported model's, and writes the run's files
(`backends/train_files.py`). Data order, augmentation and dropout masks are drawn from
generators seeded by (seed, epoch, step): a run resumed from a checkpoint ends exactly where an
uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.backends.data.sources import Dataset
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import files
from netdsl.backends.train import optim as sgd
from netdsl.backends.train.files import Checkpoint, Progress
from netdsl.backends.train.graph import LOGITS, inference_model, training_graph, with_logits
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

RESUMABLE = ("epochs", "threads", "checkpoint_every", "eval_batch")  # may change on resume


@dataclass(frozen=True)
class Config:
    """A run's settings (the CLI's options; see docs/training.md)."""

    epochs: int = 20
    batch: int = 32
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    init: str = "auto"
    fit: str = "auto"  # how images met the net's input size (backends/data.py's `fit`)
    shift: int = 2  # augmentation: random translations of up to this many pixels
    threads: int = 0  # onnxruntime's intra-op threads; 0: one per core
    checkpoint_every: int = 200  # steps; 0: only at the end of each epoch
    eval_batch: int = 500
    freeze: tuple[str, ...] = ()  # fnmatch patterns of tensors kept fixed
    init_from: str | None = None
    skip_mismatched: bool = False


Report = Callable[[str, dict[str, Any]], None]  # kind ("note", "step", "epoch"), values


def train(
    net: ShapedNet,
    data: Dataset,
    config: Config,
    out: Path,
    *,
    resume: bool = False,
    report: Report | None = None,
    data_spec: str = "",
) -> list[dict[str, float]]:
    """Train `net` on `data` (fitted to it: `backends/data.py`), writing to `out`; with
    `resume`, continue the run saved there (`config` must be its settings but for the
    RESUMABLE ones: `saved_config` reads them). Returns the metrics of every epoch."""
    say = report or (lambda kind, values: None)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state = files.load_checkpoint(out, net)
        check_resumable(saved_config(state), config)
        data_spec = state.meta.get("data", data_spec)
    else:
        state = Checkpoint(initial_params(net, config, say), {}, Progress(), {})
    state.meta = {"config": {**asdict(config), "freeze": list(config.freeze)}, "data": data_spec}
    optimizer = sgd.make(
        config.optimizer, momentum=config.momentum, weight_decay=config.weight_decay
    )
    optimizer.load(state.optimizer)
    with tempfile.TemporaryDirectory(prefix="netdsl-train-") as work:
        run = Run(net, data, config, out, state.params, Path(work), say)
        run.loop(optimizer, state)
    history: list[dict[str, float]] = state.progress.history
    files.write_metrics(out, history)
    files.plot_curves(history, out / files.CURVES, net.name)
    return history


def saved_config(state: Checkpoint) -> Config:
    values = dict(state.meta["config"])
    return Config(**{**values, "freeze": tuple(values["freeze"])})


def check_resumable(saved: Config, config: Config) -> None:
    """A resumed run keeps its settings; only the RESUMABLE ones may change."""
    changed = [
        k for k, v in asdict(config).items() if k not in RESUMABLE and v != getattr(saved, k)
    ]
    if changed:
        shown = ", ".join(f"{k} {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise NetError(
            f"a resumed run keeps its settings, but these changed: {shown}",
            None,
            [f"only {', '.join(RESUMABLE)} may change"],
        )


def initial_params(net: ShapedNet, config: Config, say: Report) -> wt.Params:
    params = wt.initialise(net, config.init, config.seed)
    if config.init_from:
        params, loaded = wt.merge(params, config.init_from, skip_mismatched=config.skip_mismatched)
        say("note", {"text": f"--init-from: {loaded.describe()}"})
    return params


def trainable(net: ShapedNet, patterns: tuple[str, ...]) -> list[str]:
    """The trainable tensors that no --freeze pattern matches."""
    names = [f"{n.name}.{w.name}" for n in net.nodes for w in n.weights if w.trainable]
    every = [f"{n.name}.{w.name}" for n in net.nodes for w in n.weights]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in every):
            raise NetError(
                f"--freeze '{pattern}' matches no tensor of {net.name}",
                None,
                [f"its tensors are named like {', '.join(every[:4])}"],
            )
    left = [n for n in names if not _matches(n, patterns)]
    if not left:
        raise NetError(f"--freeze leaves nothing of {net.name} to train")
    return left


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Run:
    """One run: the onnxruntime module, the weights it holds, the model it exports."""

    def __init__(
        self,
        net: ShapedNet,
        data: Dataset,
        config: Config,
        out: Path,
        params: wt.Params,
        work: Path,
        say: Report,
    ) -> None:
        from onnxruntime.training import artifacts
        from onnxruntime.training.api import CheckpointState, Module

        self.net, self.data, self.config, self.out, self.say = net, data, config, out, say
        self.graph = training_graph(net, params)
        self.trainable = trainable(net, config.freeze)
        inputs = {t.name for t in self.graph.model.graph.initializer}
        frozen = [n for n in params if n in inputs and n not in self.trainable]
        outputs = [LOGITS] + [name for s in self.graph.stats for name in (s.mean, s.var)]
        with _quiet_stderr():  # the gradient builder logs every graph pass at info level
            artifacts.generate_artifacts(
                self.graph.model,
                requires_grad=self.trainable,
                frozen_params=frozen,
                loss=artifacts.LossType.CrossEntropyLoss,
                artifact_directory=work,
                additional_output_names=outputs,
                loss_input_names=[LOGITS],
            )
        self.state = CheckpointState.load_checkpoint(str(work / "checkpoint"))
        self.module = Module(
            str(work / "training_model.onnx"),
            self.state,
            session_options=session_options(config.threads),
        )
        self.params = dict(params)
        for name in self.trainable:  # from now on, the very arrays onnxruntime reads
            self.params[name] = _buffer(self.state, name, "data")
        self.slots: list[sgd.Slot] = []  # (name, weights, gradient), after the first step

    def loop(self, optimizer: sgd.Optimizer, state: Checkpoint) -> None:
        c, n, p = self.config, len(self.data.x_train), state.progress
        steps = math.ceil(n / c.batch)
        schedule = sgd.Schedule(c.schedule, c.lr, c.epochs, steps, c.step_size, c.gamma)
        for epoch in range(p.epoch, c.epochs):
            order = np.random.default_rng([c.seed, epoch]).permutation(n)
            start = time.perf_counter() - p.seconds
            for step in range(p.step, steps):
                batch = order[step * c.batch : (step + 1) * c.batch]
                if len(batch) > 1 or not self.graph.stats:  # one image has no batch variance
                    self.step(optimizer, batch, epoch, step, schedule.at(epoch, step), p)
                p.step, p.global_step = step + 1, p.global_step + 1
                p.seconds = time.perf_counter() - start
                if c.checkpoint_every and p.global_step % c.checkpoint_every == 0:
                    self.save(optimizer, state)
                self.say(
                    "step",
                    {
                        "epoch": epoch + 1,
                        "epochs": c.epochs,
                        "step": step + 1,
                        "steps": steps,
                        **_running(p),
                        "images_per_second": p.seen / max(p.seconds, 1e-9),
                    },
                )
            record = {"epoch": epoch + 1, **_running(p)}
            record["test_loss"], record["test_accuracy"] = self.evaluate()
            record["seconds"] = round(time.perf_counter() - start, 3)
            record["lr"] = schedule.at(epoch, steps - 1)
            record["images_per_second"] = round(p.seen / max(p.seconds, 1e-9), 1)
            p.history.append(record)
            p.next_epoch()
            self.export(record, state.meta["data"])
            self.save(optimizer, state)
            files.write_metrics(self.out, p.history)
            self.say("epoch", {"epochs": c.epochs, **record})

    def step(
        self,
        optimizer: sgd.Optimizer,
        batch: np.ndarray,
        epoch: int,
        step: int,
        lr: float,
        p: Progress,
    ) -> None:
        c = self.config
        x, y = self.data.x_train[batch], self.data.y_train[batch]
        if c.shift:
            x = shifted(x, c.shift, np.random.default_rng([c.seed, epoch, step, 2]))
        loss, logits, *stats = self.module(x, *self.masks(len(batch), epoch, step), y)
        if not math.isfinite(float(loss)):
            raise NetError(
                f"loss became {float(loss)} at epoch {epoch + 1} step {step + 1}; "
                f"try a lower --lr (it was {lr:g})",
                None,
                [f"the last good checkpoint is kept: {self.out / files.CHECKPOINT}"],
            )
        if not self.slots:  # onnxruntime allocates the gradients in the first step
            self.slots = [
                (n, self.params[n], _buffer(self.state, n, "grad")) for n in self.trainable
            ]
        optimizer.step(self.slots, lr)
        self.module.lazy_reset_grad()
        self.update_statistics(stats, len(batch))
        p.loss_sum += float(loss) * len(batch)
        p.correct += int((logits.argmax(axis=1) == y).sum())
        p.seen += len(batch)

    def masks(self, size: int, epoch: int, step: int) -> list[np.ndarray]:
        """Dropout masks: 0 or 1/(1-p), from a generator seeded by the position."""
        rng = np.random.default_rng([self.config.seed, epoch, step, 1])
        masks = []
        for m in self.graph.masks:
            keep = rng.random((size, *m.shape), dtype=np.float32) >= np.float32(m.p)
            masks.append(keep * np.float32(1.0 / (1.0 - m.p) if m.p < 1 else 0.0))
        return masks

    def update_statistics(self, stats: list[np.ndarray], size: int) -> None:
        for s, mean, var in zip(self.graph.stats, stats[::2], stats[1::2], strict=True):
            count = size * s.per_image
            unbiased = var * np.float32(count / max(count - 1, 1))
            for name, batch in ((f"{s.layer}.mean", mean), (f"{s.layer}.var", unbiased)):
                if not _matches(name, self.config.freeze):
                    running = self.params[name]
                    self.params[name] = (
                        np.float32(1 - s.momentum) * running + np.float32(s.momentum) * batch
                    )

    def evaluate(self) -> tuple[float, float]:
        """Loss and accuracy of the inference model on the test split."""
        import onnxruntime

        model, logits = with_logits(inference_model(self.net, self.params))
        sess = onnxruntime.InferenceSession(
            model.SerializeToString(),
            session_options(self.config.threads),
            providers=["CPUExecutionProvider"],
        )
        x, y, size = self.data.x_test, self.data.y_test, self.config.eval_batch
        loss, correct = 0.0, 0
        for i in range(0, len(x), size):
            scores, z = sess.run(["output", logits], {"input": x[i : i + size]})
            correct += int((scores.argmax(axis=1) == y[i : i + size]).sum())
            loss += float(cross_entropy(z, y[i : i + size]).sum())
        return loss / len(x), correct / len(x)

    def export(self, record: dict[str, float], data_spec: str) -> None:
        meta = {
            "trained": f"netdsl train: {record['epoch']} epochs on {data_spec or 'data'}, "
            f"test accuracy {record['test_accuracy']:.4f}",
            "preprocessing": "N×C×H×W float32, pixels scaled to [0, 1]",
        }
        model = inference_model(self.net, self.params, meta)
        files.atomic_write(self.out / files.MODEL, model.SerializeToString())

    def save(self, optimizer: sgd.Optimizer, state: Checkpoint) -> None:
        for name in self.trainable:
            if not np.isfinite(self.params[name]).all():
                raise NetError(
                    f"the weights of {name} became infinite or nan at epoch "
                    f"{state.progress.epoch + 1}; try a lower --lr",
                    None,
                    [f"the last good checkpoint is kept: {self.out / files.CHECKPOINT}"],
                )
        state.params, state.optimizer = self.params, optimizer.state()
        files.save_checkpoint(self.out, self.net, state)


def shifted(x: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by up to `most` pixels each way, zeros filling in."""
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2 * most, w + 2 * most), dtype=x.dtype)
    padded[:, :, most : most + h, most : most + w] = x
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(0, 2 * most + 1, size=(n, 2)).tolist()):
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    loss: np.ndarray = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]
    return loss


def session_options(threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _running(p: Progress) -> dict[str, float]:
    seen = max(p.seen, 1)
    return {"train_loss": p.loss_sum / seen, "train_accuracy": p.correct / seen}


def _buffer(state: Any, name: str, kind: str) -> np.ndarray:
    """onnxruntime's own buffer of a parameter ("data") or its gradient ("grad"), as a numpy
    array that aliases it: writing it writes the parameter. Checked, since the docs promise
    only an array."""
    array: np.ndarray | None = getattr(state.parameters[name], kind)
    if (
        array is None
        or array.ctypes.data != getattr(state._state.get_parameter(name), kind).data_ptr()
    ):
        raise RuntimeError(
            f"onnxruntime gave a copy of {name}'s {kind}, not its buffer; "
            "netdsl train needs onnxruntime-training 1.19.2"
        )
    return array


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2, where onnxruntime's C++ logger writes, for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
