"""The model registry: every buildable model under one name, and one `build_model`.

A builder is registered with ``@register_model(name)`` and called as
``builder(cfg, num_classes, **options)`` (``cfg`` an `rgbtad.config.Config`); it returns a
`rgbtad.detection.protocol.Detector`. Two kinds of names:

* detector families, chosen by ``model.name``: ``"actionformer"`` and ``"tridet"``
  (registered by `rgbtad.detection.actionformer` and `rgbtad.detection.tridet`, which
  ``import rgbtad.detection`` loads). Their builders take ``input_dim=`` to override
  ``data.input_dim`` (a student's inner detector on other features);
* distillation methods, ``"conventional"``, ``"decomposed"`` and ``"c2ms"``, registered by
  `rgbtad.distill` when it is imported.

A family whose neck and heads can run on an encoder pyramid computed elsewhere (the
decomposed student's fused pyramid) also registers that part with
``@register_pyramid_head(name)``: ``builder(cfg, num_classes, input_dim=)`` returning a
module whose ``forward(pyramid, pyramid_masks)`` is the detector's ``predict``, with its
``losses`` and ``postprocess``; `build_pyramid_head` builds it.

Which name a config builds is `model_name`: the detector family (``model.name``) when
``distill.method`` is "none", else the method. `rgbtad.detection` comes before `rgbtad.distill` in the pipeline
and never imports it, so whoever builds a model from a config that may name a student
imports `rgbtad.distill` first: `rgbtad.runs` and `rgbtad.training` do, and
``from rgbtad.distill import build_model`` (the same function) does it implicitly. A
method name that is not registered is an error that says so.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.protocol import Detector

__all__ = ["build_detector", "build_model", "build_pyramid_head", "model_name", "register_model",
           "register_pyramid_head", "registered_models", "seq_len_holding"]

Builder = Callable[..., Detector]
_BUILDERS: dict[str, Builder] = {}
_PYRAMID_HEADS: dict[str, Callable[..., nn.Module]] = {}


def _registrar(table: dict, name: str, what: str) -> Callable:
    def register(builder):
        if name in table and table[name] is not builder:
            raise ValueError(f"a {what} named {name!r} is already registered ({table[name]!r})")
        table[name] = builder
        return builder

    return register


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register a builder (a function or a class) under `name`."""
    return _registrar(_BUILDERS, name, "model")


def register_pyramid_head(name: str) -> Callable:
    """Decorator: register the builder of family `name`'s neck and heads alone."""
    return _registrar(_PYRAMID_HEADS, name, "pyramid head")


def registered_models() -> list[str]:
    """The registered names, sorted."""
    return sorted(_BUILDERS)


def model_name(cfg) -> str:
    """The registered name `cfg` builds: the detector family for ``distill.method`` "none",
    else the distillation method."""
    return cfg.model.name if cfg.distill.method == "none" else cfg.distill.method


def build_model(cfg, num_classes: int, **options) -> Detector:
    """The model `cfg` describes (`model_name`) for `num_classes` classes, with random
    weights drawn from the global torch RNG; `options` go to its builder."""
    name = model_name(cfg)
    builder = _BUILDERS.get(name)
    if builder is None:
        raise RgbtadError(_unknown(name))
    return builder(cfg, num_classes, **options)


def build_detector(cfg, num_classes: int, *, input_dim: int | None = None) -> Detector:
    """The plain detector of `cfg`'s family whatever ``distill.method`` says (a teacher, a
    student's inner detector); `input_dim` overrides ``data.input_dim``."""
    builder = _BUILDERS.get(cfg.model.name)
    if builder is None:
        raise RgbtadError(_unknown(cfg.model.name))
    return builder(cfg, num_classes, input_dim=input_dim)


def build_pyramid_head(cfg, num_classes: int, *, input_dim: int) -> nn.Module:
    """The neck, heads, loss and post-processing of `cfg`'s detector family on an encoder
    pyramid of `input_dim` channels computed elsewhere (``model.name`` must register one)."""
    builder = _PYRAMID_HEADS.get(cfg.model.name)
    if builder is None:
        raise RgbtadError(f"model.name {cfg.model.name!r} has no neck and heads that run on an outside "
                          f"encoder pyramid, which distill.method {cfg.distill.method!r} needs (families "
                          f"that have: {', '.join(sorted(_PYRAMID_HEADS)) or 'none'})")
    return builder(cfg, num_classes, input_dim=input_dim)


def seq_len_holding(cfg, num_snippets: int) -> int:
    """The shortest ``data.max_seq_len`` for `cfg`'s detector that holds `num_snippets`
    whole: the count rounded up to a multiple of the detector's ``max_div_factor``."""
    import math

    with torch.random.fork_rng(devices=[]):  # building the detector must not move the caller's RNG
        step = int(build_detector(cfg, 1).max_div_factor)
    return step * max(1, math.ceil(int(num_snippets) / step))


def _unknown(name: str) -> str:
    known = registered_models()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"no model named {name!r} is registered (config key 'distill.method'; registered: "
            f"{', '.join(known) or 'none'}){hint}; distillation students are registered when "
            f"rgbtad.distill is imported")
