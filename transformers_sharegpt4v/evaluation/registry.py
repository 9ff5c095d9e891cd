"""The entry point lmms-eval reads (group `lmms_eval.models`): the `sharegpt4v` model id -> its class path.

Light on purpose: lmms-eval calls `manifests()` at start-up for every run, and only imports the class when a
run asks for `--model sharegpt4v`. It also hides a torchvision that cannot load (`compat`).
"""

from __future__ import annotations

MODEL_ID = "sharegpt4v"
MODEL_CLASS = "transformers_sharegpt4v.evaluation.lmms_eval_model.ShareGPT4VLmms"


def manifests() -> list:
    """lmms-eval's `ModelManifest` of the `sharegpt4v` model (a simple model: prompts are built from text)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from .compat import hide_broken_torchvision

    # lmms-eval loads entry points before any model: the earliest point to keep a torchvision that cannot load
    # on this torch away from transformers' processors (see `compat`)
    hide_broken_torchvision()

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS)]
