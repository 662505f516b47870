"""`netdsl explain filters|saliency|occlusion|top MODEL`: the lectures' looks inside a model.

The command line of the explain room (`backends/explain`): each subcommand takes a trained
model (an `.onnx` file such as a run's model.onnx, or a net compiled for inference with
`--weights`), reads images from a dataset's test split where it needs them (the dataset specs
of `train`, fitted to the model's input as `train` fits them), computes the arrays with
`maps.py`, and writes a PNG (`pictures.py`) and the arrays as .npy beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from netdsl.cli import options as o
from netdsl.source import NetError

NEEDS = ("train", ("numpy", "onnx", "onnxruntime", "matplotlib"))
KINDS = ("filters", "saliency", "occlusion", "top")


def register(sub: Any) -> None:
    e = sub.add_parser(
        "explain",
        help="look inside a trained model: filters, saliency, occlusion, top images",
        description="Write a PNG (and the arrays as .npy) of what a trained model computes.",
    )
    kinds = e.add_subparsers(dest="kind", required=True, metavar="KIND")
    helps = {
        "filters": "the first layer's filters as an image grid",
        "saliency": "class saliency maps: |d class score / d image| (Simonyan et al. 2013)",
        "occlusion": "occlusion sensitivity: the score's drop under a sliding patch "
        "(Zeiler & Fergus 2014)",
        "top": "the images of a dataset that excite a channel most",
    }
    for kind in KINDS:
        p = kinds.add_parser(kind, help=helps[kind], description=helps[kind])
        p.add_argument("model", metavar="MODEL", help=o.MODEL + " (with --weights)")
        p.add_argument(
            "-o", "--output", metavar="FILE.png", help=f"where to write (default {kind}.png)"
        )
        if kind != "filters":
            p.add_argument("--data", default="digits", metavar="SPEC", help=o.DATA)
            p.add_argument(
                "--fit",
                choices=("auto", "strict", "resize", "pad"),
                default="auto",
                help="images of another size: as train's --fit",
            )
        if kind in ("saliency", "occlusion"):
            p.add_argument(
                "--images",
                type=o.whole(1, 256),
                default=8,
                metavar="N",
                help="the first N test images (default 8)",
            )
            p.add_argument(
                "--class",
                dest="label",
                type=o.whole(0),
                default=None,
                metavar="C",
                help="the class whose score is explained (default: each image's prediction)",
            )
        if kind == "occlusion":
            p.add_argument("--patch", type=o.whole(1), default=6, help="patch size (default 6)")
            p.add_argument("--stride", type=o.whole(1), default=2, help="its step (default 2)")
            p.add_argument(
                "--fill", type=o.number(), default=0.0, help="the patch's value (default 0)"
            )
        if kind == "top":
            p.add_argument(
                "--layer", metavar="NAME", help="a layer's name (default: the last conv)"
            )
            p.add_argument(
                "--channel",
                type=o.whole(0),
                action="append",
                metavar="C",
                help="a channel to show (repeatable; default the first 8)",
            )
            p.add_argument("-k", type=o.whole(1, 64), default=9, help="images per channel (9)")
            p.add_argument(
                "--by", choices=("mean", "max"), default="mean", help="rank by (default mean)"
            )
            p.add_argument(
                "--images",
                type=o.whole(1, 100_000),
                default=2000,
                metavar="N",
                help="search the first N test images (default 2000)",
            )
        o.add_weights(p)
        o.add_json(p)
        o.add_set(p)
        p.set_defaults(func=cmd_explain, needs=NEEDS)


def _model(args: argparse.Namespace) -> Any:
    """The model in inference form: an .onnx file as it is, or the net compiled."""
    if Path(args.model).suffix.lower() == ".onnx":
        from netdsl.backends.runtime.ort import read_model

        if args.weights:
            raise NetError("--weights goes with a net; an .onnx file holds its own weights")
        return read_model(args.model, data=True)
    from netdsl.backends.onnx.compile import CompileOptions, compile_net

    if not args.weights:
        raise NetError(
            f"{args.model} has no trained weights: explain a trained model",
            None,
            ["pass a run's model.onnx, or --weights FILE"],
        )
    net = o.net(args.model, args.set, search=args.search_path)
    return compile_net(
        net,
        CompileOptions(
            mode="inference", weights=args.weights, skip_mismatched=args.skip_mismatched
        ),
    )


def _images(args: argparse.Namespace, model: Any, count: int) -> tuple[Any, Any]:
    """The first `count` test images of --data, fitted to the model's input, and labels."""
    from netdsl.backends.data import sources
    from netdsl.backends.explain import maps
    from netdsl.backends.train.reverse import shapes_of

    _, shape = maps.input_of(model)
    out = shapes_of(model).get(model.graph.output[0].name, ())
    classes = out[1] if len(out) == 2 and isinstance(out[1], int) else 1_000_000
    data = sources.load(args.data)
    data = sources.fit(data, shape, classes, Path(args.model).stem, args.fit)
    return data.x_test[:count], data.y_test[:count]


