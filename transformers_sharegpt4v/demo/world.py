"""A procedural world of scenes with exact ground truth, for the demo.

Each scene holds one to three objects, each a distinct shape, placed in distinct cells of a 2x2 grid,
with a colour, a size and a texture. From the ground truth we write the two kinds of caption the paper
compares (a short alt-text caption naming the main object, and a detailed caption naming every object,
its attributes and the spatial relations), question-answer pairs, and we score generated captions by
the attribute facts they state.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30)}
SIZES = {"small": 0.5, "large": 0.9}  # fraction of the grid cell
TEXTURES = ("solid", "striped")
CELLS = ("top left", "top right", "bottom left", "bottom right")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}

# The instructions of the world's corpora (and of the evaluation, which asks the same).
CAPTION_PROMPT = "Describe the image in detail."
PRETRAIN_PROMPT = "Write a caption for the image."  # dropped by the plain template, as in ShareGPT4V-PT
SHORT_ANSWER = "Answer the question using a single word or phrase."  # the paper's short-answer suffix


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    texture: str
    cell: str

    def phrase(self) -> str:
        texture = "striped " if self.texture == "striped" else ""
        return f"a {self.size} {texture}{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]

    @property
    def main(self) -> SceneObject:
        """The object a short caption names: the first large one, else the first."""
        return next((o for o in self.objects if o.size == "large"), self.objects[0])


def sample_scene(rng: random.Random) -> Scene:
    count = rng.randint(1, 3)
    shapes = rng.sample(SHAPES, count)
    cells = rng.sample(CELLS, count)
    objects = tuple(
        SceneObject(shape, rng.choice(list(COLOURS)), rng.choice(list(SIZES)), rng.choice(TEXTURES), cell)
        for shape, cell in zip(shapes, cells, strict=False)
    )
    return Scene(tuple(sorted(objects, key=lambda o: CELLS.index(o.cell))))


def render_scene(scene: Scene, size: int = 112) -> Image.Image:
    """Draw the scene on a light background; the grid is implicit (cells are quadrants)."""
    image = Image.new("RGB", (size, size), (235, 235, 228))
    draw = ImageDraw.Draw(image)
    half = size // 2
    for obj in scene.objects:
        row, col = divmod(CELLS.index(obj.cell), 2)
        extent = SIZES[obj.size] * half
        cx, cy = col * half + half / 2, row * half + half / 2
        box = (cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2)
        colour = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif obj.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
        if obj.texture == "striped":
            stripes = Image.new("L", (size, size), 0)
            stripe_draw = ImageDraw.Draw(stripes)
            for x in range(int(box[0]), int(box[2]) + 1, 4):
                stripe_draw.line([(x, box[1]), (x, box[3])], fill=255, width=1)
            shape_mask = _shape_mask(obj.shape, box, size)
            stripes = Image.composite(stripes, Image.new("L", (size, size), 0), shape_mask)
            image.paste((255, 255, 255), mask=stripes)
    return image


def _shape_mask(shape: str, box: tuple[float, float, float, float], size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    cx = (box[0] + box[2]) / 2
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle(box, fill=255)
    else:
        draw.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=255)
    return mask


def short_caption(scene: Scene) -> str:
    """COCO-style alt text: the main object only."""
    return f"{scene.main.phrase().capitalize()}."


def detailed_caption(scene: Scene) -> str:
    """Every object with its attributes and position, then the pairwise spatial relations."""
    n = len(scene.objects)
    parts = [f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} object{'s' if n > 1 else ''}."]
    parts += [f"{obj.phrase().capitalize()} is at the {obj.cell}." for obj in scene.objects]
    for a, b in zip(scene.objects, scene.objects[1:], strict=False):
        parts.append(f"The {a.shape} is {_relation(a, b)} the {b.shape}.")
    return " ".join(parts)


def _relation(a: SceneObject, b: SceneObject) -> str:
    (ra, ca), (rb, cb) = divmod(CELLS.index(a.cell), 2), divmod(CELLS.index(b.cell), 2)
    if ra == rb:
        return "left of" if ca < cb else "right of"
    return "above" if ra < rb else "below"


def qa_pairs(scene: Scene, rng: random.Random, k: int = 2) -> list[tuple[str, str]]:
    """Short-answer questions whose answers need the image (colour, position, texture, count, presence)."""
    questions = []
    for obj in scene.objects:
        questions += [
            (f"What colour is the {obj.shape}?", obj.colour),
            (f"Where is the {obj.shape}?", obj.cell),
            (f"Is the {obj.shape} striped?", "yes" if obj.texture == "striped" else "no"),
            (f"Is the {obj.shape} large or small?", obj.size),
        ]
    absent = [s for s in SHAPES if s not in {o.shape for o in scene.objects}]
    questions.append(("How many objects are there?", NUMBER_WORDS[len(scene.objects)]))
    if absent:
        questions.append((f"Is there a {rng.choice(absent)}?", "no"))
    questions.append((f"Is there a {rng.choice(scene.objects).shape}?", "yes"))
    return rng.sample(questions, min(k, len(questions)))


_OBJECT = re.compile(
    r"\b(small|large) (striped )?(red|green|blue|yellow) (circle|square|triangle)(?: is at the "
    r"(top left|top right|bottom left|bottom right))?"
)
_COUNT = re.compile(r"\bthere (?:is|are) (one|two|three) object")


def caption_facts(text: str) -> set[tuple[str, str, str]]:
    """The attribute facts a caption states, as (subject, attribute, value) triples."""
    facts: set[tuple[str, str, str]] = set()
    lowered = text.lower()
    for size, striped, colour, shape, cell in _OBJECT.findall(lowered):
        facts |= {(shape, "present", "yes"), (shape, "size", size), (shape, "colour", colour)}
        facts.add((shape, "texture", "striped" if striped else "solid"))
        if cell:
            facts.add((shape, "cell", cell))
    for word in _COUNT.findall(lowered):
        facts.add(("scene", "count", word))
    return facts


def scene_facts(scene: Scene) -> set[tuple[str, str, str]]:
    return caption_facts(detailed_caption(scene))


def caption_scores(caption: str, scene: Scene) -> tuple[float, float]:
    """Precision and recall of the caption's facts against the scene's full ground truth."""
    predicted, truth = caption_facts(caption), scene_facts(scene)
    hits = len(predicted & truth)
    precision = hits / len(predicted) if predicted else 0.0
    return precision, hits / len(truth)


def f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def chance_f1(scenes: list[Scene], rng: random.Random) -> float:
    """Caption F1 of a guesser that describes a random scene of the same world in the detailed style."""
    scores = [caption_scores(detailed_caption(sample_scene(rng)), scene) for scene in scenes]
    return sum(f1(p, r) for p, r in scores) / len(scores)
