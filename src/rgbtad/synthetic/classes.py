"""The action classes of the synthetic benchmark, and how each object family looks.

**Classes** (`CLASSES`, 12): four *motion pairs* whose two classes use the same object, drawn
from the same appearance distribution per instance, and differ only in how its texture moves
(direction of translation, sense of rotation, speed, periodic versus one-way); and four
*appearance* classes, each with its own shape and its own characteristic motion (so that flow
alone separates them too). The moving textures of the motion pairs sit inside static windows,
so a single frame carries no information about the class within a pair. Families do differ in
appearance (window shape, texture kind: `FAMILY_TEXTURE`, and colour: `FAMILY_HUES`), so that
an appearance backbone trained from scratch in a minute or two recognises the family and is
left with the pair. Size, exact colours and texture are random per instance, from the same
distribution for both classes of a pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rgbtad.core.errors import RgbtadError


@dataclass(frozen=True)
class ClassSpec:
    """One action class: its name, the object family it uses, and how it looks and moves."""

    name: str
    family: str
    description: str
    #: "motion" when the class shares its appearance with its pair partner and differs only in
    #: motion; "appearance" when its object looks different from every other class.
    cue: str
    #: the other class of a motion pair (None for appearance classes)
    partner: str | None = None


#: The classes, in label-id order.
CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("belt_left", "belt", "a wide red window of vertical streaks whose texture scrolls to the left",
              "motion", "belt_right"),
    ClassSpec("belt_right", "belt", "a wide red window of vertical streaks whose texture scrolls to the right",
              "motion", "belt_left"),
    ClassSpec("wheel_cw", "wheel", "a yellow disc with spokes whose texture turns clockwise", "motion", "wheel_ccw"),
    ClassSpec("wheel_ccw", "wheel", "a yellow disc with spokes whose texture turns counter-clockwise",
              "motion", "wheel_cw"),
    ClassSpec("lift_fast", "lift", "a tall green window of horizontal streaks whose texture scrolls up or down "
              "fast (24-32 px/s at 64 px)", "motion", "lift_slow"),
    ClassSpec("lift_slow", "lift", "a tall green window of horizontal streaks whose texture scrolls up or down "
              "slowly (8-12 px/s at 64 px)", "motion", "lift_fast"),
    ClassSpec("tile_shake", "tile", "a blue diamond of blobs whose texture shakes back and forth along a diagonal",
              "motion", "tile_drift"),
    ClassSpec("tile_drift", "tile", "a blue diamond of blobs whose texture drifts steadily one way along a diagonal",
              "motion", "tile_shake"),
    ClassSpec("ball_bounce", "ball", "a plain cyan ball that hops up and down", "appearance"),
    ClassSpec("ring_pulse", "ring", "a plain orange ring that grows and shrinks periodically", "appearance"),
    ClassSpec("bar_swing", "bar", "a plain violet bar that swings back and forth about one end", "appearance"),
    ClassSpec("dots_orbit", "dots", "two plain magenta dots circling around their midpoint", "appearance"),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
#: Families whose object is a window onto a moving texture (the motion pairs); the others
#: ("ball", "ring", "bar", "dots", and the classless "blob" distractor) are plain shapes.
TEXTURED_FAMILIES = ("belt", "wheel", "lift", "tile")

#: Hue of each object family. Both classes of a motion pair share their family's colour (so
#: colour says nothing within a pair); families differ, as actions of different kinds differ
#: in appearance in real videos. Each instance jitters hue, saturation and brightness.
FAMILY_HUES = {"belt": 0.0, "ring": 0.08, "wheel": 0.16, "lift": 0.33,
               "ball": 0.5, "tile": 0.62, "bar": 0.75, "dots": 0.88}

#: Texture of each textured family (the same for both classes of a pair): streaks across the
#: direction of motion for the belts (vertical) and lifts (horizontal), spokes for the wheels,
#: isotropic blobs for the tiles. Families differ in texture, so an appearance backbone learns
#: them quickly; within a pair nothing differs but the motion.
FAMILY_TEXTURE = {"belt": "vertical", "lift": "horizontal", "wheel": "spokes", "tile": None}


def class_indices(classes: Sequence[str] | None) -> tuple[int, ...] | None:
    """Indices into `CLASSES` of a subset of class names (None: all classes), checked."""
    if classes is None:
        return None
    known = {c.name: i for i, c in enumerate(CLASSES)}
    unknown = [name for name in classes if name not in known]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise RgbtadError(f"invalid class subset {list(classes)}: need distinct names among {', '.join(known)}")
    return tuple(sorted(known[name] for name in classes))