def cmd_explain(args: argparse.Namespace) -> int:
    from netdsl.backends.explain import maps, pictures

    model = _model(args)
    out = o.output_file(args.output or f"{args.kind}.png")
    if out.suffix.lower() != ".png":
        raise NetError(f"explain writes a PNG; name the file FILE.png, not '{out.name}'")
    arrays = out.with_suffix(".npy")
    name = Path(args.model).name
    report: dict[str, Any] = {"kind": args.kind, "model": args.model, "png": str(out)}
    if args.kind == "filters":
        import numpy as np

        w = maps.filters(model)
        np.save(arrays, w)
        shape = "x".join(map(str, w.shape))
        pictures.filter_grid(w, out, f"{name}: first-layer filters ({shape})")
        report.update(npy=str(arrays), shape=list(w.shape))
    elif args.kind in ("saliency", "occlusion"):
        import numpy as np

        x, y = _images(args, model, args.images)
        wanted = None if args.label is None else [args.label] * len(x)
        if args.kind == "saliency":
            found, chosen = maps.saliency(model, x, wanted)
            title = f"{name}: saliency |d score / d image| (Simonyan et al. 2013)"
        else:
            found, chosen = maps.occlusion(model, x, wanted, args.patch, args.stride, args.fill)
            title = (
                f"{name}: occlusion, drop of the class probability under a "
                f"{args.patch}x{args.patch} patch of {args.fill:g} (red: drop)"
            )
        np.save(arrays, found)
        scored = "predicted" if args.label is None else "class"
        labels = [f"label {int(t)}, {scored} {int(c)}" for t, c in zip(y, chosen, strict=True)]
        pictures.image_maps(x, found, labels, out, title, signed=args.kind == "occlusion")
        report.update(
            npy=str(arrays),
            shape=list(found.shape),
            classes=[int(c) for c in chosen],
            labels=[int(t) for t in y],
        )
    else:
        import numpy as np

        layer = args.layer or maps.default_layer(model)
        x, y = _images(args, model, args.images)
        k = min(args.k, len(x))
        order, values = maps.top_images(model, layer, x, k, args.by)
        channels = args.channel or list(range(min(8, len(order))))
        bad = [c for c in channels if c >= len(order)]
        if bad:
            raise NetError(
                f"{layer} has {len(order)} channels (0 to {len(order) - 1}), not {bad[0]}"
            )
        np.save(arrays, order)
        title = (
            f"{name}: the {k} test images with the largest {args.by} activation of {layer}, "
            "per channel (label: activation)"
        )
        pictures.top_grid(x, order[channels], values[channels], channels, y, out, title)
        report.update(
            npy=str(arrays),
            shape=list(order.shape),
            layer=layer,
            channels={
                str(c): {"images": order[c].tolist(), "labels": y[order[c]].tolist()}
                for c in channels
            },
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {out} and {arrays.name}")
    return 0
