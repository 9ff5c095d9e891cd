"""The demo's procedural world: captions state exactly the ground truth, and the scoring is honest."""

import random

import numpy as np

from transformers_sharegpt4v.demo.world import (
    COLOURS,
    caption_facts,
    caption_scores,
    chance_f1,
    detailed_caption,
    qa_pairs,
    render_scene,
    sample_scene,
    short_caption,
)


def test_detailed_caption_states_every_attribute():
    rng = random.Random(0)
    for _ in range(50):
        scene = sample_scene(rng)
        facts = caption_facts(detailed_caption(scene))
        for obj in scene.objects:
            assert {
                (obj.shape, "colour", obj.colour),
                (obj.shape, "size", obj.size),
                (obj.shape, "cell", obj.cell),
            } <= facts
            assert (obj.shape, "texture", obj.texture) in facts
        assert caption_scores(detailed_caption(scene), scene) == (1.0, 1.0)


def test_short_caption_names_only_the_main_object():
    rng = random.Random(1)
    for _ in range(50):
        scene = sample_scene(rng)
        precision, recall = caption_scores(short_caption(scene), scene)
        assert precision == 1.0
        assert recall < 1.0  # a short caption states neither the position nor the count
        assert {s for s, *_ in caption_facts(short_caption(scene))} == {scene.main.shape}


def test_wrong_caption_scores_low_and_chance_is_well_below_one():
    rng = random.Random(2)
    scenes = [sample_scene(rng) for _ in range(200)]
    from transformers_sharegpt4v.demo.world import Scene, SceneObject

    scene = Scene((SceneObject("circle", "red", "large", "solid", "top left"),))
    # right shape, texture and cell, wrong size and colour: 3 of 5 stated facts hold, 3 of 6 true ones found
    assert caption_scores("A small green circle is at the top left.", scene) == (0.6, 0.5)
    assert caption_scores("nothing to see", scenes[0]) == (0.0, 0.0)
    chance = chance_f1(scenes, random.Random(3))
    assert 0.05 < chance < 0.5


def test_render_draws_the_objects_in_their_cells():
    rng = random.Random(4)
    for _ in range(20):
        scene = sample_scene(rng)
        pixels = np.asarray(render_scene(scene, 112)).astype(int)
        for obj in scene.objects:
            row, col = divmod(["top left", "top right", "bottom left", "bottom right"].index(obj.cell), 2)
            cell = pixels[row * 56 : (row + 1) * 56, col * 56 : (col + 1) * 56].reshape(-1, 3)
            colour = np.array(COLOURS[obj.colour])
            assert (np.abs(cell - colour).sum(axis=1) < 10).sum() > 50, obj


def test_qa_answers_follow_from_the_scene():
    rng = random.Random(5)
    for _ in range(50):
        scene = sample_scene(rng)
        for question, answer in qa_pairs(scene, rng, k=5):
            assert answer
            if question.startswith("What colour is the "):
                shape = question.rsplit(" ", 1)[1].rstrip("?")
                assert answer == next(o.colour for o in scene.objects if o.shape == shape)
