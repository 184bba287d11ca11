"""Command-line interface: one subcommand per pipeline stage.

This module only parses arguments, calls the library and prints. Heavy imports (torch,
OpenCV, PyAV) happen inside each command so that `rgbtad evaluate` never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rgbtad import __version__
from rgbtad.core.errors import RgbtadError
from rgbtad.core.paths import check_writable_output
from rgbtad.core.ranges import describe_range, in_range
from rgbtad.video.snippets import DIS_PRESETS, FLOW_METHODS, MODALITIES, SnippetSpec


def _number(kind: type, interval: str):
    """An argparse type: a `kind` (int or float) in `interval` (`rgbtad.core.ranges`)."""
    def parse(text: str):
        value = kind(text)
        if not in_range(value, interval):
            raise argparse.ArgumentTypeError(f"must be {describe_range(interval)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value: 'x'"
    return parse


_POSITIVE_INT = _number(int, "(0, inf)")
_COUNT = _number(int, "[0, inf)")
_POSITIVE = _number(float, "(0, inf)")
_SCORE = _number(float, "[0, 1]")


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line, exit code 2, like every other user error (`main`)."""

    def error(self, message: str):
        raise RgbtadError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from rgbtad.core.atomic import write_json
    from rgbtad.evaluation.detection import evaluate_detection_files, parse_tiou

    for path, option in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            check_writable_output(path, option)
    metrics = evaluate_detection_files(
        args.gt, args.pred, split=args.split, tiou_thresholds=parse_tiou(args.tiou),
        strict=args.strict, drop_invalid=args.drop_invalid,
    )
    print(metrics.format_table())
    if args.json:
        write_json(args.json, metrics.to_json())
        print(f"wrote {args.json}")
    if args.plot:
        from rgbtad.viz.metrics_plots import plot_per_class_ap

        plot_per_class_ap(metrics, args.plot)
        print(f"wrote {args.plot}")


def _cmd_train(args: argparse.Namespace) -> None:
    from rgbtad.config import load_config
    from rgbtad.training.trainer import train

    check_writable_output(args.out, "--out", folder=True)
    cfg = load_config(args.config, args.set)
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, device=args.device)
    if summary.get("average_mAP") is not None:
        print(f"average mAP {100 * summary['average_mAP']:.2f} (EMA weights, split '{cfg.data.val_split}')")
    print(f"run directory: {args.out}")


def _cmd_train_backbone(args: argparse.Namespace) -> None:
    from rgbtad.training.backbone_config import load_backbone_config
    from rgbtad.training.backbones import train_backbone

    check_writable_output(args.out, "--out", folder=True)
    overrides = list(args.set) + ([f"precision={args.precision}"] if args.precision else [])
    cfg = load_backbone_config(args.config, overrides)
    result = train_backbone(cfg, args.out, resume=args.resume, overwrite=args.overwrite, device=args.device)
    if result.val is not None:
        val = result.val
        print(f"snippet accuracy {100 * val['accuracy']:.1f} %, balanced {100 * val['balanced_accuracy']:.1f} % "
              f"(split '{cfg.val_subset}')")
    print(f"backbone run directory: {args.out} (weights: {result.weights})")


def _add_train_backbone(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-backbone",
                       help="train (or distil) a snippet backbone on trimmed snippets of annotated videos")
    p.add_argument("config", help="YAML backbone config (see configs/backbone_*.yaml)")
    p.add_argument("--out", required=True,
                   help="backbone run directory (backbone.pt, head.pt, summary.json, logs, checkpoints)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set epochs=10 or --set snippets.frames=16 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files are removed first). Default: refuse")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                   help="backbone arithmetic (default: the config's 'precision', itself auto by default)")
    p.set_defaults(func=_cmd_train_backbone)


def _cmd_infer(args: argparse.Namespace) -> None:
    from rgbtad.inference.predict import infer_features

    check_writable_output(args.out, "--out")
    count = infer_features(
        args.run_dir,
        features_dir=args.features,
        annotations=args.ann,
        split=args.split,
        out_path=args.out,
        device=args.device,
    )
    print(f"wrote detections for {count} videos to {args.out}")


