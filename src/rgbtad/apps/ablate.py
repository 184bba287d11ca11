"""`rgbtad ablate GRID.yaml --out DIR [--seeds N]`: train and evaluate a grid of configs over
several seeds, and tabulate the mAP in the layout of the papers.

Grid file (YAML)::

    base: runs/rgb_only/config.yaml     # a config file, or an inline config mapping
    root: ../demo_out                   # optional: the folder relative paths resolve against
    set: [train.epochs=10]              # optional: overrides for every cell
    baseline: rgb_only                  # optional: the row that the gain is measured against
    seeds: 3                            # optional: N (seeds 0..N-1) or a list; --seeds N wins
    cells:                              # named cells, each a list of overrides ...
      - name: rgb_only
        set: [data.features=features/rgb]
      - name: decomposed_laf
        set: [distill.method=decomposed, distill.fusion=laf, distill.teacher_run=runs/motion_only]
    axes:                               # ... and/or a product of values per dotted key
      distill.fusion: [concat, laf]
      distill.temperature: [1.0, 2.0]

With ``axes`` alone, the cells are the product of the axes' values, named after the values
joined by "_" (a path value contributes its last component): ``concat_1.0``, ``concat_2.0``,
``laf_1.0``, ``laf_2.0``. With ``cells`` and ``axes``, every cell is crossed with every
combination (``<cell>_<values>``). Cell names use letters, digits, ``.``, ``_`` and ``-``.

The config of a cell and seed k is ``base``, then the grid's ``set``, then the cell's
overrides, then ``train.seed=k``, merged as by ``rgbtad train CONFIG --set ...`` (so a preset
such as ``distill.c2ms_stage`` fills in only the keys that none of them gives).

Paths: ``root`` defaults to the grid file's folder (a relative ``root`` is taken from there
too). A ``base`` file name, and the path keys ``data.annotations``, ``data.features``,
``distill.teacher_run`` and ``distill.teacher_features`` given in the grid (its ``set``,
cells, axes or inline ``base``), resolve against ``root``. Paths inside a ``base`` file are
read as ``rgbtad train`` reads them: relative to the working directory.

Output in ``DIR``:

* ``cells/<name>/seed<k>/``: one run directory per cell and seed. A run with a
  ``summary.json`` is reused (after checking that its config is still the cell's); one with
  a checkpoint but no summary (interrupted) is resumed;
* ``results.json``: per cell, the mAP at each tIoU and the average per seed, their means,
  the standard deviation of the average over seeds and its 95 % t interval, and the gain
  over the baseline (the mean of the per-seed differences, their standard deviation and
  95 % interval); ``pairs``: the paired difference of every two cells over their seeds
  (`rgbtad.evaluation.intervals`);
* ``results.md``: rows = cells; columns = mAP (%) at each tIoU (mean over seeds), ``Avg``
  (mean ± sample standard deviation over seeds), its ``95 % CI``, ``Δ`` (mean over seeds of
  the per-seed difference to the baseline's average, with its 95 % interval; with a
  baseline) and the number of seeds; then the paired differences of every two cells.

Why paired: every cell of a seed trains on the same features with the same seed, so what a
seed does to all cells (an easy or hard draw) cancels in the per-seed difference; its
interval is the one that says whether a method beats another, and it is often much tighter
than the two cells' own intervals. With one seed there are no intervals.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rgbtad.apps.ablate_results import format_table, summarise
from rgbtad.config import Config, build_config, load_config, parse_override
from rgbtad.core.atomic import write_json, write_text
from rgbtad.core.errors import RgbtadError
from rgbtad.core.yamlio import read_yaml_mapping

__all__ = ["Cell", "Grid", "cell_config", "load_grid", "run_ablation"]

log = logging.getLogger(__name__)

PATH_KEYS = ("data.annotations", "data.features", "distill.teacher_run", "distill.teacher_features")
GRID_KEYS = ("base", "root", "set", "baseline", "seeds", "cells", "axes")
DEFAULT_SEEDS = 3
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class Cell:
    name: str
    overrides: list[tuple[str, Any]]  # (dotted key, value), paths resolved

    def override_texts(self) -> list[str]:
        """The overrides as ``--set`` texts."""
        return [_override_text(key, value) for key, value in self.overrides]


@dataclass
class Grid:
    path: Path
    root: Path
    base: dict
    cells: list[Cell]
    seeds: list[int]
    baseline: str | None = None
    overrides: list[tuple[str, Any]] = field(default_factory=list)  # the grid's `set`


# ------------------------------------------------------------------------------ grid file
def load_grid(path: str | Path, seeds: int | None = None) -> Grid:
    """Read and check a grid file; `seeds` (a count) replaces the grid's ``seeds``."""
    path = Path(path)
    data = read_yaml_mapping(path, "grid file", "a grid must be a mapping with 'base' and 'cells' and/or 'axes'")
    unknown = sorted(set(map(str, data)) - set(GRID_KEYS))
    if unknown:
        raise RgbtadError(f"{path}: unknown grid key '{unknown[0]}' (expected: {', '.join(GRID_KEYS)})")

    def error(key: str, problem: str) -> RgbtadError:
        return RgbtadError(f"{path}: grid key '{key}': {problem}")

    root_value = data.get("root", "")
    if not isinstance(root_value, str):
        raise error("root", f"expected a folder, got {root_value!r}")
    root = path.parent / root_value

    base = data.get("base", {})
    if isinstance(base, str) and base:
        base = _read_base(_resolve(root, base))
    elif isinstance(base, dict):
        base = {section: dict(values) if isinstance(values, dict) else values
                for section, values in base.items()}
        for dotted in PATH_KEYS:
            section, name = dotted.split(".")
            if isinstance(base.get(section), dict) and name in base[section]:
                base[section][name] = _resolve_value(root, dotted, base[section][name])
    else:
        raise error("base", f"expected a config file or a config mapping, got {base!r}")

    overrides = _parse_sets(data.get("set", []), "set", root, error)
    cells = []
    raw_cells = data.get("cells")
    if raw_cells is not None:
        if not isinstance(raw_cells, list) or not raw_cells:
            raise error("cells", "expected a non-empty list of {name: ..., set: [...]}")
        for index, raw in enumerate(raw_cells):
            key = f"cells[{index}]"
            if not isinstance(raw, dict):
                raise error(key, f"expected a mapping with 'name' and 'set', got {raw!r}")
            extra = sorted(set(map(str, raw)) - {"name", "set"})
            if extra:
                raise error(f"{key}.{extra[0]}", "unknown cell key (expected 'name' and 'set')")
            name = raw.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise error(f"{key}.name", f"expected a name of letters, digits, '.', '_' and '-', got {name!r}")
            cells.append(Cell(name, _parse_sets(raw.get("set", []), f"{key}.set", root, error)))
    if "axes" in data:
        cells = _cross(cells, _parse_axes(data["axes"], root, error))
    if not cells:
        raise RgbtadError(f"{path}: the grid has no cells (give 'cells' and/or 'axes')")
    names = [cell.name for cell in cells]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise error("cells", f"cell name '{duplicates[0]}' is used more than once")

    baseline = data.get("baseline")
    if baseline is not None and baseline not in names:
        raise error("baseline", f"{baseline!r} is not one of the cells ({', '.join(names)})")
    if seeds is None:
        seed_list = _seeds(data.get("seeds", DEFAULT_SEEDS), error)
    elif seeds < 1:
        raise RgbtadError(f"--seeds must be at least 1, got {seeds}")
    else:
        seed_list = list(range(seeds))
    return Grid(path, root, base, cells, seed_list, baseline, overrides)


