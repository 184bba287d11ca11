"""Bad inputs, swept through the CLI in-process: each is exit code 2, exactly one line on
stderr, no traceback, checked before any work, and nothing written (the workspace is
unchanged afterwards). Workspaces are tiny and generated per test: toy features, a random
tiny detector saved as a run directory, a training config, a results file."""

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from rgbtad.cli import main
from rgbtad.config import build_config
from rgbtad.detection import build_detector
from rgbtad.runs.run_dir import save_run
from rgbtad.synthetic.toy_features import make_toy_features

TINY = {
    "data": {"train_split": "train", "val_split": "test", "input_dim": 32, "max_seq_len": 128},
    "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
              "n_mha_win_size": 5, "regression_range": [[0, 4], [4, 8], [8, 10000]]},
    "train": {"batch_size": 2, "epochs": 1, "warmup_epochs": 0},
}
CLASSES = ["action_0", "action_1", "action_2"]


@pytest.fixture
def work(tmp_path):
    """toy/ (features + annotations), config.yaml, run/ (a random detector), pred.json,
    a plain file (file.txt) and an empty folder."""
    make_toy_features(tmp_path / "toy", num_train=2, num_test=2, num_classes=3, dim=32, min_len=100, max_len=120)
    values = {**TINY, "data": {**TINY["data"], "annotations": str(tmp_path / "toy" / "annotations.json"),
                               "features": str(tmp_path / "toy" / "features")}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    cfg = build_config(values)
    torch.manual_seed(0)
    save_run(tmp_path / "run", cfg, CLASSES, build_detector(cfg, len(CLASSES)).state_dict())
    (tmp_path / "pred.json").write_text(json.dumps({"results": {}}))
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    return tmp_path


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _truncate(path: Path, size: int = 1000) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _edit_yaml(path: Path, section: str, key: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    data[section][key] = value
    path.write_text(yaml.safe_dump(data))


INFER = ["infer", "{w}/run", "--features", "{w}/toy/features", "--ann", "{w}/toy/annotations.json"]
TRAIN = ["train", "{w}/config.yaml", "--out", "{w}/new_run"]
EVALUATE = ["evaluate", "--gt", "{w}/toy/annotations.json", "--pred", "{w}/pred.json"]
DETECT = ["detect", "{w}/run", "{w}/empty"]
UNWRITABLE = "/sys/rgbtad-test"  # refused even to root (the tests may run as root)


def case(name, argv, message, prepare=None, marks=()):
    """A bad input: the command line ({w}: the workspace), a part of the expected message,
    and what to break in the workspace first."""
    return pytest.param(argv, message, prepare, id=name, marks=marks)


def _bad_checkpoint(w):
    (w / "run" / "checkpoints").mkdir()
    (w / "run" / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04")  # a zip cut short


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")

CASES = [
    # 4: problems that used to surface only after the work
    case("train-no-val-split", TRAIN + ["--set", "data.val_split=validation"], "no subset 'validation'"),
    case("train-val-features-missing", TRAIN, "have no feature file",
         lambda w: (w / "toy" / "features" / "toy_test_0001.npy").unlink()),
    case("infer-out-under-file", INFER + ["--out", "{w}/file.txt/pred.json"], "file.txt is a file, not a folder"),
    case("infer-out-is-folder", INFER + ["--out", "{w}/empty"], "--out"),
    case("infer-out-unwritable", INFER + ["--out", UNWRITABLE + "/pred.json"], "cannot write in /sys"),
    case("detect-out-under-file", DETECT + ["--out", "{w}/file.txt/d.json"], "--out"),
    case("detect-csv-under-file", DETECT + ["--out", "{w}/d.json", "--csv", "{w}/file.txt/d.csv"], "--csv"),
    case("detect-csv-is-folder", DETECT + ["--out", "{w}/d.json", "--csv", "{w}/empty"], "is a folder"),
    # 5: values out of range
    case("ema-decay-2", TRAIN + ["--set", "train.ema_decay=2"], "'train.ema_decay' must be in [0, 1)"),
    case("weight-decay-negative", TRAIN + ["--set", "train.weight_decay=-1"], "'train.weight_decay' must be >= 0"),
    case("learning-rate-nan", TRAIN + ["--set", "train.learning_rate=.nan"], "'train.learning_rate' must be positive"),
    case("learning-rate-negative", TRAIN + ["--set", "train.learning_rate=-1"], "'train.learning_rate' must be"),
    case("batch-size-zero", TRAIN + ["--set", "train.batch_size=0"], "'train.batch_size' must be positive"),
    case("tiou-above-1", TRAIN + ["--set", "test.tiou_thresholds=[0.5,1.5]"], "'test.tiou_thresholds'"),
    case("toy-features-negative", ["toy-features", "{w}/toy2", "--train", "-1"], "argument --train: must be positive"),
    case("detect-min-score-nan", DETECT + ["--out", "{w}/d.json", "--min-score", "nan"],
         "argument --min-score: must be in [0, 1], got nan"),
    case("detect-batch-size-zero", DETECT + ["--out", "{w}/d.json", "--batch-size", "0"], "argument --batch-size"),
    case("usage-error", ["toy-features"], "required: out_dir"),
    # 6: what used to be tracebacks
    case("model-truncated", INFER + ["--out", "{w}/p.json"], "model.pt: cannot read",
         lambda w: _truncate(w / "run" / "model.pt")),
    case("model-garbage", INFER + ["--out", "{w}/p.json"], "model.pt: cannot read",
         lambda w: (w / "run" / "model.pt").write_bytes(b"not a torch file")),
    case("last-truncated", ["train", "{w}/run/config.yaml", "--out", "{w}/run", "--resume"], "last.pt",
         _bad_checkpoint),
    case("classes-not-the-weights", INFER + ["--out", "{w}/p.json"], "model.pt: weights do not fit",
         lambda w: (w / "run" / "classes.json").write_text('["a", "b", "c", "d"]')),
    case("classes-a-dict", INFER + ["--out", "{w}/p.json"], "classes.json: expected a JSON list of class names",
         lambda w: (w / "run" / "classes.json").write_text('{"a": 0}')),
    case("config-not-the-weights", INFER + ["--out", "{w}/p.json"], "model.pt: weights do not fit",
         lambda w: _edit_yaml(w / "run" / "config.yaml", "model", "head_dim", 24)),
    case("evaluate-json-is-folder", EVALUATE + ["--json", "{w}/empty"], "--json"),
    case("evaluate-json-under-file", EVALUATE + ["--json", "{w}/file.txt/m.json"], "--json"),
    case("evaluate-json-unwritable", EVALUATE + ["--json", UNWRITABLE + "/m.json"], "--json"),
    case("evaluate-plot-under-file", EVALUATE + ["--plot", "{w}/file.txt/ap.png"], "--plot"),
    case("export-under-file", ["export", "{w}/run", "{w}/file.txt/m.onnx"], "OUT.onnx"),
    case("train-out-is-file", ["train", "{w}/config.yaml", "--out", "{w}/file.txt"], "exists and is not a folder"),
    case("train-out-under-file", ["train", "{w}/config.yaml", "--out", "{w}/file.txt/run"], "--out"),
    case("toy-features-under-file", ["toy-features", "{w}/file.txt/toy"], "output folder"),
    case("import-out-under-file", ["import-actionformer", "--config", "{w}/af.yaml", "--checkpoint", "{w}/af.pth",
                                   "--out", "{w}/file.txt/run"], "--out"),
    case("train-cuda", TRAIN + ["--device", "cuda"], "CUDA is not available", marks=NO_CUDA),
    case("infer-cuda", INFER + ["--out", "{w}/p.json", "--device", "cuda"], "CUDA is not available", marks=NO_CUDA),
    case("import-names-the-flag", ["import-actionformer", "--config", "{w}/af.yaml", "--checkpoint", "{w}/af.pth",
                                   "--out", "{w}/imported"], "with --ann",
         lambda w: (w / "af.yaml").write_text("dataset: {json_file: missing.json}\n")),
    case("empty-config", ["train", "{w}/empty.yaml", "--out", "{w}/new_run"], "'data.annotations' is not set",
         lambda w: (w / "empty.yaml").write_text("")),
    case("config-not-utf8", ["train", "{w}/latin1.yaml", "--out", "{w}/new_run"], "latin1.yaml: not a UTF-8 text file",
         lambda w: (w / "latin1.yaml").write_bytes("data: {annotations: caf\u00e9.json}\n".encode("latin-1"))),
    case("detect-folder-without-videos", DETECT + ["--out", "{w}/d.json"], "holds no video files"),
    case("extract-folder-without-videos", ["extract", "{w}/empty", "--backbone", "tsm_tiny", "--snippet-frames",
                                           "8", "--stride", "4", "--out", "{w}/feats"], "holds no video files"),
]


@pytest.mark.parametrize("argv, message, prepare", CASES)
def test_bad_input_is_one_line_and_changes_nothing(work, capfd, argv, message, prepare):
    if prepare is not None:
        prepare(work)
    before = snapshot(work)
    capfd.readouterr()
    code = main([arg.format(w=work) for arg in argv])
    err = capfd.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"rgbtad {argv[0]}: error: ") and message in lines[0], lines[0]
    assert snapshot(work) == before


@pytest.mark.filterwarnings("ignore::rgbtad.data.annotations.AnnotationWarning")  # its cleared segments
def test_features_longer_than_the_video_warn_once_naming_it(work, caplog):
    ann_path = work / "toy" / "annotations.json"
    ann = json.loads(ann_path.read_text())
    video = ann["database"]["toy_test_0000"]
    video["duration"] /= 40  # the features now span 40 times the video
    video["annotations"] = []
    ann_path.write_text(json.dumps(ann))
    with caplog.at_level(logging.WARNING):
        assert main([a.format(w=work) for a in INFER] + ["--out", str(work / "p.json")]) == 0
    warnings = [r.getMessage() for r in caplog.records if "span" in r.getMessage()]
    assert len(warnings) == 1 and "toy_test_0000" in warnings[0] and "toy_test_0001" not in warnings[0]