def _cmd_import_actionformer(args: argparse.Namespace) -> None:
    from rgbtad.compat.actionformer import import_actionformer

    check_writable_output(args.out, "--out", folder=True)
    import_actionformer(args.config, args.checkpoint, args.out, annotations=args.ann, overwrite=args.overwrite)
    print(f"run directory: {args.out}")


def _cmd_toy_features(args: argparse.Namespace) -> None:
    from rgbtad.synthetic.toy_features import make_toy_features

    check_writable_output(args.out_dir, "output folder", folder=True)
    ann = make_toy_features(args.out_dir, num_train=args.train, num_test=args.test, seed=args.seed)
    print(f"wrote features to {ann.parent / 'features'} and annotations to {ann}")


def _add_toy_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toy-features",
                       help="generate a small feature set with detectable actions (examples, tests)")
    p.add_argument("out_dir", help="folder to write features/ and annotations.json into")
    p.add_argument("--train", type=_POSITIVE_INT, default=40, help="number of training videos")
    p.add_argument("--test", type=_COUNT, default=20, help="number of test videos")
    p.add_argument("--seed", type=_COUNT, default=0)
    p.set_defaults(func=_cmd_toy_features)


def _cmd_demo(args: argparse.Namespace) -> None:
    from rgbtad.apps.demo import demo_verdict, run_demo

    check_writable_output(args.out, "--out", folder=True)
    summary = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, with_tg=args.with_tg,
                       jobs=args.jobs, precision=args.precision)
    models = summary["models"]
    tious = next(iter(models.values()))["tiou"]
    print(f"mAP (%) on the test split, {summary['precision']} backbones on {summary['cpu']}")
    print(f"{'model':<16}" + "".join(f"{t:>8g}" for t in tious) + f"{'avg':>8}")
    for name, m in models.items():
        print(f"{name:<16}" + "".join(f"{100 * v:8.1f}" for v in m["mAP"]) + f"{100 * m['average_mAP']:8.1f}")
    print(demo_verdict(models))
    print(f"report: {args.out}/report.md")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on the built-in synthetic benchmark")
    p.add_argument("--out", default="demo_out", help="output folder (a second run reuses finished stages)")
    p.add_argument("--quick", action="store_true",
                   help="6 classes, 24 short videos, short trainings, 4 detectors: about 3 minutes on 2 cores")
    p.add_argument("--with-tg", action="store_true",
                   help="also a temporal-gradient teacher and its decomposed student (longer)")
    p.add_argument("--seed", type=_COUNT, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--jobs", type=_POSITIVE_INT, default=2,
                   help="stages (backbones, features, detectors) run at once, one CPU thread each (default 2)")
    _add_precision(p)
    p.set_defaults(func=_cmd_demo)


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="backbone arithmetic: auto (default: bfloat16 autocast only where the CPU or GPU runs "
                        "it natively, else float32), fp32, or bf16 (slow where emulated)")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="mAP of detections against ground truth (ActivityNet protocol)")
    p.add_argument("--gt", required=True, help="ground truth, ActionFormer-format JSON")
    p.add_argument("--pred", required=True, help="detections, ActivityNet results JSON")
    p.add_argument("--split", default=None, help="subset of the ground truth to evaluate (default: all)")
    p.add_argument(
        "--tiou", default="thumos",
        help="'thumos' (0.3:0.1:0.7), 'anet' (0.5:0.05:0.95) or a comma list such as 0.3,0.5",
    )
    p.add_argument("--json", default=None, help="write {tiou, mAP, average_mAP} here")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write a bar chart of per-class AP (averaged over the thresholds) here")
    p.add_argument("--strict", action="store_true",
                   help="fail on a detection whose label is not a class of the ground truth. "
                        "Default: such detections are ignored, as ActionFormer's evaluator "
                        "does, with a warning. Either way, detections on videos outside the "
                        "evaluated ground truth count as false positives of their class "
                        "(also as the reference does), with a warning")
    p.add_argument("--drop-invalid", action="store_true",
                   help="leave out detections whose segment is reversed, empty or not finite (end <= start), "
                        "with a warning. Default: such a detection is an error")
    p.set_defaults(func=_cmd_evaluate)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector on pre-extracted features")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, resolved config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=10 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files are removed first). Default: refuse")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_cmd_train)


