"""The synthetic benchmark generator: determinism, annotation validity, statistics, videos."""

import json

import numpy as np
import pytest

from rgbtad.cli import main
from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import load_annotations
from rgbtad.synthetic.classes import CLASSES
from rgbtad.synthetic.generate import generate_benchmark, plan_benchmark
from rgbtad.synthetic.render import render_frames
from rgbtad.synthetic.statistics import annotation_statistics
from rgbtad.synthetic.timeline import MAX_INSTANCE_S, MIN_GAP_S, MIN_INSTANCE_S
from rgbtad.video.decode import VideoReader, probe

# Small and fast: 12 training videos (one full deal of the 12 classes needs >= 12 instances),
# short videos, 48 px, 8 fps.
SMALL = dict(num_train=12, num_test=3, size=48, fps=8.0, min_duration=8.0, max_duration=14.0, progress=False)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_a")
    ann = generate_benchmark(out, seed=3, **SMALL)
    return ann


def _frames(path):
    with VideoReader(path) as reader:
        return np.concatenate(list(reader))


def test_class_list_has_motion_pairs_and_appearance_classes():
    assert len(CLASSES) >= 8
    motion = [c for c in CLASSES if c.cue == "motion"]
    assert len(motion) * 2 >= len(CLASSES)
    names = {c.name: c for c in CLASSES}
    for c in motion:  # pairs are symmetric and share the object family (the appearance)
        partner = names[c.partner]
        assert partner.partner == c.name and partner.family == c.family and partner.cue == "motion"
    appearance = [c for c in CLASSES if c.cue == "appearance"]
    families = [c.family for c in appearance]
    assert len(set(families)) == len(families)
    assert not set(families) & {c.family for c in motion}
    assert all(c.description for c in CLASSES)


def test_same_seed_same_bytes_and_frames(bench, tmp_path):
    again = generate_benchmark(tmp_path / "b", seed=3, **SMALL)
    assert again.read_bytes() == bench.read_bytes()
    for vid in ("synth_train_0000", "synth_test_0002"):
        a = _frames(bench.parent / "videos" / f"{vid}.mp4")
        b = _frames(again.parent / "videos" / f"{vid}.mp4")
        assert a.shape == b.shape and np.array_equal(a, b)


def test_other_seed_differs(bench, tmp_path):
    other = generate_benchmark(tmp_path / "c", seed=4, **SMALL)
    assert other.read_bytes() != bench.read_bytes()
    a = _frames(bench.parent / "videos" / "synth_train_0000.mp4")
    b = _frames(other.parent / "videos" / "synth_train_0000.mp4")
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_test_count_does_not_change_training_videos():
    small = plan_benchmark(num_train=4, num_test=1, seed=5, size=48, fps=8.0)
    large = plan_benchmark(num_train=4, num_test=6, seed=5, size=48, fps=8.0)
    for a, b in zip(small[:4], large[:4]):
        assert a.instances == b.instances and a.num_frames == b.num_frames
        assert np.array_equal(render_frames(a)[:20], render_frames(b)[:20])


def test_annotations_are_valid(bench):
    data = json.loads(bench.read_text())
    db = data["database"]
    subsets = {v["subset"] for v in db.values()}
    assert subsets == {"train", "test"}
    assert sum(v["subset"] == "train" for v in db.values()) == 12
    names = [c.name for c in CLASSES]
    for vid, v in db.items():
        assert v["fps"] == 8.0 and 8.0 <= v["duration"] <= 14.0
        segs = [a["segment"] for a in v["annotations"]]
        assert segs, vid
        assert segs == sorted(segs)
        for a in v["annotations"]:
            s, e = a["segment"]
            assert 0 <= s < e <= v["duration"] + 1e-9
            assert MIN_INSTANCE_S - 1e-9 <= e - s <= MAX_INSTANCE_S + 1e-9
            assert names[a["label_id"]] == a["label"]
            # frame boundaries
            assert abs(s * 8 - round(s * 8)) < 1e-6 and abs(e * 8 - round(e * 8)) < 1e-6
        for (s0, e0), (s1, e1) in zip(segs, segs[1:]):
            assert s1 - e0 >= MIN_GAP_S - 1e-6  # non-overlapping, background between
    # the project's reader accepts it, with the class list in label-id order
    ann = load_annotations(bench)
    assert ann.class_names == names
    train_labels = {s.label for v in ann.split("train") for s in v.segments}
    assert train_labels == set(names)  # every class appears in train


def test_metadata_file(bench):
    meta = json.loads((bench.parent / "benchmark.json").read_text())
    assert meta["settings"]["seed"] == 3 and meta["settings"]["size"] == 48
    assert [c["name"] for c in meta["classes"]] == [c.name for c in CLASSES]
    assert meta["statistics"]["train"]["videos"] == 12


def test_videos_decode_with_declared_size_rate_and_length(bench):
    db = json.loads(bench.read_text())["database"]
    for vid in ("synth_train_0001", "synth_test_0000"):
        info = probe(bench.parent / "videos" / f"{vid}.mp4")
        assert (info.width, info.height) == (48, 48)
        assert info.fps == pytest.approx(8.0)
        assert info.num_frames == round(db[vid]["duration"] * 8.0)
        frames = _frames(bench.parent / "videos" / f"{vid}.mp4")
        assert frames.shape == (info.num_frames, 48, 48, 3) and frames.dtype == np.uint8
        assert frames.std() > 5  # not blank


