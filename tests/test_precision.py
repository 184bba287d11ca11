"""The precision decision: bfloat16 only where the hardware runs it natively."""

import logging

import numpy as np
import pytest
import torch

from rgbtad.core import precision
from rgbtad.core.errors import RgbtadError
from rgbtad.video.snippets import SnippetSpec

# first lines of real /proc/cpuinfo files (flags trimmed to the relevant part)
EPYC_MILAN = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 avx f16c avx2 sha_ni vaes vpclmulqdq rdpid fsrm
"""
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ICE_LAKE = """model name\t: Intel(R) Xeon(R) Platinum 8375C
flags\t\t: fpu avx2 avx512f avx512bw avx512vl avx512_vnni avx512_vbmi2
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp sve bf16 i8mm svebf16
"""
GRAVITON2 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop
"""


@pytest.mark.parametrize("machine, cpuinfo, native", [
    ("x86_64", EPYC_MILAN, False),
    ("x86_64", ICE_LAKE, False),  # AVX-512 without its BF16 extension emulates bf16
    ("x86_64", SAPPHIRE_RAPIDS, True),
    ("aarch64", GRAVITON3, True),
    ("aarch64", GRAVITON2, False),
])
def test_native_bf16_is_read_from_the_cpu_flags(machine, cpuinfo, native):
    assert precision.native_bf16_from_flags(machine, precision.cpuinfo_flags(cpuinfo)) is native


def test_no_flags_defer_to_the_other_probes():
    assert precision.native_bf16_from_flags("x86_64", frozenset()) is None
    assert precision.native_bf16_from_flags("riscv64", frozenset({"rv64imafdc"})) is None


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make this CPU report native bf16 or not; clears the cached answers around the test."""
    def set_native(native: bool):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    precision._announce.cache_clear()
    yield set_native
    precision._announce.cache_clear()


def test_auto_picks_bf16_only_on_a_cpu_with_native_support(fake_cpu):
    fake_cpu(True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    fake_cpu(False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.resolve_precision(None, torch.device("cpu")) == "fp32"


def test_explicit_choices_are_honoured(fake_cpu):
    fake_cpu(True)
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    fake_cpu(False)
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_cuda_follows_the_device_capability(monkeypatch, fake_cpu):
    fake_cpu(False)
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda device: True)
    assert precision.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda device: False)
    assert precision.resolve_precision("auto", "cuda:0") == "fp32"


def test_the_decision_is_logged_once_and_emulated_bf16_warns(fake_cpu, caplog):
    fake_cpu(False)
    with caplog.at_level(logging.INFO, logger="rgbtad.core.precision"):
        for _ in range(3):
            precision.resolve_precision("auto", "cpu")
            precision.resolve_precision("fp32", "cpu")
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "precision fp32" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rgbtad.core.precision"):
        precision.resolve_precision("bf16", "cpu")
        precision.resolve_precision("bf16", "cpu")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "slower" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


def test_unknown_precision_is_a_user_error():
    with pytest.raises(RgbtadError, match="unknown precision 'fp16'"):
        precision.resolve_precision("fp16", "cpu")


def test_autocast_runs_bf16_or_leaves_fp32():
    x = torch.randn(2, 4)
    layer = torch.nn.Linear(4, 3)
    with precision.autocast("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with precision.autocast("fp32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ValueError):
        precision.autocast("auto", "cpu")


def test_explicit_bf16_runs_on_a_cpu_without_native_support(fake_cpu, caplog):
    """A user who asks for bf16 gets it (emulated, with one warning), and the result stays
    close to fp32."""
    from rgbtad.backbones import create_backbone
    from rgbtad.features.extract import snippet_encoder

    fake_cpu(False)
    torch.manual_seed(0)
    net = create_backbone("tsm_tiny", "rgb")
    frames = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="rgbtad.core.precision"):
        bf16 = snippet_encoder(net, SnippetSpec(frames=8, stride=8), precision="bf16").encode(iter([frames]), 8)
    fp32 = snippet_encoder(net, SnippetSpec(frames=8, stride=8), precision="fp32").encode(iter([frames]), 8)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (2, net.feature_dim)
    assert np.corrcoef(bf16.ravel(), fp32.ravel())[0, 1] > 0.95