def _read_base(path: Path) -> dict:
    return read_yaml_mapping(path, "base config file", "a config must be a mapping of sections", empty_ok=True)


def _resolve(root: Path, value: str) -> Path:
    return Path(os.path.abspath(root / value))


def _resolve_value(root: Path, key: str, value: Any) -> Any:
    if key in PATH_KEYS and isinstance(value, str) and value:
        return str(_resolve(root, value))
    return value


def _parse_sets(entries: Any, key: str, root: Path, error) -> list[tuple[str, Any]]:
    if not isinstance(entries, list):
        raise error(key, f"expected a list of key=value strings, got {entries!r}")
    parsed = []
    for index, text in enumerate(entries):
        if not isinstance(text, str):
            raise error(f"{key}[{index}]", f"expected a key=value string, got {text!r}")
        try:
            name, value = parse_override(text)
        except RgbtadError as err:
            raise error(f"{key}[{index}]", str(err)) from None
        parsed.append((name, _resolve_value(root, name, value)))
    return parsed


def _parse_axes(axes: Any, root: Path, error) -> list[list[tuple[str, Any]]]:
    """The product of the axes: one list of (key, value) per combination."""
    if not isinstance(axes, dict) or not axes:
        raise error("axes", "expected a mapping of dotted config keys to lists of values")
    columns = []
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise error(f"axes.{key}", f"expected a non-empty list of values, got {values!r}")
        columns.append([(str(key), _resolve_value(root, str(key), value)) for value in values])
    return [list(combination) for combination in itertools.product(*columns)]


