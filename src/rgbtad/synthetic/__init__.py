"""The built-in synthetic motion-action benchmark: untrimmed mp4 videos + ActionFormer JSON.

Why it exists: real THUMOS14 videos cannot be downloaded here, yet the project's claim (motion
knowledge is worth 6 to 15 points of average mAP, and distillation recovers part of it) must be
testable on this CPU. This generator makes a small benchmark that is hard *in the right way*:
half of the classes can only be told apart by their motion, so an appearance (RGB snippet)
backbone confuses them in pairs while optical flow separates them easily.

One idea per module, in the order they build on each other:

- `classes`: the action classes (motion pairs, appearance classes) and how families look;
- `textures`: the periodic band-pass textures and the random colour pairs;
- `objects`: the random shape, colours and motion parameters of one object;
- `timeline`: when actions happen (THUMOS14 proportions) and which classes they get;
- `plan`: what is on screen in one video (action objects, look-alikes, wanderers, scene);
- `shapes`: an object's outline and texture coordinates at a moment of its motion;
- `render`: the frames of a plan and their H.264 file (`rgbtad.video.encode`);
- `statistics`: timeline statistics of an annotation database (against THUMOS14);
- `generate`: the benchmark on disk (`generate_benchmark`, `plan_benchmark`);
- `toy_features`: a fast stand-in on features (no videos), for tests and examples.

Nothing here imports training, features or apps: only `rgbtad.core` and `rgbtad.video`.
"""
