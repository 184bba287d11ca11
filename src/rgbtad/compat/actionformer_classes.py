"""The class names of an imported ActionFormer release model (`rgbtad.compat.actionformer`):
which annotation file names them, and its classes in label_id order (the release's
``label_dict``).
"""

from __future__ import annotations

from pathlib import Path

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

__all__ = ["AGNOSTIC_CLASS_NAME", "annotation_path", "class_names"]

# Name of the single class of a class-agnostic (num_classes == 1) release model.
AGNOSTIC_CLASS_NAME = "action"


def annotation_path(release: dict, config_path: Path, annotations: str | Path | None) -> Path:
    """The annotation file given (`annotations`) or, without one, the release's
    ``dataset.json_file`` (a relative one in the working folder, the config's folder or the
    folder above it)."""
    if annotations is not None:
        ann_path = Path(annotations)
        if not ann_path.exists():
            raise RgbtadError(f"{ann_path}: annotation file not found")
        return ann_path
    json_file = release["dataset"].get("json_file")
    if not json_file:
        raise RgbtadError(f"{config_path}: no dataset.json_file; give the annotation file "
                          "with --ann to name the classes")
    ann_path = _resolve(str(json_file), config_path)
    if ann_path is None:
        raise RgbtadError(f"{config_path}: annotation file '{json_file}' not found; give it "
                          "with --ann")
    return ann_path


def _resolve(path_text: str, config_path: Path) -> Path | None:
    path = Path(path_text)
    candidates = [path] if path.is_absolute() else [
        Path.cwd() / path, config_path.parent / path, config_path.parent.parent / path,
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def class_names(ann_path: Path, num_classes: int) -> list[str]:
    """Class names in label_id order (the release's ``label_dict``)."""
    names = _label_ids_from_json(ann_path)
    if names is None:
        # not an ActionFormer JSON with label ids: use rgbtad's annotation reader
        from rgbtad.data.annotations import load_annotations

        names = list(load_annotations(ann_path).class_names)
    return _check_class_count(names, num_classes, ann_path)


def _label_ids_from_json(path: Path) -> list[str] | None:
    """``label_id -> label`` of an ActionFormer JSON, or None when the file is not one."""
    if not path.is_file():
        return None
    data = read_json_file(path, "annotation")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        return None
    id_to_name: dict[int, str] = {}
    for vid, video in data["database"].items():
        for ann in (video or {}).get("annotations") or []:
            if not isinstance(ann, dict) or "label" not in ann or "label_id" not in ann:
                return None
            label_id, label = int(ann["label_id"]), str(ann["label"])
            known = id_to_name.setdefault(label_id, label)
            if known != label:
                raise RgbtadError(f"{path}: video '{vid}': label_id {label_id} is both "
                                  f"{known!r} and {label!r}")
    if not id_to_name:
        return None
    names = [id_to_name.get(i) for i in range(max(id_to_name) + 1)]
    gaps = [i for i, name in enumerate(names) if name is None]
    if gaps:
        raise RgbtadError(f"{path}: no annotation uses label_id(s) {gaps[:5]}")
    return names


def _check_class_count(names: list[str], num_classes: int, source: Path) -> list[str]:
    if num_classes == 1 and len(names) != 1:
        # class-agnostic release model (ActivityNet): every action is class 0
        return [AGNOSTIC_CLASS_NAME]
    if len(names) != num_classes:
        raise RgbtadError(f"{source}: defines {len(names)} classes but the checkpoint's config "
                          f"has num_classes {num_classes}")
    return names