def _add_infer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="detect actions from pre-extracted features with a trained run")
    p.add_argument("run_dir", help="run directory written by `rgbtad train` or `rgbtad import-actionformer`")
    p.add_argument("--features", required=True, help="folder of per-video feature files")
    p.add_argument("--ann", required=True, help="annotation file (video list, fps, duration, class names)")
    p.add_argument("--split", default=None, help="subset to run on (default: the run's validation split)")
    p.add_argument("--out", required=True, help="output ActivityNet results JSON")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_cmd_infer)


def _add_import_actionformer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-actionformer",
                       help="turn an official ActionFormer config + checkpoint into a run directory")
    p.add_argument("--config", required=True, help="ActionFormer YAML config (e.g. thumos_i3d.yaml)")
    p.add_argument("--checkpoint", required=True, help="ActionFormer checkpoint (.pth.tar)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--ann", default=None,
                   help="annotation JSON for class names (default: the one named in the config)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files are removed first). Default: refuse")
    p.set_defaults(func=_cmd_import_actionformer)


def _cmd_motion(args: argparse.Namespace) -> None:
    from rgbtad.core.batch import parse_shard
    from rgbtad.motion.storage import compute_motion
    from rgbtad.video.decode import list_videos, parse_size

    check_writable_output(args.out, "--out", folder=True)
    videos = list_videos(args.videos)
    report = compute_motion(
        videos, args.out, method=args.method, fps=args.fps, size=parse_size(args.size), bound=args.bound,
        dis_preset=args.dis_preset, workers=args.workers, shard=parse_shard(args.shard),
    )
    print(report.summary())
    print(f"motion files in {args.out}")
    if report.failed:
        raise RgbtadError(f"{len(report.failed)} of {len(videos)} videos failed (listed above)")


def _add_motion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("motion", help="compute and store optical flow (or temporal gradient) of videos")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    p.add_argument("--method", default=SnippetSpec.flow_method, choices=FLOW_METHODS + ("tg",),
                   help="tvl1 (default, slow: ~0.5 s per 224px pair), dis, farneback, or tg (temporal gradient)")
    p.add_argument("--out", required=True, help="output folder: <stem>.flow.npz (or .tg.npz) + JSON sidecar")
    p.add_argument("--fps", type=_POSITIVE, default=None, help="resample to this frame rate (default: native)")
    p.add_argument("--size", default=None, help="P (short side, keeps aspect) or WxH (default: native)")
    p.add_argument("--workers", type=_POSITIVE_INT, default=1, help="processes, one video each (default 1)")
    p.add_argument("--bound", type=_POSITIVE, default=None,
                   help="quantization bound: clip to +-bound then map to 0..255 (default 20 px; 255 for tg)")
    p.add_argument("--dis-preset", default=SnippetSpec.dis_preset, choices=DIS_PRESETS,
                   help="DIS preset (method dis only)")
    p.add_argument("--shard", default=None, metavar="K/N", help="process only shard K of N (1-based)")
    p.set_defaults(func=_cmd_motion)


def _cmd_extract(args: argparse.Namespace) -> None:
    from rgbtad.features.extract import extract_features
    from rgbtad.video.decode import list_videos, parse_size

    check_writable_output(args.out, "--out", folder=True)
    videos = list_videos(args.videos)
    report = extract_features(
        videos, args.out, backbone=args.backbone, weights=args.weights,
        snippets=SnippetSpec(modality=args.modality, frames=args.snippet_frames, stride=args.stride, fps=args.fps,
                             size=parse_size(args.size), flow_method=args.flow_method, dis_preset=args.dis_preset),
        shard=args.shard, device=args.device, batch_size=args.batch_size, precision=args.precision,
        flow_dir=args.flow_dir,
    )
    print(report.summary())
    print(f"features in {args.out}")
    if report.failed:
        raise RgbtadError(f"{len(report.failed)} of {len(videos)} videos failed (listed above)")


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract snippet features (one T x C .npy per video) with a backbone")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    p.add_argument("--backbone", required=True, help="backbone name, e.g. tsm_r18, i3d_inception")
    p.add_argument("--weights", default=None, help="backbone checkpoint (default: random initialisation)")
    p.add_argument("--modality", default=SnippetSpec.modality, choices=MODALITIES, help="input modality")
    p.add_argument("--flow-method", default=SnippetSpec.flow_method, choices=FLOW_METHODS,
                   help=f"optical flow method for --modality flow (default {SnippetSpec.flow_method})")
    p.add_argument("--dis-preset", default=SnippetSpec.dis_preset, choices=DIS_PRESETS,
                   help="DIS preset (flow method dis only)")
    p.add_argument("--flow-dir", default=None,
                   help="read flow stored by `rgbtad motion` (same method, fps, size) instead of computing it")
    p.add_argument("--snippet-frames", type=_POSITIVE_INT, required=True, help="frames per snippet (e.g. 16 for I3D)")
    p.add_argument("--stride", type=_POSITIVE_INT, required=True, help="frames between snippet starts (feat_stride)")
    p.add_argument("--fps", type=_POSITIVE, default=None, help="resample to this frame rate (default: native)")
    p.add_argument("--size", default=None, help="P (short side, keeps aspect) or WxH (default: native)")
    p.add_argument("--out", required=True, help="output folder: <stem>.npy per video + features.json")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="process only shard K of N (1-based; default under torchrun: the rank)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=8, help="snippets per forward pass (default 8)")
    _add_precision(p)
    p.set_defaults(func=_cmd_extract)


