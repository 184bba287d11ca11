"""Clip (snippet-classifier) training of a backbone on the synthetic benchmark."""

import pytest
import torch

from rgbtad.backbones import create_backbone
from rgbtad.synthetic.generate import generate_benchmark
from rgbtad.training.backbones import load_clip_summary, snippet_label, train_clip_backbone
from rgbtad.core.errors import RgbtadError
from rgbtad.video.snippets import SnippetSpec


def _train(annotations, videos, out, *, modality="rgb", fps=None, size=None, snippet_frames=8, stride=2,
           flow_method="dis", **options):
    """`train_clip_backbone` with the snippet settings of these tests (8 frames every 2, DIS flow)."""
    snippets = SnippetSpec(modality=modality, frames=snippet_frames, stride=stride, fps=fps, size=size,
                           flow_method=flow_method)
    return train_clip_backbone(annotations, videos, out, snippets=snippets, **options)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip_bench")
    return generate_benchmark(out, num_train=12, num_test=2, seed=1, size=32, fps=8.0,
                              min_duration=8.0, max_duration=12.0, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_snippet_label_rule():
    segs = [(2.0, 4.0, 3), (6.0, 6.5, 1)]
    fps, n = 10.0, 8
    assert snippet_label(25, n, fps, segs, 9) == 3        # [2.5, 3.3) inside the instance
    assert snippet_label(0, n, fps, segs, 9) == 9         # [0, 0.8) touches nothing: background
    assert snippet_label(15, n, fps, segs, 9) is None     # [1.5, 2.3): centre outside, boundary
    assert snippet_label(58, n, fps, segs, 9) == 1        # short instance inside a longer snippet
    assert snippet_label(64, n, fps, segs, 9) is None     # [6.4, 7.2): centre after the instance


def test_rgb_training_learns_and_saves_loadable_weights(tiny, tmp_path):
    weights = tmp_path / "rgb.pt"
    result = _train(tiny, tiny.parent / "videos", weights, modality="rgb", fps=8.0, size=32,
                                 snippet_frames=4, stride=2, epochs=4, per_class=24, batch_size=32, lr=4e-3,
                                 val_subset="train", seed=0, progress=False)
    assert not result.skipped
    assert len(result.class_names) == 13 and result.class_names[-1] == "background"
    chance = 1.0 / len(result.class_names)
    # it learns: training loss falls and eval-mode accuracy on the (training) snippets is well
    # above chance
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.val["balanced_accuracy"] > 2.5 * chance
    # the weights are a native state dict that the backbone factory loads
    net = create_backbone("tsm_tiny", "rgb", weights=weights)
    saved = torch.load(weights)
    assert set(saved) == set(net.state_dict())
    for key, value in net.state_dict().items():
        assert torch.equal(value, saved[key])
    summary = load_clip_summary(weights)
    assert summary["settings"]["modality"] == "rgb" and summary["val"]["per_class"]
    head = torch.load(result.head)
    assert head["weight"].shape == (13, net.feature_dim)

    # the same settings again: reused, not retrained
    mtime = weights.stat().st_mtime_ns
    again = _train(tiny, tiny.parent / "videos", weights, modality="rgb", fps=8.0, size=32,
                                snippet_frames=4, stride=2, epochs=4, per_class=24, batch_size=32, lr=4e-3,
                                val_subset="train", seed=0, progress=False)
    assert again.skipped and weights.stat().st_mtime_ns == mtime
    assert again.val == result.val


def test_training_is_deterministic(tiny, tmp_path):
    kwargs = dict(modality="tg", fps=8.0, size=32, snippet_frames=3, epochs=1, per_class=4, batch_size=16,
                  seed=5, progress=False)
    _train(tiny, tiny.parent / "videos", tmp_path / "a.pt", **kwargs)
    _train(tiny, tiny.parent / "videos", tmp_path / "b.pt", **kwargs)
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_flow_training_with_stored_flow_matches_computed(tiny, tmp_path):
    from rgbtad.motion.storage import compute_motion

    videos = sorted((tiny.parent / "videos").glob("synth_train_*.mp4"))
    flow_dir = tmp_path / "flow"
    compute_motion(videos, flow_dir, method="dis", fps=8.0, size=32)
    kwargs = dict(modality="flow", flow_method="dis", fps=8.0, size=32, snippet_frames=4, epochs=1,
                  per_class=4, batch_size=16, seed=2, progress=False)
    stored = _train(tiny, tiny.parent / "videos", tmp_path / "s.pt", flow_dir=flow_dir, **kwargs)
    computed = _train(tiny, tiny.parent / "videos", tmp_path / "c.pt", **kwargs)
    assert stored.history == computed.history
    net = create_backbone("tsm_tiny", "flow", weights=tmp_path / "s.pt")
    x = torch.zeros(1, 2, 4, 32, 32)
    assert net(x).shape == (1, net.feature_dim)


def test_user_errors(tiny, tmp_path):
    with pytest.raises(RgbtadError, match="modality"):
        _train(tiny, tiny.parent / "videos", tmp_path / "x.pt", modality="depth", progress=False)
    with pytest.raises(RgbtadError, match="video folder"):
        _train(tiny, tmp_path / "nowhere", tmp_path / "x.pt", progress=False)
    with pytest.raises(RgbtadError, match="subset"):
        _train(tiny, tiny.parent / "videos", tmp_path / "x.pt", subset="validation", progress=False)
    assert not (tmp_path / "x.pt").exists()


def test_rgb_backbone_distilled_from_a_motion_backbone(tiny, tmp_path):
    videos = tiny.parent / "videos"
    common = dict(fps=8.0, size=32, snippet_frames=4, per_class=4, batch_size=16, progress=False)
    teacher = _train(tiny, videos, tmp_path / "tg.pt", modality="tg", epochs=1, seed=0, **common)
    plain = _train(tiny, videos, tmp_path / "rgb.pt", modality="rgb", epochs=1, seed=3, **common)
    decomposed = _train(tiny, videos, tmp_path / "dec.pt", modality="rgb", epochs=1, seed=3,
                                     teacher=teacher.weights, distill="decomposed", val_subset="test", **common)
    no_mimic = _train(tiny, videos, tmp_path / "dec0.pt", modality="rgb", epochs=1, seed=3,
                                   teacher=teacher.weights, distill="decomposed", mimic_weight=0.0, **common)
    conventional = _train(tiny, videos, tmp_path / "conv.pt", modality="rgb", epochs=1, seed=3,
                                       teacher=teacher.weights, distill="conventional", **common)
    # the teacher's terms change what is learnt (same seed, same snippets)
    losses = {r.history[0]["loss"] for r in (plain, decomposed, no_mimic, conventional)}
    assert len(losses) == 4
    # the feature-mimic regressor is a training device only: nothing of it is saved
    assert set(torch.load(decomposed.weights)) == set(torch.load(no_mimic.weights))
    # decomposed: one classifier shared by the two halves of the feature; the extracted
    # feature (loadable by the backbone factory) keeps its full width
    net = create_backbone("tsm_tiny", "rgb", weights=decomposed.weights)
    assert torch.load(decomposed.head)["weight"].shape == (13, net.feature_dim // 2)
    assert set(decomposed.val["branches"]) == {"appearance", "motion"}
    assert all(0 <= v <= 1 for v in decomposed.val["branches"].values())
    assert load_clip_summary(decomposed.weights)["settings"]["teacher"]["distill"] == "decomposed"
    assert torch.load(conventional.head)["weight"].shape == (13, net.feature_dim)


def test_distillation_refuses_a_teacher_of_other_snippets(tiny, tmp_path):
    videos = tiny.parent / "videos"
    teacher = _train(tiny, videos, tmp_path / "tg.pt", modality="tg", fps=8.0, size=32,
                                  snippet_frames=4, epochs=1, per_class=2, progress=False)
    with pytest.raises(RgbtadError, match="teacher trained on other snippets: snippet_frames 4"):
        _train(tiny, videos, tmp_path / "x.pt", modality="rgb", fps=8.0, size=32, snippet_frames=6,
                            epochs=1, per_class=2, teacher=teacher.weights, progress=False)
    with pytest.raises(RgbtadError, match="distill mode"):
        _train(tiny, videos, tmp_path / "x.pt", modality="rgb", fps=8.0, size=32, snippet_frames=4,
                            teacher=teacher.weights, distill="both", progress=False)


def test_training_can_start_from_a_trained_backbone(tiny, tmp_path):
    videos = tiny.parent / "videos"
    common = dict(fps=8.0, size=32, snippet_frames=4, per_class=4, batch_size=16, progress=False)
    start = _train(tiny, videos, tmp_path / "rgb.pt", modality="rgb", epochs=1, seed=0, **common)
    # a learning rate of zero leaves every weight where it started: the given backbone's
    tuned = _train(tiny, videos, tmp_path / "tuned.pt", modality="rgb", epochs=1, seed=5, lr=0.0,
                                init_from=start.weights, **common)
    before, after = torch.load(start.weights), torch.load(tuned.weights)
    conv_weights = [k for k in before if k.endswith("conv.weight")]
    assert conv_weights and all(torch.equal(before[k], after[k]) for k in conv_weights)
    assert load_clip_summary(tuned.weights)["settings"]["init_from"] == str(start.weights.resolve())
    tg = _train(tiny, videos, tmp_path / "tg.pt", modality="tg", epochs=1, seed=0, **common)
    with pytest.raises(RgbtadError, match="other architecture: modality 'tg'"):
        _train(tiny, videos, tmp_path / "x.pt", modality="rgb", epochs=1, init_from=tg.weights,
                            **common)
