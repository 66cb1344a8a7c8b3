"""Checks run before ``dvc repro`` (``make reproduce``): are the inputs that params name there?

``python -m bgimpact.preflight [--params FILE]`` exits 0 when the photos, the scene photos and
(for ``segment.method: provided``) the masks are in place, and otherwise stops at once with
exit status 2 and a message saying what is missing and how to lay it out, instead of letting
DVC fail half-way through a long run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bgimpact.config import ConfigError, Params, load_params
from bgimpact.files import IMAGE_SUFFIXES

#: Exit status when an input is missing (1 is left to "the check itself failed").
EXIT_MISSING = 2


@dataclass
class Preflight:
    """What the check found: problems stop the run, notes are printed and the run goes on."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing stops the run."""
        return not self.problems


def count_images(folder: Path) -> int:
    """Number of photos (by suffix, hidden files excluded) directly inside ``folder``."""
    if not folder.is_dir():
        return 0
    return sum(
        1
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def imagenet_layout_help(params: Params) -> str:
    """How to lay out (or link) the ImageNet photos of the classes in ``params``."""
    root = params.data.images
    width = max(len(str(root / s)) for s in params.classes) + 3
    rows = "\n".join(
        f"  {str(root / synset) + '/':<{width}}{c.name} (ImageNet-1k index {c.index})"
        for synset, c in params.classes.items()
    )
    synsets = " ".join(params.classes)
    n = len(params.classes)
    return f"""\
bgimpact reads ImageNet photos laid out as {root}/<synset>/<file>, one folder per class of
params.yaml (`classes`), files ending in .jpg .jpeg .JPEG .png or .webp; the file name without
its suffix is the image id and must be unique across the folders:
{rows}

The thesis used the ILSVRC2012 training images of these classes (ILSVRC2012_img_train.tar from
image-net.org holds one <synset>.tar per class; untar those {n} into the folders above).

Already have ImageNet on this machine? Link its files instead of copying them (`cp -rs` makes
the folders and one symbolic link per file; the source path must be absolute):
  mkdir -p {root}
  for s in {synsets}; do
    cp -rs /path/to/imagenet/train/$s {root}/
  done
Do not link the class folders themselves (ln -s .../train/$s {root}/$s): DVC does not follow
a symbolic link to a folder inside a dependency, so it would not notice the photos. Linking
{root} itself to a folder holding only these {n} class folders works too.

Photos laid out this way elsewhere: set data.images in params.yaml to that folder.
No ImageNet at hand? `make demo` runs the whole pipeline on photos shipped with the packages."""


def scenes_help(params: Params, missing: list[str]) -> str:
    """Which scene photos are missing and where they go."""
    files = "\n".join(f"  {params.data.scenes / name}.jpg" for name in missing)
    return f"""\
scene photo(s) missing for the scenic variants (params `scenes`, folder data.scenes):
{files}
Put one JPEG photo per scene there (any size: each is fitted to the image, see scenic.fit),
or drop the scene from `scenes` in params.yaml."""


def check_inputs(params: Params) -> Preflight:
    """Inspect the inputs named by ``params`` without reading any image."""
    result = Preflight()
    root = params.data.images
    linked_dirs: list[Path] = []
    for synset in params.classes:
        folder = root / synset
        result.images[synset] = count_images(folder)
        if folder.is_symlink() and folder.is_dir():
            linked_dirs.append(folder)
    if sum(result.images.values()) == 0:
        result.problems.append(
            f"no images under {root} (params data.images).\n\n{imagenet_layout_help(params)}"
        )
        return result
    empty = [s for s, n in result.images.items() if n == 0]
    if empty:
        listed = ", ".join(f"{root / s}/ ({params.classes[s].name})" for s in empty)
        result.problems.append(
            f"no images for {len(empty)} of {len(params.classes)} classes: {listed}.\n"
            "Add them (README, 'ImageNet layout'), or remove those classes from params.yaml."
        )
    if linked_dirs:
        listed = "\n".join(f"  {p} -> {p.resolve()}" for p in linked_dirs)
        result.problems.append(
            "class folder(s) are symbolic links to folders; DVC does not follow those inside a "
            f"dependency, so it would not notice changes to the photos:\n{listed}\n"
            "Replace each with a real folder of linked files:\n"
            + "\n".join(f"  rm {p} && cp -rs {p.resolve()} {p.parent}/" for p in linked_dirs)
        )
    missing = [s for s in params.scenes if not (params.data.scenes / f"{s}.jpg").is_file()]
    if missing:
        result.problems.append(scenes_help(params, missing))
    seg = params.segment
    if seg.method == "provided" and seg.provided_masks and not seg.provided_masks.is_dir():
        result.problems.append(
            f"segment.method is 'provided' but the mask folder {seg.provided_masks} "
            "(segment.provided_masks) does not exist; it holds <synset>/<image_id>.png"
        )
    total = sum(result.images.values())
    result.notes.append(
        f"preflight: {total} images in {len(params.classes) - len(empty)} classes under {root}, "
        f"{len(params.scenes) - len(missing)}/{len(params.scenes)} scenes in {params.data.scenes}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m bgimpact.preflight``: stop with instructions when the inputs are missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = check_inputs(params)
    for problem in result.problems:
        print(f"error: {problem}\n", file=sys.stderr)
    if not result.ok:
        return EXIT_MISSING
    for note in result.notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