def _cmd_plot(args: argparse.Namespace) -> None:
    from rgbtad.viz.timeline import parse_named_paths, plot_video_timeline

    check_writable_output(args.out, "--out")
    out = plot_video_timeline(args.gt, parse_named_paths(args.pred), args.video, args.out,
                              min_score=args.min_score, top_k=args.top_k, title=args.title)
    print(f"wrote {out}")


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="timeline of one video: ground truth above each model's detections")
    p.add_argument("--gt", required=True, help="ground truth annotation file")
    p.add_argument("--pred", required=True, action="append", metavar="[NAME=]PRED",
                   help="detections (results JSON or CSV); repeat for several models, "
                        "optionally named NAME=PATH (default name: the file's stem)")
    p.add_argument("--video", required=True, help="video id to plot")
    p.add_argument("--out", required=True, help="output image (.png, .pdf, .svg)")
    p.add_argument("--min-score", type=_SCORE, default=0.0, help="hide detections scoring below this")
    p.add_argument("--top-k", type=_POSITIVE_INT, default=None,
                   help="detections drawn per class and model, best first (default 10)")
    p.add_argument("--title", default=None, help="figure title (default: video id, duration, subset)")
    p.set_defaults(func=_cmd_plot)


def _cmd_synth(args: argparse.Namespace) -> None:
    from rgbtad.synthetic.generate import generate_benchmark

    check_writable_output(args.out_dir, "output folder", folder=True)
    ann = generate_benchmark(args.out_dir, num_train=args.train, num_test=args.test, seed=args.seed,
                             size=args.size, fps=args.fps, min_duration=args.min_duration,
                             max_duration=args.max_duration, workers=args.workers,
                             classes=args.classes.split(",") if args.classes else None)
    print(f"wrote videos to {ann.parent / 'videos'} and annotations to {ann}")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from rgbtad.synthetic.generate import DEFAULTS

    p = sub.add_parser("synth", help="generate the built-in synthetic motion-action benchmark (mp4 videos + "
                                     "ActionFormer annotations)")
    p.add_argument("out_dir", help="folder to write videos/, annotations.json and benchmark.json into")
    p.add_argument("--train", type=_POSITIVE_INT, default=DEFAULTS["num_train"],
                   help=f"number of training videos (default {DEFAULTS['num_train']})")
    p.add_argument("--test", type=_COUNT, default=DEFAULTS["num_test"],
                   help=f"number of test videos (default {DEFAULTS['num_test']})")
    p.add_argument("--seed", type=_COUNT, default=DEFAULTS["seed"], help="random seed (default 0)")
    p.add_argument("--size", type=_POSITIVE_INT, default=DEFAULTS["size"],
                   help=f"frame width and height in pixels, even (default {DEFAULTS['size']})")
    p.add_argument("--fps", type=_POSITIVE, default=DEFAULTS["fps"], help=f"frame rate (default {DEFAULTS['fps']:g})")
    p.add_argument("--min-duration", type=_POSITIVE, default=DEFAULTS["min_duration"],
                   help=f"shortest video in seconds (default {DEFAULTS['min_duration']:g})")
    p.add_argument("--max-duration", type=_POSITIVE, default=DEFAULTS["max_duration"],
                   help=f"longest video in seconds (default {DEFAULTS['max_duration']:g})")
    p.add_argument("--workers", type=_POSITIVE_INT, default=1, help="rendering processes (default 1; same output)")
    p.add_argument("--classes", default=None, metavar="A,B,...",
                   help="use only these classes, e.g. belt_left,belt_right,ball_bounce (default: all twelve)")
    p.set_defaults(func=_cmd_synth)