def _slug(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (bool, list, dict)) or value is None else str(value)
    if isinstance(value, str) and "/" in value:
        text = Path(value).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "empty"


def _cross(cells: list[Cell], combinations: list[list[tuple[str, Any]]]) -> list[Cell]:
    crossed = []
    for cell in cells or [Cell("", [])]:
        for combination in combinations:
            suffix = "_".join(_slug(value) for _, value in combination)
            name = f"{cell.name}_{suffix}" if cell.name else suffix
            crossed.append(Cell(name, cell.overrides + combination))
    return crossed


def _seeds(value: Any, error) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if (isinstance(value, list) and value and len(set(value)) == len(value)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        return list(value)
    raise error("seeds", f"expected a number of seeds (>= 1) or a list of distinct seeds >= 0, got {value!r}")


def _override_text(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: strings and paths stay exact


def cell_config(grid: Grid, cell: Cell, seed: int) -> Config:
    """The config of one cell and seed (see the module docstring)."""
    overrides = [*grid.overrides, *cell.overrides, ("train.seed", seed)]
    try:
        return build_config(grid.base, [_override_text(key, value) for key, value in overrides])
    except RgbtadError as err:
        raise RgbtadError(f"{grid.path}: cell '{cell.name}': {err}") from None


def _check_paths(grid: Grid, cell: Cell, cfg: Config) -> None:
    needed = {"data.annotations": cfg.data.annotations, "data.features": cfg.data.features}
    if cfg.distill.method != "none":
        needed["distill.teacher_run"] = cfg.distill.teacher_run
        needed["distill.teacher_features"] = cfg.distill.teacher_features
    for key, value in needed.items():
        if value and not Path(value).exists():
            raise RgbtadError(f"{grid.path}: cell '{cell.name}': {key} {value} does not exist")


# ------------------------------------------------------------------------------ running
def run_ablation(grid_path: str | Path, out_dir: str | Path, *, seeds: int | None = None,
                 device: str | None = None) -> dict:
    """Train (or reuse) every cell and seed of the grid; write and return the results."""
    grid = load_grid(grid_path, seeds)
    configs = {}
    for cell in grid.cells:  # every config is checked before anything trains
        for seed in grid.seeds:
            configs[cell.name, seed] = cell_config(grid, cell, seed)
        _check_paths(grid, cell, configs[cell.name, grid.seeds[0]])
    out = Path(out_dir)
    runs: dict[str, dict[int, dict]] = {}
    total = len(configs)
    for index, ((name, seed), cfg) in enumerate(configs.items(), start=1):
        run_dir = out / "cells" / name / f"seed{seed}"
        log.info("[%d/%d] cell %s, seed %d: %s", index, total, name, seed, run_dir)
        runs.setdefault(name, {})[seed] = _run(cfg, run_dir, device)
    results = summarise(grid, runs)
    write_json(out / "results.json", results)
    write_text(out / "results.md", format_table(results))
    return results


def _run(cfg: Config, run_dir: Path, device: str | None) -> dict:
    """{tiou, mAP, average_mAP} of one trained run: reused, resumed or trained."""
    from rgbtad.core.jsonio import read_json_file
    from rgbtad.runs.run_dir import SUMMARY_FILE
    from rgbtad.training.engine import CHECKPOINT
    from rgbtad.training.trainer import train

    summary_path = run_dir / SUMMARY_FILE
    if summary_path.is_file():
        _check_same_config(cfg, run_dir)
        summary = read_json_file(summary_path, "run summary")
        log.info("reusing finished run %s", run_dir)
    else:
        summary = train(cfg, run_dir, resume=(run_dir / CHECKPOINT).is_file(), device=device)
    return {key: summary[key] for key in ("tiou", "mAP", "average_mAP")}


def _check_same_config(cfg: Config, run_dir: Path) -> None:
    from rgbtad.runs.run_dir import CONFIG_FILE
    from rgbtad.training.engine import changed_keys

    changed = changed_keys(load_config(run_dir / CONFIG_FILE).to_dict(), cfg.to_dict())
    if changed:
        raise RgbtadError(f"{run_dir}: finished with another config (changed: {', '.join(changed)}); "
                          f"delete the folder to train it again, or use another --out")
