"""Feature store on the real I3D features, channel selection, errors, time <-> grid."""

from __future__ import annotations

import numpy as np
import pytest

from rgbtad.config import DataConfig
from rgbtad.core.errors import RgbtadError
from rgbtad.core.timebase import SnippetGrid
from rgbtad.features.store import FeatureStore, parse_channels


@pytest.fixture(scope="module")
def real_features(shared_data):
    return shared_data / "features"


def test_real_float64_features_load_as_float32(real_features):
    raw = np.load(real_features / "highjump_i3d.npy")
    assert raw.dtype == np.float64 and raw.shape == (164, 2048)
    feats = FeatureStore(real_features, input_dim=2048).load("highjump_i3d")
    assert feats.dtype == np.float32 and feats.shape == (164, 2048)
    assert feats.flags.c_contiguous
    np.testing.assert_array_equal(feats, raw.astype(np.float32))


@pytest.mark.parametrize("channels, columns", [
    ("all", slice(0, 2048)), ("rgb", slice(0, 1024)), ("flow", slice(1024, 2048)),
    ("RGB", slice(0, 1024)), ("100:612", slice(100, 612)), ("1024:", slice(1024, 2048)),
])
def test_channel_selection(real_features, channels, columns):
    raw = np.load(real_features / "tennis26_i3d.npy").astype(np.float32)
    store = FeatureStore(real_features, channels=channels)
    np.testing.assert_array_equal(store.load("tennis26_i3d"), raw[:, columns])


def test_wrong_dimension_error_names_file_and_channels(real_features):
    store = FeatureStore(real_features, channels="rgb", input_dim=2048)
    with pytest.raises(RgbtadError) as err:
        store.load("highjump_i3d")
    assert str(err.value) == (
        f"{real_features / 'highjump_i3d.npy'}: feature dimension 1024 after selecting "
        "channels 'rgb', expected 2048"
    )


def test_channels_out_of_range_for_the_file(real_features):
    store = FeatureStore(real_features, channels="flow")
    with pytest.raises(RgbtadError, match=r"mmaction2_bsp_v_test1\.npy: channels 'flow' \(1024:2048\) do not fit in 32-d"):
        store.load("mmaction2_bsp_v_test1")


def test_missing_file_and_folder(real_features, tmp_path):
    store = FeatureStore(real_features)
    with pytest.raises(RgbtadError) as err:
        store.load("video_test_0000004")
    assert str(real_features / "video_test_0000004.npy") in str(err.value)
    with pytest.raises(RgbtadError, match="feature folder not found"):
        FeatureStore(tmp_path / "nowhere")
    with pytest.raises(RgbtadError, match="not set"):
        FeatureStore("")


def _save(path, array):
    np.save(path, array)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b"this is not numpy"), "not a readable .npy array"),
    (lambda p: p.write_bytes(b""), "not a readable .npy array"),
    (lambda p: _save(p, np.zeros(10, dtype=np.float32)), "must be 2-D (T x C), got shape (10,)"),
    (lambda p: _save(p, np.zeros((2, 3, 4), dtype=np.float32)), "must be 2-D"),
    (lambda p: _save(p, np.zeros((0, 8), dtype=np.float32)), "features are empty (0 snippets)"),
    (lambda p: _save(p, np.array([["a"] * 8] * 3)), "must be numeric"),
    (lambda p: _save(p, np.array([[object()] * 8] * 3, dtype=object)), "not a readable .npy array"),
])
def test_bad_feature_files(tmp_path, make, expected):
    make(tmp_path / "vid.npy")
    with pytest.raises(RgbtadError) as err:
        FeatureStore(tmp_path).load("vid")
    assert str(err.value).startswith(str(tmp_path / "vid.npy")) and expected in str(err.value)


def test_truncated_npy(real_features, tmp_path):
    data = (real_features / "tennis26_i3d.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(RgbtadError, match=r"cut\.npy: not a readable \.npy array"):
        FeatureStore(tmp_path).load("cut")


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e300])
def test_non_finite_values(tmp_path, value):
    array = np.zeros((6, 4))
    array[3, 1] = value  # 1e300 overflows float32 to inf
    np.save(tmp_path / "v.npy", array)
    with pytest.raises(RgbtadError, match=r"NaN or infinite values \(in 1 of 6 snippets, first at snippet 3\)"):
        FeatureStore(tmp_path).load("v")


def test_prefix_ext_and_video_ids(tmp_path):
    for vid in ("b", "a"):
        np.save(tmp_path / f"v_{vid}.npy", np.ones((3, 2), dtype=np.float32))
    (tmp_path / "notes.txt").write_text("x")
    np.save(tmp_path / "other.npy", np.ones((3, 2)))
    store = FeatureStore(tmp_path, prefix="v_", ext=".npy", input_dim=2)
    assert store.video_ids() == ["a", "b"]
    assert store.path("a") == tmp_path / "v_a.npy"
    assert store.load("a").shape == (3, 2)


def test_from_config(real_features):
    cfg = DataConfig(features=str(real_features), channels="flow", input_dim=1024)
    store = FeatureStore.from_config(cfg)
    assert store.load("highjump_i3d").shape == (164, 1024)


def test_parse_channels():
    assert parse_channels("all", None) == slice(None)
    assert parse_channels("all", 512) == slice(0, 512)
    assert parse_channels("rgb", 2048) == slice(0, 1024)
    assert parse_channels(" 3:7 ", 10) == slice(3, 7)
    for bad in ("rgbflow", "a:b", "5:2", "-1:3", "2:2"):
        with pytest.raises(RgbtadError):
            parse_channels(bad, 2048)
    with pytest.raises(RgbtadError, match="do not fit in 1024-d"):
        parse_channels("flow", 1024)
    with pytest.raises(RgbtadError):
        FeatureStore(".", channels="bogus")


def test_snippet_centers_and_grid_round_trip():
    thumos = SnippetGrid(stride=4, frames=16, fps=30.0)
    centers = thumos.centers(5)
    np.testing.assert_allclose(centers, (np.arange(5) * 4 + 8) / 30.0)
    # the centre of snippet i is grid position i
    np.testing.assert_allclose(thumos.to_grid(centers), np.arange(5), atol=1e-12)
    assert thumos.to_grid(0.0) == pytest.approx(-2.0)  # THUMOS: t*30/4 - 2
    assert isinstance(thumos.to_grid(1.0), float) and isinstance(thumos.to_seconds(np.float32(2)), float)
    assert thumos.half_snippet == 2.0
    t = np.random.default_rng(0).uniform(0, 500, size=100)
    for stride, frames, fps in ((4, 16, 30.0), (16, 16, 15.0), (8, 32, 29.97)):
        grid = SnippetGrid(stride, frames, fps)
        np.testing.assert_allclose(grid.to_seconds(grid.to_grid(t)), t, rtol=0, atol=1e-9)
    # the release's arithmetic on float32 segments (ActionFormer's dataset), bit for bit
    segs = np.array([[12.3, 45.6], [0.1, 1e3]], dtype=np.float32)
    assert np.array_equal(thumos.to_grid(segs), (segs * 30.0 - 0.5 * 16) / 4)
    for bad in (0, -4, None, True):
        with pytest.raises(RgbtadError, match="stride must be a positive number"):
            SnippetGrid(bad, 16, 30.0)