def _cmd_detect(args: argparse.Namespace) -> None:
    from rgbtad.inference.detect import detect_videos
    from rgbtad.video.decode import list_videos

    check_writable_output(args.out, "--out")
    if args.csv:
        check_writable_output(args.csv, "--csv")
    if args.plot:
        check_writable_output(args.plot, "--plot", folder=True)
    report = detect_videos(args.run_dir, list_videos(args.videos), out=args.out, csv=args.csv,
                           plot_dir=args.plot, min_score=args.min_score, device=args.device, onnx=args.onnx,
                           batch_size=args.batch_size, precision=args.precision, progress=not args.quiet)
    print(report.summary())
    for path in report.outputs:
        print(f"wrote {path}")
    if report.failures:
        raise RgbtadError(f"{len(report.failures)} of {len(report.failures) + len(report.results)} videos "
                          "failed (listed above)")


def _add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect actions in videos with a run directory (RGB only, no optical flow)")
    p.add_argument("run_dir", help="run directory of `rgbtad train` or `rgbtad demo` (with backbone.json)")
    p.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    p.add_argument("--out", required=True, help="output ActivityNet results JSON")
    p.add_argument("--csv", default=None, help="also write video_id,start,end,label,score rows here")
    p.add_argument("--plot", default=None, metavar="DIR", help="write a timeline DIR/<video>.png per video")
    p.add_argument("--min-score", type=_SCORE, default=0.0, help="drop detections scoring below this")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run the detector (and the backbone, if exported with it) with ONNX Runtime")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=8, help="snippets per backbone forward pass (default 8)")
    _add_precision(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_detect)