def test_action_object_moves_only_during_its_action():
    """A belt's texture moves in the stated direction during the action and not before."""
    import cv2

    plans = plan_benchmark(num_train=40, num_test=0, seed=0, size=64, fps=10.0)
    plan, (a0, a1, label) = next((p, inst) for p in plans for inst in p.instances
                                 if CLASSES[inst[2]].family == "belt" and inst[1] - inst[0] >= 15)
    track = next(t for t in plan.tracks if t.mode == "action" and t.act_start == a0)
    plan.scene.update(noise=0.0, jitter=0.0, flicker=0.0)
    plan.scene["bg_velocity"] = [0.0, 0.0]
    frames = render_frames(plan)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)  # the pipeline default
    cx, cy = (int(round(v)) for v in track.center)
    hw, hh = int(track.params["hw"] * 0.6), int(track.params["hh"] * 0.6)

    def mean_dx(t):
        flow = dis.calc(gray[t], gray[t + 1], None)
        return float(flow[cy - hh:cy + hh, cx - hw:cx + hw, 0].mean())

    moving = np.mean([mean_dx(t) for t in range(a0 + 2, a0 + 10)])
    expected = track.params["velocity"][0]
    assert np.sign(moving) == np.sign(expected) and abs(moving) > 0.5 * abs(expected)
    if track.start < a0 - 1:
        assert abs(mean_dx(track.start)) < 0.2


def test_statistics_follow_thumos_proportions(shared_data):
    plans = plan_benchmark(num_train=300, num_test=0, seed=0, size=64, fps=10.0)
    db = {p.video_id: {"subset": p.subset, "duration": p.num_frames / p.fps,
                       "annotations": [{"label": CLASSES[c].name, "segment": [a / p.fps, b / p.fps]}
                                       for a, b, c in p.instances]} for p in plans}
    ours = annotation_statistics(db, "train")
    thumos_db = json.loads((shared_data / "thumos14" / "thumos14.json").read_text())["database"]
    thumos = annotation_statistics(thumos_db, "test")
    # coverage of a video by actions, instance durations, gaps: same scale as THUMOS14
    assert abs(ours["coverage"]["mean"] - thumos["coverage"]["mean"]) < 0.05
    assert abs(ours["instance_duration_s"]["median"] - thumos["instance_duration_s"]["median"]) < 0.5
    for q in ("p10", "p25", "p75", "p90"):
        theirs = thumos["instance_duration_s"][q]
        assert abs(ours["instance_duration_s"][q] - theirs) < 0.25 * theirs + 0.3
    # THUMOS instances within the 0.5-10 s range the generator draws from
    kept = [a["segment"][1] - a["segment"][0] for v in thumos_db.values() for a in v["annotations"]
            if 0.5 <= a["segment"][1] - a["segment"][0] <= 10.0]
    assert abs(ours["instance_duration_s"]["mean"] - np.mean(kept)) < 0.6
    assert 0.5 <= ours["instance_duration_s"]["min"] and ours["instance_duration_s"]["max"] <= 10.0
    assert 1.5 < ours["gap_s"]["median"] < 6.0
    assert 1.8 <= ours["instances_per_video"]["mean"] <= 4.0
    counts = list(ours["instances_per_class"].values())
    assert len(counts) == len(CLASSES) and max(counts) - min(counts) <= 1  # dealt evenly


def test_rerun_reuses_and_other_settings_fail(bench):
    before = bench.stat().st_mtime_ns
    assert generate_benchmark(bench.parent, seed=3, **SMALL) == bench
    assert bench.stat().st_mtime_ns == before
    with pytest.raises(RgbtadError, match="other settings"):
        generate_benchmark(bench.parent, seed=9, **SMALL)


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(RgbtadError, match="size"):
        generate_benchmark(tmp_path / "x", num_train=1, num_test=1, size=63, progress=False)
    with pytest.raises(RgbtadError, match="fps"):
        generate_benchmark(tmp_path / "x", num_train=1, num_test=1, fps=0.0, progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["synth", str(out), "--train", "1", "--test", "1", "--seed", "2", "--size", "32", "--fps", "6",
               "--min-duration", "4", "--max-duration", "5"])
    assert rc == 0
    assert (out / "annotations.json").is_file()
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["synth_test_0000.mp4", "synth_train_0000.mp4"]
    rc = main(["synth", str(tmp_path / "bad"), "--size", "31"])
    assert rc == 2
    assert "size" in capsys.readouterr().err


def test_a_class_subset_deals_only_those_classes(tmp_path):
    subset = ["wheel_ccw", "belt_left", "ball_bounce"]
    ann = generate_benchmark(tmp_path / "sub", seed=3, classes=subset, **{**SMALL, "num_train": 4, "num_test": 0})
    loaded = load_annotations(ann)
    # label ids number the chosen classes in the benchmark's class order
    assert loaded.class_names == ["belt_left", "wheel_ccw", "ball_bounce"]
    assert {s.label for v in loaded.split("train") for s in v.segments} == set(subset)
    meta = json.loads((tmp_path / "sub" / "benchmark.json").read_text())
    assert meta["settings"]["classes"] == loaded.class_names
    assert [c["name"] for c in meta["classes"]] == loaded.class_names
    # the full set is the default, and its plans do not change
    full = plan_benchmark(num_train=4, num_test=0, seed=3, size=48, fps=8.0)
    assert [p.instances for p in full] == [p.instances for p in plan_benchmark(
        num_train=4, num_test=0, seed=3, size=48, fps=8.0, classes=[c.name for c in CLASSES])]
    with pytest.raises(RgbtadError, match="invalid class subset"):
        plan_benchmark(num_train=4, num_test=0, seed=3, size=48, fps=8.0, classes=["belt_up"])
