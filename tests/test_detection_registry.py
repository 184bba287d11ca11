"""The detector interface: the registry and its one `build_model`, the `Detector` protocol that
ActionFormer and every student implement, students built from ActionFormer's public parts, the
teacher's features as their own input and batch field, and the export mode of conv attention."""

import pytest
import torch

from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.batching import collate
from rgbtad.detection import (
    ActionFormer,
    ActionFormerSpec,
    Detector,
    PyramidDetector,
    PyramidHead,
    build_detector,
    build_model,
    model_name,
    register_model,
    registered_models,
)
from rgbtad.detection.actionformer import build_actionformer
from rgbtad.detection.attention import ConvAttention, local_attention_mode
from rgbtad.distill import C2MSStudent, ConventionalKDStudent, DecomposedStudent, FrozenTeacher

TINY = {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 9,
        "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}
STUDENT_DIM, TEACHER_DIM, LENGTH = 12, 20, 128


def config(**distill):
    return build_config({"data": {"input_dim": STUDENT_DIM, "max_seq_len": LENGTH}, "model": dict(TINY),
                         "train": {"droppath": 0.0}, "distill": distill})


def student(**distill):
    torch.manual_seed(0)
    model = build_model(config(teacher_input_dim=TEACHER_DIM, **distill), 3)
    teacher_cfg = build_config({"data": {"input_dim": TEACHER_DIM, "max_seq_len": LENGTH}, "model": dict(TINY)})
    model.attach_teacher(FrozenTeacher(build_detector(teacher_cfg, 3), "teacher", TEACHER_DIM, 32))
    return model


def inputs(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    masks = torch.arange(LENGTH)[None] < torch.tensor([[100], [LENGTH]])[:batch]
    feats = torch.randn(batch, STUDENT_DIM, LENGTH, generator=generator) * masks[:, None]
    teacher = torch.randn(batch, TEACHER_DIM, LENGTH, generator=generator) * masks[:, None]
    return feats, masks, teacher


def test_every_method_is_registered_and_the_config_names_it():
    assert registered_models() == ["actionformer", "c2ms", "conventional", "decomposed", "gtad", "tadtr", "tridet"]
    assert model_name(config()) == "actionformer"
    assert model_name(config(method="c2ms")) == "c2ms"
    kinds = {"none": ActionFormer, "conventional": ConventionalKDStudent, "decomposed": DecomposedStudent}
    for method, kind in kinds.items():
        model = build_model(config(method=method, teacher_input_dim=TEACHER_DIM), 3)
        assert type(model) is kind and isinstance(model, Detector)
    c2ms = build_model(config(method="c2ms", hallucinate_dim=8, teacher_input_dim=STUDENT_DIM + 8), 3)
    assert isinstance(c2ms, C2MSStudent) and isinstance(c2ms, Detector)
    # the plain detector of a student's config: what a teacher or an inner detector is
    assert type(build_detector(config(method="decomposed"), 3)) is ActionFormer


def test_an_unknown_name_is_one_error_listing_the_registered_ones():
    cfg = config()
    cfg.distill.method = "decomposd"  # past the config's own check, as a new method would be
    with pytest.raises(RgbtadError, match=r"no model named 'decomposd' .*actionformer, c2ms, conventional, "
                                          r"decomposed, gtad, tadtr, tridet\).*did you mean 'decomposed'\?"):
        build_model(cfg, 3)


def test_a_name_registers_once():
    with pytest.raises(ValueError, match="'actionformer' is already registered"):
        register_model("actionformer")(lambda cfg, num_classes: None)
    assert register_model("actionformer")(build_actionformer) is build_actionformer  # the same one: no conflict


def test_actionformer_exposes_its_stages_and_its_loss_normaliser():
    torch.manual_seed(0)
    model = build_detector(config(), 3).train()
    assert isinstance(model, PyramidDetector) and model.training_inputs == ()
    feats, masks, _ = inputs()
    out = model(feats, masks)
    pyramid, pyramid_masks = model.encode(feats, masks)
    staged = model.predict(pyramid, pyramid_masks)
    for a, b in zip(out.cls_logits, staged.cls_logits):
        assert torch.equal(a, b)
    model.losses(out, [torch.tensor([[10.0, 30.0]])] * 2, [torch.tensor([0])] * 2)
    assert model.loss_normalizer == float(model.criterion.normalizer) != 100.0  # the EMA moved


def test_the_decomposed_joint_detector_is_a_runnable_neck_and_heads():
    model = student(method="decomposed")
    assert isinstance(model.joint, PyramidHead) and not hasattr(model.joint, "embed")
    feats, masks, _ = inputs()
    with torch.no_grad():
        pyramid, level_masks = model.appearance.encode(feats, masks)
        out = model.joint(pyramid, level_masks)  # a whole forward, not a half-deleted detector
    assert [x.shape[1] for x in out.cls_logits] == [128, 64, 32, 16]
    projection = student(method="decomposed", fuse_at="projection")
    assert type(projection.joint) is ActionFormer


def test_a_pyramid_head_starts_as_the_neck_and_heads_of_a_whole_detector():
    spec = ActionFormerSpec.from_config(config(), 3)
    torch.manual_seed(5)
    whole = ActionFormer(spec).state_dict()
    torch.manual_seed(5)
    head = PyramidHead(spec).state_dict()
    assert set(head) == {k for k in whole if not k.startswith(("embed.", "encoder."))}
    assert all(torch.equal(value, whole[key]) for key, value in head.items())


@pytest.mark.parametrize("method", ["conventional", "decomposed"])
def test_a_student_reads_the_same_features_in_both_modes_and_the_teachers_as_their_own(method):
    model = student(method=method)
    feats, masks, teacher = inputs()
    model.train()
    losses = model.losses(model(feats, masks, teacher_feats=teacher), [torch.tensor([[10.0, 30.0]])] * 2,
                          [torch.tensor([0])] * 2)
    assert torch.isfinite(losses["final_loss"]) and model.training_inputs == ("teacher_feats",)
    with pytest.raises(ValueError, match="needs teacher_feats"):
        model(feats, masks)
    with pytest.raises(ValueError, match=r"teacher_feats of shape \(2, 20, 64\), expected \(2, 20, 128\)"):
        model(feats, masks, teacher_feats=teacher[..., :64])
    with pytest.raises(ValueError, match="student-only features with 12 channels"):
        model(torch.cat([feats, teacher], 1), masks)
    model.eval()
    with torch.no_grad():
        assert type(model(feats, masks)).__name__ == "DetectorOutput"  # no teacher input read


def test_collate_keeps_the_teachers_features_as_their_own_field():
    item = {"video_id": "v", "feats": torch.zeros(3, 5), "segments": torch.zeros(0, 2),
            "labels": torch.zeros(0, dtype=torch.long), "fps": 1.0, "duration": 5.0, "feat_stride": 1,
            "feat_num_frames": 1}
    assert "teacher_feats" not in collate([item])
    batch = collate([dict(item, teacher_feats=torch.ones(2, 5))] * 2)
    assert [t.shape for t in batch["teacher_feats"]] == [(2, 5)] * 2 and batch["feats"][0].shape == (3, 5)


@pytest.mark.parametrize("rel_pos", [False, True])
def test_the_shifted_attention_mode_equals_the_chunked_one(rel_pos):
    torch.manual_seed(0)
    attention = ConvAttention(16, 2, window=5, rel_pos=rel_pos).eval()
    x = torch.randn(2, 16, 40)
    mask = (torch.arange(40)[None] < torch.tensor([[30], [40]])).unsqueeze(1)
    with torch.no_grad():
        chunked, _ = attention(x, mask)
        with local_attention_mode(attention, "shifted"):
            assert attention.local_mode == "shifted"
            shifted, _ = attention(x, mask)
        again, _ = attention(x, mask)
    assert attention.local_mode == "chunked" and torch.equal(again, chunked)
    torch.testing.assert_close(shifted, chunked, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="chunked, shifted"):
        attention.set_local_mode("strided")