def _cmd_bench(args: argparse.Namespace) -> None:
    from rgbtad.apps.bench import BenchSettings, format_report, run_bench
    from rgbtad.core.atomic import write_json
    from rgbtad.video.decode import parse_size

    if args.json:
        check_writable_output(args.json, "--json")
    settings = BenchSettings(backbone=args.backbone, snippet_frames=args.snippet_frames, stride=args.stride,
                             size=parse_size(args.size), fps=args.fps, batch_size=args.batch_size,
                             repeats=args.repeats, tvl1_pairs=args.tvl1_pairs,
                             device=args.device, precision=args.precision, runtime=args.runtime,
                             detector_width=args.detector_width)
    report = run_bench(args.video, settings, progress=not args.quiet)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the RGB-only pipeline against two-stream TV-L1 and DIS pipelines")
    p.add_argument("video", help="video to time the pipelines on (decoded into memory: a few minutes at most)")
    p.add_argument("--json", default=None, help="write the stage times here")
    p.add_argument("--backbone", default="tsm_r18", help="RGB and flow backbone, random weights (default tsm_r18)")
    p.add_argument("--snippet-frames", type=_POSITIVE_INT, default=8, help="frames per snippet (default 8)")
    p.add_argument("--stride", type=_POSITIVE_INT, default=16,
                   help="frames between snippets (default 16: about 0.5 s at 30 fps)")
    p.add_argument("--size", default="224", help="P (short side) or WxH (default 224)")
    p.add_argument("--fps", type=_POSITIVE, default=None, help="resample to this frame rate (default: native)")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=8, help="snippets per backbone forward pass (default 8)")
    p.add_argument("--repeats", type=_POSITIVE_INT, default=3,
                   help="runs of a short stage (under 2 s), median reported (default 3)")
    p.add_argument("--tvl1-pairs", type=_COUNT, default=24,
                   help="TV-L1 frame pairs computed, then extrapolated to the video (default 24; 0: all)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    _add_precision(p)
    p.add_argument("--runtime", default="onnxruntime-int8", choices=["torch", "onnxruntime", "onnxruntime-int8"],
                   help="every pipeline's backbones: ONNX Runtime in int8 (default; as `rgbtad detect --onnx` after "
                        "`rgbtad export --with-backbone --int8-calibration`, here calibrated on the video's own "
                        "snippets), ONNX Runtime in float32, or PyTorch (as plain `rgbtad detect`)")
    p.add_argument("--detector-width", type=_POSITIVE_INT, default=512,
                   help="channels of the ActionFormer's embedding, neck and heads (default 512, as THUMOS)")
    p.add_argument("--quiet", action="store_true", help="no stage messages")
    p.set_defaults(func=_cmd_bench)


def _cmd_export(args: argparse.Namespace) -> None:
    from rgbtad.export.onnx import export_run

    check_writable_output(args.out, "OUT.onnx")
    if args.calibration_snippets < 1:
        raise RgbtadError(f"--calibration-snippets must be >= 1, got {args.calibration_snippets}")
    result = export_run(args.run_dir, args.out, with_backbone=args.with_backbone,
                        int8_calibration=args.int8_calibration, calibration_snippets=args.calibration_snippets)
    print(f"wrote {result.detector} (max |onnxruntime - pytorch| {result.max_abs_diff:.2g})")
    if result.backbone_int8_error is not None:
        print(f"wrote {result.backbone} (int8; features {100 * result.backbone_int8_error:.2f} % off float32 "
              "on the calibration snippets, relative L2)")
    elif result.backbone is not None:
        print(f"wrote {result.backbone} (max |onnxruntime - pytorch| {result.backbone_max_abs_diff:.2g})")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a run's detector (and optionally its backbone) to ONNX")
    p.add_argument("run_dir", help="run directory")
    p.add_argument("out", metavar="OUT.onnx", help="detector graph (features -> per-level logits and offsets)")
    p.add_argument("--with-backbone", action="store_true",
                   help="also export the RGB backbone (snippets -> features) to OUT.backbone.onnx")
    p.add_argument("--int8-calibration", nargs="+", default=None, metavar="VIDEO",
                   help="write the backbone graph quantized to int8 (static, ONNX Runtime; 1.7x faster than "
                        "float32 on a 2-core AMD EPYC), calibrated on snippets of these videos (a few of your own)")
    p.add_argument("--calibration-snippets", type=int, default=128,
                   help="snippets used for calibration, spread over the videos (default 128: on the full demo's "
                        "test videos 2.7 %% feature error, 9.8 %% with 64)")
    p.set_defaults(func=_cmd_export)



def _cmd_ablate(args: argparse.Namespace) -> None:
    from rgbtad.apps.ablate import format_table, run_ablation

    check_writable_output(args.out, "--out", folder=True)
    results = run_ablation(args.grid, args.out, seeds=args.seeds, device=args.device)
    print(format_table(results))
    print(f"wrote {args.out}/results.md and {args.out}/results.json")


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train and evaluate a grid of configs over several seeds; "
                                      "a Markdown table of mAP, spread and gain")
    p.add_argument("grid", help="grid YAML: a base config, then cells and/or axes of overrides "
                                "(format: rgbtad.apps.ablate, example: configs/ablate_synthetic.yaml)")
    p.add_argument("--out", required=True,
                   help="output folder: cells/<name>/seed<k>/ run dirs (finished ones are reused), "
                        "results.json, results.md")
    p.add_argument("--seeds", type=_POSITIVE_INT, default=None,
                   help="train with seeds 0..N-1 (default: the grid's 'seeds', else 3)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_cmd_ablate)

_SUBCOMMANDS = [_add_demo, _add_toy_features, _add_train, _add_train_backbone, _add_infer, _add_evaluate, _add_import_actionformer, _add_motion, _add_extract, _add_plot,
                _add_synth, _add_detect, _add_bench, _add_export, _add_ablate]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rgbtad",
        description="Temporal action detection from RGB video, with motion distilled at training time.",
    )
    parser.add_argument("--version", action="version", version=f"rgbtad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except RgbtadError as err:  # a usage error (`_Parser.error`), already prefixed with the command
        print(err, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    try:
        args.func(args)
    except RgbtadError as err:
        print(f"rgbtad {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rgbtad {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
