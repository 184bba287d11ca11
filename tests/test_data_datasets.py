"""FeatureDataset items (reference formulas), truncation, determinism, batching and loaders."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rgbtad.config import DataConfig
from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import load_annotations
from rgbtad.data.batching import collate, make_loader, pad_batch, padded_length, set_loader_epoch
from rgbtad.data.datasets import FeatureDataset, item_rng, truncate_item
from rgbtad.features.store import FeatureStore

CLASSES = ["HighJump", "TennisSwing"]
HIGHJUMP = [[8.86, 15.01]]
TENNIS = [[2.0, 4.0], [4.8, 7.0], [7.5, 10.0]]


@pytest.fixture(scope="module")
def real_set(shared_data, tmp_path_factory):
    """The two real I3D clips (+ an unannotated copy) with ActionFormer-format annotations."""
    root = tmp_path_factory.mktemp("real")
    feats = root / "features"
    feats.mkdir()
    src = shared_data / "features"
    shutil.copy(src / "highjump_i3d.npy", feats / "highjump.npy")
    shutil.copy(src / "tennis26_i3d.npy", feats / "tennis26.npy")
    shutil.copy(src / "tennis26_i3d.npy", feats / "unlabelled.npy")
    database = {
        "highjump": {"subset": "Validation", "duration": 24.2, "fps": 30.0, "annotations": [
            {"label": "HighJump", "label_id": 0, "segment": s} for s in HIGHJUMP]},
        "tennis26": {"subset": "Validation", "duration": 11.3, "fps": 29.97, "annotations": [
            {"label": "TennisSwing", "label_id": 1, "segment": s} for s in TENNIS]},
        "unlabelled": {"subset": "Validation", "duration": 11.3, "fps": 30.0, "annotations": []},
    }
    (root / "ann.json").write_text(json.dumps({"database": database}))
    return load_annotations(root / "ann.json"), feats


def _cfg(**kw) -> DataConfig:
    base = dict(input_dim=2048, feat_stride=4, num_frames=16, max_seq_len=2304)
    base.update(kw)
    return DataConfig(**base)


def _dataset(real_set, training=False, cfg=None, **kw):
    ann, feats = real_set
    cfg = cfg or _cfg()
    store = FeatureStore(feats, channels=cfg.channels, input_dim=cfg.input_dim)
    kw.setdefault("class_names", CLASSES)
    return FeatureDataset(ann, store, cfg, training=training, **kw)


# --------------------------------------------------------------------------- items

def test_inference_items_follow_the_reference_formulas(real_set, shared_data):
    ds = _dataset(real_set)
    assert ds.video_ids == ["highjump", "tennis26", "unlabelled"]
    item = ds[0]
    assert set(item) == {"video_id", "feats", "segments", "labels", "fps", "duration",
                         "feat_stride", "feat_num_frames"}
    raw = np.load(shared_data / "features" / "highjump_i3d.npy").astype(np.float32)
    assert item["feats"].dtype == torch.float32 and item["feats"].shape == (2048, 164)
    torch.testing.assert_close(item["feats"], torch.from_numpy(raw.T.copy()), rtol=0, atol=0)
    expected = (np.array(HIGHJUMP) * 30.0 - 0.5 * 16) / 4
    assert item["segments"].dtype == torch.float32
    np.testing.assert_allclose(item["segments"].numpy(), expected, rtol=1e-6)
    assert item["labels"].dtype == torch.int64 and item["labels"].tolist() == [0]
    assert (item["fps"], item["duration"], item["feat_stride"], item["feat_num_frames"]) == (30.0, 24.2, 4, 16)
    tennis = ds[1]
    np.testing.assert_allclose(tennis["segments"].numpy(), (np.array(TENNIS) * 29.97 - 8) / 4, rtol=1e-6)
    assert tennis["labels"].tolist() == [1, 1, 1]
    empty = ds[2]  # no annotations: empty tensors, not None
    assert empty["segments"].shape == (0, 2) and empty["labels"].shape == (0,)


def test_inference_items_are_not_truncated(real_set):
    ds = _dataset(real_set, cfg=_cfg(max_seq_len=32))
    assert ds[0]["feats"].shape[1] == 164


def test_channels_and_downsampling(real_set):
    ds = _dataset(real_set, cfg=_cfg(channels="rgb", input_dim=1024, downsample_rate=2))
    item = ds[0]
    assert item["feats"].shape == (1024, 82) and item["feat_stride"] == 8
    np.testing.assert_allclose(item["segments"].numpy(), (np.array(HIGHJUMP) * 30.0 - 8) / 8, rtol=1e-6)


def test_fps_default_overrides_and_missing_fps(real_set, tmp_path):
    ds = _dataset(real_set, cfg=_cfg(default_fps=15.0))
    assert ds[1]["fps"] == 15.0
    np.testing.assert_allclose(ds[1]["segments"].numpy(), (np.array(TENNIS) * 15.0 - 8) / 4, rtol=1e-6)
    ann, feats = real_set
    path = tmp_path / "nofps.json"
    path.write_text(json.dumps({"database": {"tennis26": {"subset": "test", "duration": 11.3, "annotations": []}}}))
    with pytest.raises(RgbtadError, match=r"nofps\.json: video 'tennis26' has no fps; set data.default_fps"):
        FeatureDataset(load_annotations(path), FeatureStore(feats), _cfg(), training=False, class_names=CLASSES)


def test_label_mapping_errors_and_class_agnostic(real_set):
    with pytest.raises(RgbtadError, match=r"ann\.json: video 'tennis26': label 'TennisSwing' is not one of"):
        _dataset(real_set, class_names=["HighJump"])
    ds = _dataset(real_set, class_names=["TennisSwing", "HighJump"])  # ids follow the given list
    assert ds[0]["labels"].tolist() == [1]
    agnostic = _dataset(real_set, class_names=[], class_agnostic=True)
    assert agnostic[1]["labels"].tolist() == [0, 0, 0] and agnostic.num_classes == 1


def test_missing_feature_files(real_set, tmp_path):
    ann, feats = real_set
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(feats / "highjump.npy", partial / "highjump.npy")
    with pytest.raises(RgbtadError, match=r"2 video\(s\) of .*ann\.json have no feature file: .*tennis26\.npy"):
        FeatureDataset(ann, FeatureStore(partial), _cfg(), training=False, class_names=CLASSES)
    with pytest.warns(UserWarning, match="skipped"):
        ds = FeatureDataset(ann, FeatureStore(partial), _cfg(), training=False, class_names=CLASSES,
                            missing_features="skip")
    assert ds.video_ids == ["highjump"]


def test_training_skips_videos_without_segments(real_set):
    ds = _dataset(real_set, training=True)
    assert ds.video_ids == ["highjump", "tennis26"]


def test_bad_data_config(real_set):
    for kw, key in ((dict(downsample_rate=0), "downsample_rate"),
                    (dict(crop_ratio=(1.0, 0.5)), "crop_ratio"),
                    (dict(trunc_thresh=1.5), "trunc_thresh"),
                    (dict(force_upsampling=True, downsample_rate=2), "force_upsampling")):
        with pytest.raises(RgbtadError, match=key):
            _dataset(real_set, cfg=_cfg(**kw))


def test_force_upsampling_matches_the_reference(real_set):
    cfg = _cfg(force_upsampling=True, max_seq_len=192)
    item = _dataset(real_set, cfg=cfg)[0]
    stride = ((164 - 1) * 4 + 16) / 192
    assert item["feats"].shape == (2048, 192)
    assert item["feat_stride"] == pytest.approx(stride) and item["feat_num_frames"] == pytest.approx(stride)
    plain = _dataset(real_set)[0]["feats"]
    torch.testing.assert_close(item["feats"], F.interpolate(plain[None], size=192, mode="linear",
                                                            align_corners=False)[0])
    np.testing.assert_allclose(item["segments"].numpy(),
                               (np.array(HIGHJUMP) * 30.0 - 0.5 * stride) / stride, rtol=1e-6)
    # training: resized, then randomly cropped to 90-100% of 192 steps
    train = _dataset(real_set, training=True, cfg=cfg, seed=5)
    lengths = set()
    for epoch in range(20):
        train.set_epoch(epoch)
        item = train[0]
        lengths.add(item["feats"].shape[1])
        assert 173 <= item["feats"].shape[1] <= 192 and len(item["segments"]) == 1
    assert len(lengths) > 1


# --------------------------------------------------------------------------- ActivityNet clean-up

def test_anet_style_cleanup(tmp_path):
    feats = tmp_path / "f"
    feats.mkdir()
    np.save(feats / "v.npy", np.zeros((50, 4), dtype=np.float32))
    segs = [[1.0, 2.0], [1.0005, 2.0], [4.9, 6.0], [4.0, 5.2], [6.0, 7.0]]
    (tmp_path / "a.json").write_text(json.dumps({"database": {"v": {
        "subset": "train", "duration": 10.0, "fps": 10.0,
        "annotations": [{"label": "A", "segment": s} for s in segs]}}}))
    ann = load_annotations(tmp_path / "a.json")
    cfg = DataConfig(input_dim=4, feat_stride=1, num_frames=1, max_seq_len=64, crop_ratio=None)
    store = FeatureStore(feats, input_dim=4)
    # grid = sec * 10 - 0.5; features end at 50 + 0.5
    item = FeatureDataset(ann, store, cfg, training=True, class_names=["A"], anet_style=True)[0]
    np.testing.assert_allclose(item["segments"].numpy(), [[9.5, 19.5], [39.5, 50.5]], rtol=1e-6)
    assert item["labels"].tolist() == [0, 0]
    # inference keeps everything but the duplicate; plain mode keeps all five
    assert len(FeatureDataset(ann, store, cfg, training=False, class_names=["A"], anet_style=True)[0]["segments"]) == 4
    assert len(FeatureDataset(ann, store, cfg, training=True, class_names=["A"])[0]["segments"]) == 5


# --------------------------------------------------------------------------- truncation

def _synthetic_item(length: int, segments, channels: int = 3):
    feats = torch.arange(length, dtype=torch.float32)[None].repeat(channels, 1)  # value = time index
    return {
        "video_id": "syn", "feats": feats,
        "segments": torch.tensor(segments, dtype=torch.float32).reshape(-1, 2),
        "labels": torch.arange(len(segments), dtype=torch.int64),  # one label per segment
        "fps": 30.0, "duration": 100.0, "feat_stride": 4, "feat_num_frames": 16,
    }


SEGMENTS = [[10.0, 60.0], [100.0, 110.0], [200.0, 290.0], [300.5, 301.0], [420.0, 580.0], [590.0, 640.0]]


@pytest.mark.parametrize("seed", range(40))
def test_truncation_keeps_an_action_with_enough_overlap(seed):
    item = _synthetic_item(600, SEGMENTS)
    offset, thresh, max_len = 2.0, 0.5, 128
    out = truncate_item(item, max_len, thresh, offset, (0.9, 1.0), item_rng(seed, seed % 3, 7))
    assert out["feats"].shape == (3, max_len)
    st = int(out["feats"][0, 0])
    ed = st + max_len
    torch.testing.assert_close(out["feats"][0], torch.arange(st, ed, dtype=torch.float32))
    assert len(out["labels"]) >= 1
    original = torch.tensor(SEGMENTS)
    for (a, b), label in zip(out["segments"].tolist(), out["labels"].tolist()):
        s, e = original[label].tolist()
        # clipped to the widened window and shifted by its start
        assert a + st == pytest.approx(max(s, st - offset)) and b + st == pytest.approx(min(e, ed + offset))
        assert (b - a) / (e - s) >= thresh
    dropped = set(range(len(SEGMENTS))) - set(out["labels"].tolist())
    for label in dropped:
        s, e = SEGMENTS[label]
        inter = max(0.0, min(e, ed + offset) - max(s, st - offset))
        assert inter / (e - s) < thresh
    assert item["feats"].shape == (3, 600)  # the input item is untouched


def test_short_videos_are_cropped_to_90_to_100_percent():
    item = _synthetic_item(100, [[5.0, 95.0]])
    lengths = set()
    for seed in range(60):
        out = truncate_item(item, 128, 0.5, 2.0, (0.9, 1.0), item_rng(seed, 0, 0))
        lengths.add(out["feats"].shape[1])
        if out["feats"].shape[1] == 100:
            assert out is item
        assert len(out["segments"]) == 1
    assert min(lengths) >= 90 and max(lengths) <= 100 and len(lengths) > 3
    assert truncate_item(item, 128, 0.5, 2.0, None, item_rng(0, 0, 0)) is item


def test_truncation_without_any_qualifying_window_returns_no_segments():
    item = _synthetic_item(600, [[10.0, 590.0]])  # a window of 64 covers at most 11% of it
    out = truncate_item(item, 64, 0.5, 0.0, None, item_rng(1, 0, 0))
    assert out["feats"].shape == (3, 64) and out["segments"].shape == (0, 2) and out["labels"].shape == (0,)


def test_training_items_truncate_real_features(real_set):
    ds = _dataset(real_set, training=True, cfg=_cfg(max_seq_len=64), seed=11)
    for epoch in range(10):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["feats"].shape == (2048, 64)
        assert len(item["segments"]) == 1  # the one HighJump survives every window
        assert (item["segments"] >= -2.0).all() and (item["segments"] <= 66.0).all()


# --------------------------------------------------------------------------- determinism

def _signature(item):
    return (item["feats"].shape[1], float(item["feats"][0, 0]), item["segments"].tolist())


def test_items_are_deterministic_per_seed_and_epoch(real_set):
    cfg = _cfg(max_seq_len=48)
    a = _dataset(real_set, training=True, cfg=cfg, seed=3)
    b = _dataset(real_set, training=True, cfg=cfg, seed=3)
    other = _dataset(real_set, training=True, cfg=cfg, seed=4)
    runs = []
    for epoch in range(6):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        other.set_epoch(epoch)
        sig = [_signature(a[i]) for i in range(len(a))]
        assert sig == [_signature(b[i]) for i in range(len(b))]  # same seed, same epoch
        assert sig == [_signature(a[i]) for i in range(len(a))]  # repeatable
        runs.append((sig, [_signature(other[i]) for i in range(len(other))]))
    assert len({str(sig) for sig, _ in runs}) > 1  # epochs differ
    assert any(sig != sig_other for sig, sig_other in runs)  # seeds differ
    # resuming: a fresh dataset set to epoch 4 reproduces epoch 4
    fresh = _dataset(real_set, training=True, cfg=cfg, seed=3)
    fresh.set_epoch(4)
    assert [_signature(fresh[i]) for i in range(len(fresh))] == runs[4][0]


def test_loader_order_and_workers_are_deterministic(real_set):
    cfg = _cfg(max_seq_len=48)
    ds = _dataset(real_set, training=True, cfg=cfg, seed=9)
    # repeat the two training videos so that the order has something to shuffle
    ds.entries = [dict(e) for e in ds.entries * 6]
    loader = make_loader(ds, batch_size=4, shuffle=True, seed=9, num_workers=0, drop_last=True)
    assert len(loader) == 3

    def epoch_batches(ld, epoch):
        set_loader_epoch(ld, epoch)
        return [([m["video_id"] for m in b["meta"]], [_signature({"feats": f, "segments": s})
                                                       for f, s in zip(b["feats"], b["segments"])])
                for b in ld]

    first = epoch_batches(loader, 0)
    assert first == epoch_batches(loader, 0)
    assert first != epoch_batches(loader, 1)
    orders = [loader.sampler.__iter__() for _ in range(2)]
    assert list(orders[0]) == list(orders[1])
    with_workers = make_loader(ds, batch_size=4, shuffle=True, seed=9, num_workers=2, drop_last=True)
    assert epoch_batches(with_workers, 1) == epoch_batches(loader, 1)
    ordered = make_loader(ds, batch_size=5, shuffle=False, seed=0)
    assert [len(b["feats"]) for b in ordered] == [5, 5, 2]


def test_collate(real_set):
    ds = _dataset(real_set)
    batch = collate([ds[0], ds[1]])
    assert batch["video_ids"] == ["highjump", "tennis26"]
    assert [f.shape[1] for f in batch["feats"]] == [164, 89]
    assert [len(s) for s in batch["segments"]] == [1, 3] and [len(lab) for lab in batch["labels"]] == [1, 3]
    assert batch["meta"][1] == {"video_id": "tennis26", "fps": 29.97, "duration": 11.3,
                                "feat_stride": 4, "feat_num_frames": 16}


# --------------------------------------------------------------------------- padding

def test_pad_batch_training():
    feats = [torch.randn(8, 100), torch.randn(8, 2304), torch.randn(8, 7)]
    batch, mask = pad_batch(feats, max_seq_len=2304, max_div_factor=576, training=True)
    assert batch.shape == (3, 8, 2304) and mask.shape == (3, 2304) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [100, 2304, 7]
    for row, feat in zip(batch, feats):
        torch.testing.assert_close(row[:, : feat.shape[1]], feat)
        assert (row[:, feat.shape[1]:] == 0).all()
    assert mask[0, :100].all() and not mask[0, 100:].any()
    with pytest.raises(RgbtadError, match="longer than data.max_seq_len 2304"):
        pad_batch([torch.randn(8, 2305)], max_seq_len=2304, max_div_factor=576, training=True)


def test_pad_batch_inference():
    short, mask = pad_batch([torch.randn(4, 300)], max_seq_len=2304, max_div_factor=576, training=False)
    assert short.shape == (1, 4, 2304) and mask.sum().item() == 300
    exact, _ = pad_batch([torch.randn(4, 2304)], max_seq_len=2304, max_div_factor=576, training=False)
    assert exact.shape[-1] == 2304
    feats = [torch.randn(4, 2305), torch.randn(4, 3000)]
    long, mask = pad_batch(feats, max_seq_len=2304, max_div_factor=576, training=False)
    assert long.shape == (2, 4, 3456)  # next multiple of 576 above 3000
    assert mask.sum(1).tolist() == [2305, 3000]
    torch.testing.assert_close(long[1, :, :3000], feats[1])
    assert (long[0, :, 2305:] == 0).all()
    assert padded_length(2881, max_seq_len=2304, max_div_factor=576, training=False) == 3456
    assert padded_length(2880, max_seq_len=2304, max_div_factor=576, training=False) == 2880
    with pytest.raises(RgbtadError, match=r"expected 4 x T"):
        pad_batch([torch.randn(4, 5), torch.randn(3, 5)], max_seq_len=8, max_div_factor=2, training=False)


def test_dataset_pickles_for_workers(real_set):
    import pickle

    ds = _dataset(real_set, training=True, cfg=_cfg(max_seq_len=48), seed=2)
    ds.set_epoch(3)
    clone = pickle.loads(pickle.dumps(ds))
    assert _signature(clone[1]) == _signature(ds[1])
    assert dataclasses.asdict(clone.cfg) == dataclasses.asdict(ds.cfg)
