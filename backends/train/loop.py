"""The training loop of `netdsl train`: a shaped net and a dataset in, a trained model out.

The last stage of the training backend. `train` takes the output folder's lock (`files.py`: one
run per folder), builds the training graph (`graph.py`), has onnxruntime-training 1.19.2 derive
its gradient graph, then per batch runs forward and backward there and the update in numpy
(`optim.py`) on views of onnxruntime's own parameter and gradient buffers (no copies).
Batch-norm running statistics follow each batch's mean and variance (PyTorch's convention:
running = (1 - m) running + m batch, the variance unbiased). After each epoch it evaluates the
inference model (`to_onnx(mode="inference")` with the current weights and running statistics)
in an onnxruntime InferenceSession, so the accuracy reported is the exported model's, and
writes the run's files (`files.py`). Data order, augmentation and dropout masks are drawn from
generators seeded by (seed, epoch, step): a run resumed from a checkpoint ends exactly where an
uninterrupted one does; a resumed run refuses other data (its fingerprint is in the
checkpoint), another net or changed settings (`settings.py`). Divergence stops a run
(`Diverged`): a loss that is not finite, or, from the `WARMUP`th step on, a mean loss over the
last `WINDOW` steps above `BLOWUP` times the loss it started from (that of the first step, or
ln(classes), a uniform guess's, if larger). A net of several inputs trains on one array per
input (`Dataset.more`), fed as they are (no normalisation or augmentation), with the loss and
the test accuracy on its chosen output (`Config.loss_output`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from netdsl.backends.data import atomic
from netdsl.backends.data.sources import Dataset, differences
from netdsl.backends.data.sources import fingerprint as data_fingerprint
from netdsl.backends.onnx import names as twins
from netdsl.backends.onnx import weights as wt
from netdsl.backends.train import files, rates
from netdsl.backends.train import optim as sgd
from netdsl.backends.train import preprocess as pre
from netdsl.backends.train import report as rep
from netdsl.backends.train.files import Checkpoint, Progress
from netdsl.backends.train.graph import (
    LOGITS,
    chosen_output,
    inference_model,
    training_graph,
    with_logits,
)
from netdsl.backends.train.settings import RESUMABLE as RESUMABLE  # re-exported
from netdsl.backends.train.settings import Config, check_resumable, saved_config
from netdsl.errors import Diverged
from netdsl.shapes import ShapedNet
from netdsl.source import NetError

CONVOLUTIONS = ("conv", "dwconv", "deconv")  # ops for which the automatic shift is on
WARMUP, WINDOW = 5, 10  # steps before the rule applies; steps of the running mean
BLOWUP = 10.0  # the running mean may not exceed this many times the starting loss


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
    """Train `net` on `data` (fitted to it: `backends/data/sources.py`), writing to `out`; with
    `resume`, continue the run saved there (`config` must be its settings but for the
    RESUMABLE ones: `saved_config` reads them). Returns the metrics of every epoch."""
    say = report or (lambda kind, values: None)
    with files.hold(out) as notes:  # nothing in `out` changes before the lock is ours
        for note in notes:
            say("note", {"text": f"note: {note}"})
        prints = data_fingerprint(data)
        if resume:
            state = files.load_checkpoint(out, net)
            check_resumable(saved_config(state), config)
            check_same_data(state.meta, prints, out)
            data_spec = state.meta.get("data", data_spec)
        else:
            state = Checkpoint(initial_params(net, config, say), {}, Progress(), {})
        state.meta = {
            "config": settings_json(config),
            "data": data_spec,
            "data_fingerprint": prints,
        }
        # several inputs are fed as they are: one normalisation travels with one image input
        normalise = config.normalise and not data.names
        if config.normalise and data.names:
            say(
                "note",
                {
                    "text": f"note: inputs {', '.join(data.names)} fed as given "
                    "(no normalisation or augmentation for a net of several inputs)"
                },
            )
        norm = pre.normalisation(data.x_train, config.mean, config.std, normalise)
        files.write_config(out, state.meta["config"], data_spec, data.classes)
        optimizer = sgd.make(
            config.optimizer, momentum=config.momentum, weight_decay=config.weight_decay
        )
        optimizer.load(state.optimizer)
        work = files.work_folder(out)
        try:
            make: type[Run] = Run
            if config.engine == "onnx":  # the compiler's own training step: native.py
                from netdsl.backends.train.native import NativeRun as make
            prepared, engine_config = prepare(net, data, config, norm)
            run = make(net, prepared, engine_config, out, state.params, work, say)
            run.norm, run.settings, run.classes = norm, config, data.classes
            run.mults = rates.multipliers(config.lr_mult, run.trainable)
            if run.mults and hasattr(run, "step_model"):  # the native engine: in its graph
                rates.scale_model(run.step_model.model, run.step_model.updates, run.mults)
            run.loop(optimizer, state)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        history: list[dict[str, float]] = state.progress.history
        files.write_metrics(out, history)
        files.plot_curves(history, out / files.CURVES, net.name)
    return history


def settings_json(config: Config) -> dict[str, Any]:
    values = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def prepare(
    net: ShapedNet, data: Dataset, config: Config, norm: pre.Normalisation
) -> tuple[Dataset, Config]:
    """The data the engine sees (normalised; training images augmented as they are drawn) and
    the settings it gets (augmentation done here, so its own shift is off). The automatic
    shift (-1) moves images only for a net with convolutions, which share weights across
    positions; a dense net would have to learn each position anew (bench/defaults.py)."""
    if data.names:  # several inputs: as they are
        return data, replace(config, shift=0)
    fill = (0 - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
    convolutional = any(n.op in CONVOLUTIONS for n in net.nodes)
    shift = (None if convolutional else 0) if config.shift < 0 else config.shift
    augment = pre.Augmenter(data.shape, shift, config.flip, fill)
    x_train = pre.Drawn(norm.apply(data.x_train), augment, config.seed)
    x_test = norm.apply(data.x_test)
    prepared = replace(data, x_train=cast(np.ndarray, x_train), x_test=x_test)
    return prepared, replace(config, shift=0)


def check_same_data(meta: dict[str, Any], prints: dict[str, Any], out: Path) -> None:
    """A resumed run trains on the data it started on (its fingerprint is in the checkpoint)."""
    saved = meta.get("data_fingerprint")
    if not isinstance(saved, dict):
        return  # a checkpoint from before fingerprints: nothing to compare
    changed = differences(saved, prints)
    if changed:
        raise NetError(
            f"the run in '{out}' trained on {saved.get('name', meta.get('data', 'other data'))}; "
            f"this data ({prints['name']}) differs: {'; '.join(changed)}",
            None,
            ["a resumed run continues on its own data; start a new run for other data"],
        )


def initial_params(net: ShapedNet, config: Config, say: Report) -> wt.Params:
    wt.check_size(net)  # before anything is allocated
    params = wt.initialise(net, config.init, config.seed)
    if config.init_from:
        tensors, where = twins.given(net, config.init_from, wt.shapes(net))  # torchvision's too
        params, loaded = wt.merge(
            params, tensors, skip_mismatched=config.skip_mismatched, where=where
        )
        say("note", {"text": f"initial weights: {loaded.describe()}"})
    return params


def trainable(net: ShapedNet, patterns: tuple[str, ...]) -> list[str]:
    """The trainable tensors that no freeze pattern matches."""
    names = [f"{n.name}.{w.name}" for n in net.nodes for w in n.weights if w.trainable]
    every = [f"{n.name}.{w.name}" for n in net.nodes for w in n.weights]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in every):
            raise NetError(
                f"freeze pattern '{pattern}' matches no tensor of {net.name}",
                None,
                [f"its tensors are named like {', '.join(every[:4])}"],
            )
    left = [n for n in names if not _matches(n, patterns)]
    if not left:
        raise NetError(f"the freeze patterns leave nothing of {net.name} to train")
    return left


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Run:
    """One run: the onnxruntime module, the weights it holds, the model it exports."""

    norm: pre.Normalisation | None = None  # the input normalisation (`train` sets these three)
    settings: Config = Config()  # the run's own settings (`config` is the engine's)
    classes: tuple[str, ...] = ()
    mults: dict[str, float] = {}  # noqa: RUF012  # per-tensor learning-rate multipliers
    predictions: np.ndarray = np.zeros(0, np.int64)  # the last evaluation's, per test image

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
        drawn = self.data.x_train if isinstance(self.data.x_train, pre.Drawn) else None
        warm = min(c.warmup, steps // 2)  # at most half an epoch, whatever `epochs` is
        for epoch in range(p.epoch, c.epochs):
            if rep.stop_early(p.history, self.settings.patience):
                self.say("note", {"text": rep.stopped(p.history, self.settings.patience)})
                break
            order = np.random.default_rng([c.seed, epoch]).permutation(n)
            start = time.perf_counter() - p.seconds
            for step in range(p.step, steps):
                batch = order[step * c.batch : (step + 1) * c.batch]
                if drawn is not None:
                    drawn.at(epoch, step)
                lr = schedule.at(epoch, step) * rep.warmup(p.global_step, warm)
                if len(batch) > 1 or not self.graph.stats:  # one image has no batch variance
                    self.step(optimizer, batch, epoch, step, lr, p)
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
                        "seconds": p.seconds,
                    },
                )
            record = {"epoch": epoch + 1, **_running(p)}
            record["test_loss"], record["test_accuracy"] = self.evaluate()
            record["seconds"] = round(time.perf_counter() - start, 3)
            record["lr"] = schedule.at(epoch, steps - 1)
            record["images_per_second"] = round(p.seen / max(p.seconds, 1e-9), 1)
            best = rep.is_best(p.history, record)
            p.history.append(record)
            p.next_epoch()
            self.export(record, state.meta["data"], best)
            self.save(optimizer, state)
            files.write_metrics(self.out, p.history)
            self.say("epoch", {"epochs": c.epochs, **record})
            if epoch == 0:
                warning = rep.at_chance(record["train_loss"], self.graph.classes, c)
                if warning:
                    self.say("note", {"text": f"warning: {warning}"})
        rep.draw_confusion(self.out)  # once: the best model's, whatever the epochs

    def step(
        self,
        optimizer: sgd.Optimizer,
        batch: np.ndarray,
        epoch: int,
        step: int,
        lr: float,
        p: Progress,
    ) -> None:
        x, y = self.data.x_train[batch], self.data.y_train[batch]
        loss, logits, *stats = self.module(x, *self.masks(len(batch), epoch, step), y)
        self.watch(float(loss), epoch, step, p)
        if not self.slots:  # onnxruntime allocates the gradients in the first step
            self.slots = [
                (n, self.params[n], _buffer(self.state, n, "grad")) for n in self.trainable
            ]
        before = {n: self.params[n].copy() for n in self.mults}
        optimizer.step(self.slots, lr)
        rates.scale_in_place(self.params, before, self.mults)
        self.module.lazy_reset_grad()
        self.update_statistics(stats, len(batch))
        p.loss_sum += float(loss) * len(batch)
        p.correct += int((logits.argmax(axis=1) == y).sum())
        p.seen += len(batch)

    def watch(self, loss: float, epoch: int, step: int, p: Progress) -> None:
        """Stop a run that diverges (the module's rule), before its update is applied."""
        where = f"at epoch {epoch + 1} step {step + 1}"
        if not math.isfinite(loss):
            self.diverged(f"the loss became {loss} {where}", p)
        if p.reference_loss is None:  # the first step: the weights as initialised
            p.reference_loss = max(loss, math.log(self.graph.classes))
        p.recent_losses = [*p.recent_losses, loss][-WINDOW:]
        now = sum(p.recent_losses) / len(p.recent_losses)
        if len(p.recent_losses) >= WARMUP and now > BLOWUP * p.reference_loss:
            self.diverged(
                f"the loss ran away {where}: {now:.4g} over the last {len(p.recent_losses)} "
                f"steps, more than {BLOWUP:g} times the {p.reference_loss:.4g} it started from",
                p,
            )

    def diverged(self, what: str, p: Progress) -> None:
        """Raise `Diverged`, saying truly whether a checkpoint is there to fall back on."""
        lr = self.config.lr
        path = self.out / files.CHECKPOINT
        if p.saved_step is not None and path.is_file():
            kept = f"the last checkpoint (step {p.saved_step:,}) is kept: {path}"
        else:
            kept = "no checkpoint was written before it"
        raise Diverged(
            f"training diverged: {what} (peak learning rate {lr:g})", None, [kept], lr=lr
        )

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

        output, _ = chosen_output(self.net, self.config.loss_output or None)
        model, logits = with_logits(inference_model(self.net, self.params), output)
        sess = onnxruntime.InferenceSession(
            model.SerializeToString(),
            session_options(self.config.threads),
            providers=["CPUExecutionProvider"],
        )
        x, y, size = self.data.x_test, self.data.y_test, self.config.eval_batch
        inputs = {self.net.input_names[0]: x}
        inputs |= {name: test for name, (_, test) in self.data.more.items()}
        loss, guesses = 0.0, []
        for i in range(0, len(x), size):
            feeds = {name: array[i : i + size] for name, array in inputs.items()}
            scores, z = sess.run([output, logits], feeds)
            guesses.append(scores.argmax(axis=1))
            loss += float(cross_entropy(z, y[i : i + size]).sum())
        self.predictions = np.concatenate(guesses)
        return loss / len(x), float((self.predictions == y).mean())

    def export(self, record: dict[str, float], data_spec: str, best: bool = False) -> None:
        """model.onnx (and best.onnx when the test accuracy is the best yet), each starting
        with the normalisation the net trained with and recording its preprocessing."""
        epochs = int(record["epoch"])
        meta = {
            "trained": f"netdsl train: {epochs} epoch{'s' if epochs != 1 else ''} on "
            f"{data_spec or 'data'}, test accuracy {record['test_accuracy']:.4f}",
            "preprocessing": "N×C×H×W float32, pixels scaled to [0, 1]; "
            + ("normalised inside the model" if self.norm else "no normalisation"),
        }
        norm = self.norm or pre.normalisation(self.data.x_test[:1], None, None, False)
        if self.data.names:  # several inputs: no image preprocessing to record
            meta["preprocessing"] = f"inputs {', '.join(self.data.names)}: float32, as trained"
        else:
            meta.update(pre.metadata(self.data.shape, norm, self.classes))
        model = inference_model(self.net, self.params, meta)
        model = pre.with_normalisation(model, norm, self.net.input_names[0])
        blob = model.SerializeToString()
        atomic.write(self.out / files.MODEL, blob)
        if best:
            atomic.write(self.out / files.BEST, blob)
            rep.write_confusion(self.out, self.data.y_test, self.predictions, self.classes)

    def save(self, optimizer: sgd.Optimizer, state: Checkpoint) -> None:
        for name in self.trainable:
            if not np.isfinite(self.params[name]).all():
                self.diverged(f"the weights of {name} are no longer finite", state.progress)
        state.params, state.optimizer = self.params, optimizer.state()
        state.progress.saved_step = state.progress.global_step
        files.save_checkpoint(self.out, self.net, state)


def shifted(x: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by up to `most` pixels each way (-1: the automatic amount), zeros
    filling in, along the axes large enough for it (`preprocess.shifts`)."""
    fill = np.zeros(x.shape[1], np.float32)
    return pre.Augmenter(x.shape[1:], None if most < 0 else most, False, fill)(x, rng)


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
