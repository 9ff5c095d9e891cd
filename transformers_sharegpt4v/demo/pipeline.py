"""`sharegpt4v demo`: ShareGPT4V in miniature, end to end on a CPU, with nothing downloaded.

The paper's experiment at toy scale, through the same code paths as the real system:
1. a procedural world of scenes with exact ground truth (`world.py`);
2. two pretraining caption corpora in the ShareGPT4V JSON format, short (alt-text: the main object) and
   detailed (every object, its attributes and the spatial relations), plus fine-tuning data (questions and
   answers, and some detailed-caption instructions, as ShareGPT4V's mix665k swaps in its cap23k), all
   built into datasets with `sharegpt4v data build`'s code;
3. a tiny CLIP and a tiny Llama assembled with `sharegpt4v init`, then stage 1 (pretrain on captions,
   `plain` template, vision layers from 1 unfrozen) and stage 2 (finetune, `vicuna_v1`, vision frozen) run
   with `sharegpt4v train` recipes, once with short and once with detailed captions, same budget, per seed;
4. the final models reloaded with `AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)`,
   held-out scenes captioned with the captioning engine, held-out questions answered (`evaluation.py`);
5. DIR/report.md with the numbers over the seeds, and PNG plots (scores, training curves, samples: `report.py`).

The tiny geometry (64 px images, 32 px patches: 4 image tokens) keeps a seed to about a minute per variant
on a CPU core; the real geometry (336/14, 576 tokens) is what the tests use.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import UsageError
from ..testing_utils import SYSTEM_PROMPT, llama_tokenizer, tiny_sizes
from ..tokenization_sharegpt4v import IMAGE_TOKEN
from .evaluation import baselines, evaluate
from .world import (
    CAPTION_PROMPT,
    PRETRAIN_PROMPT,
    SHORT_ANSWER,
    Scene,
    detailed_caption,
    qa_pairs,
    render_scene,
    sample_scene,
    short_caption,
)

VARIANTS = ("short", "detailed")
# The tokenizer is LLaMA-like but for SentencePiece's own normalisation (NFKC, a newline read as a space, runs
# of spaces folded, digits whole) and no BOS, as the demo's numbers were measured; its vocabulary may come out
# smaller than asked on the --fast corpora.
TOKENIZER_OPTIONS = {
    "add_bos_token": False,
    "normalization_rule_name": "nmt_nfkc",
    "remove_extra_whitespaces": True,
    "split_digits": False,
    "allow_whitespace_only_pieces": False,
    "hard_vocab_limit": False,
}


@dataclass
class DemoSettings:
    """Sizes of the miniature. The defaults took 6.4 minutes on 2 idle CPU cores (15 to 35 on 2 busy ones)."""

    output: Path = Path("outputs/sharegpt4v-demo")
    seed: int = 0
    num_seeds: int = 3
    n_pretrain: int = 3000
    n_finetune: int = 1200
    n_test: int = 100
    pretrain_steps: int = 500
    finetune_steps: int = 150
    batch_size: int = 16
    image_size: int = 64
    patch_size: int = 32
    jobs: int = 2
    progress: bool = True
    caption_fraction: float = 0.25  # share of stage-2 samples that are detailed-caption instructions
    vision: dict[str, Any] = field(default_factory=lambda: tiny_sizes(64, 3))  # CLIP: hidden, layers
    text: dict[str, Any] = field(default_factory=lambda: tiny_sizes(128, 2))  # Llama: hidden, layers

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.num_seeds)]


FAST = {
    "num_seeds": 1,
    "n_pretrain": 48,
    "n_finetune": 32,
    "n_test": 6,
    "pretrain_steps": 3,
    "finetune_steps": 3,
    "batch_size": 4,
}


# ---------------------------------------------------------------------------------------------- 1. the world


def make_world(settings: DemoSettings) -> dict[str, list[Scene]]:
    """Render every scene to DATA/images and return the scenes of each split."""
    rng = random.Random(settings.seed)
    sizes = {"pretrain": settings.n_pretrain, "finetune": settings.n_finetune, "test": settings.n_test}
    world = {split: [sample_scene(rng) for _ in range(n)] for split, n in sizes.items()}
    folder = settings.output / "data" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    with _bar(settings, 1, "render scenes", sum(sizes.values()), "scene") as bar:
        for split, scenes in world.items():
            for i, scene in enumerate(scenes):
                render_scene(scene, settings.image_size).save(folder / f"{split}_{i:05d}.png")
                bar.update(1)
    return world


def _record(split: str, i: int, turns: list[tuple[str, str]], suffix: str = "") -> dict[str, Any]:
    conversations = []
    for k, (question, answer) in enumerate(turns):
        conversations.append({"from": "human", "value": (IMAGE_TOKEN + "\n" if k == 0 else "") + question})
        conversations.append({"from": "gpt", "value": answer})
    return {"id": f"{split}_{i:05d}{suffix}", "image": f"images/{split}_{i:05d}.png", "conversations": conversations}


def write_corpora(settings: DemoSettings, world: dict[str, list[Scene]]) -> dict[str, Path]:
    """The ShareGPT4V JSON corpora of the miniature: two pretraining corpora, fine-tuning data, test questions."""
    rng = random.Random(settings.seed + 1)
    folder = settings.output / "corpora"
    folder.mkdir(parents=True, exist_ok=True)
    corpora = {
        "pretrain_short": [
            _record("pretrain", i, [(PRETRAIN_PROMPT, short_caption(s))]) for i, s in enumerate(world["pretrain"])
        ],
        "pretrain_detailed": [
            _record("pretrain", i, [(PRETRAIN_PROMPT, detailed_caption(s))]) for i, s in enumerate(world["pretrain"])
        ],
        "finetune": [],
        "test_questions": [],
    }
    for i, scene in enumerate(world["finetune"]):
        if rng.random() < settings.caption_fraction:
            corpora["finetune"].append(_record("finetune", i, [(CAPTION_PROMPT, detailed_caption(scene))]))
        else:
            turns = [(f"{q}\n{SHORT_ANSWER}", a) for q, a in qa_pairs(scene, rng, k=2)]
            corpora["finetune"].append(_record("finetune", i, turns))
    for i, scene in enumerate(world["test"]):
        for k, (q, a) in enumerate(qa_pairs(scene, rng, k=2)):
            corpora["test_questions"].append(_record("test", i, [(f"{q}\n{SHORT_ANSWER}", a)], suffix=f"_q{k}"))
    paths = {}
    for name, records in corpora.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(records, indent=1))
    return paths


def build_datasets(settings: DemoSettings, corpora: dict[str, Path]) -> dict[str, Path]:
    """`sharegpt4v data build` on each training corpus."""
    from ..corpora import build_corpus

    out = {}
    names = ("pretrain_short", "pretrain_detailed", "finetune")
    with _bar(settings, 2, "build corpora", len(names), "corpus") as bar:
        for name in names:
            out[name] = settings.output / "datasets" / name
            result = build_corpus(
                corpora[name], settings.output / "data", out[name], overwrite=True, num_workers=1, progress=False
            )
            if result.skipped or result.records_written == 0:
                raise RuntimeError(f"The demo corpus {corpora[name]} has bad records: {result.summary()}")
            bar.update(1)
    return out


# ------------------------------------------------------------------------------- 2. the starting checkpoints


def _train_tokenizer(settings: DemoSettings, corpora: dict[str, Path]) -> Path:
    """A LLaMA-style SentencePiece tokenizer for the miniature's language (the real one is Vicuna's)."""
    # The vicuna_v1 system prompt and roles are in every stage-2 sample: whole words keep sequences short.
    texts = [f"{SYSTEM_PROMPT} USER: ASSISTANT:"] * 200
    for path in corpora.values():
        for record in json.loads(path.read_text()):
            texts += [turn["value"].replace(IMAGE_TOKEN + "\n", "") for turn in record["conversations"]]
    folder = settings.output / "base" / "tokenizer"
    llama_tokenizer(folder, texts, 1000, **TOKENIZER_OPTIONS)
    return folder


def make_base_checkpoints(settings: DemoSettings, corpora: dict[str, Path]) -> dict[int, Path]:
    """Per seed: a random tiny CLIP and Llama, assembled with `sharegpt4v init` (what stage 1 starts from)."""
    with _bar(settings, 3, "make checkpoints", 1 + len(settings.seeds), "step") as bar:
        tokenizer_dir = _train_tokenizer(settings, corpora)
        bar.update(1)
        inits = {}
        for seed in settings.seeds:
            inits[seed] = _base_checkpoint(settings, tokenizer_dir, seed)
            bar.update(1)
    return inits


def _base_checkpoint(settings: DemoSettings, tokenizer_dir: Path, seed: int) -> Path:
    import torch
    from transformers import AutoTokenizer, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from ..training.init_model import init_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = settings.output / "base" / f"seed{seed}"
    torch.manual_seed(seed)
    vision = CLIPVisionModel(
        CLIPVisionConfig(image_size=settings.image_size, patch_size=settings.patch_size, **settings.vision)
    )
    vision.save_pretrained(base / "vision")
    llm = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **settings.text, pad_token_id=None)
    )
    llm.save_pretrained(base / "llm")
    tokenizer.save_pretrained(base / "llm")
    return init_checkpoint(base / "init", vision=str(base / "vision"), llm=str(base / "llm"), seed=seed)


# -------------------------------------------------------------------------------------------- 3. training


def _recipe(settings: DemoSettings, stage: str, model: Path, dataset: Path, output: Path, seed: int) -> dict:
    """A `sharegpt4v train` recipe: the keys of the shipped recipes, at the miniature's scale."""
    pretrain = stage == "pretrain"
    return {
        "model_name_or_path": str(model),
        "stage": stage,
        **({"vision_trainable_from_layer": 1} if pretrain else {}),
        "attn_implementation": "sdpa",
        "dataset_name": str(dataset),
        "max_length": 256,
        "padding_free": True,
        "output_dir": str(output),
        "use_cpu": True,
        "bf16": False,
        "max_steps": settings.pretrain_steps if pretrain else settings.finetune_steps,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3 if pretrain else 5.0e-4,
        "weight_decay": 0.0,
        "warmup_steps": 0.03,
        "lr_scheduler_type": "cosine",
        "logging_steps": max(1, min(10, (settings.pretrain_steps if pretrain else settings.finetune_steps) // 10)),
        "save_strategy": "no",
        "report_to": "none",
        "dataloader_num_workers": 0,
        "seed": seed,
        "disable_tqdm": True,
    }


def _logged_steps(log: Path, logging_steps: int, max_steps: int) -> int:
    """Training steps done so far, from the trainer's log lines (one `{'loss': ...}` per `logging_steps`)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return min(max_steps, logging_steps * (text.count("'loss'") + text.count('"loss"')))


def _run_train(recipe: dict, path: Path, log: Path, on_steps: Callable[[int], None] = lambda steps: None) -> None:
    """`sharegpt4v train --config PATH` in a subprocess, its output in `log`; `on_steps(n)` is called as the
    log shows n more steps done (the demo's progress bar), and with the rest when the run ends."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "transformers_sharegpt4v.cli", "train", "--config", str(path)]
    log.parent.mkdir(parents=True, exist_ok=True)
    reported = 0
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                returncode = process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                returncode = None
            done = _logged_steps(log, recipe["logging_steps"], recipe["max_steps"])
            if returncode == 0:
                done = recipe["max_steps"]
            if done > reported:
                on_steps(done - reported)
                reported = done
            if returncode is not None:
                break
    if returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"Training failed ({' '.join(command)}); log {log}:\n{tail}")


def train_variant(
    settings: DemoSettings,
    seed: int,
    variant: str,
    init: Path,
    datasets: dict[str, Path],
    on_steps: Callable[[int], None] = lambda steps: None,
) -> Path:
    """Stage 1 on the variant's captions, then stage 2 on the shared fine-tuning data."""
    run = settings.output / "runs" / f"seed{seed}" / variant
    for stage, model, dataset in (
        ("pretrain", init, datasets[f"pretrain_{variant}"]),
        ("finetune", run / "pretrain", datasets["finetune"]),
    ):
        recipe = _recipe(settings, stage, model, dataset, run / stage, seed)
        path = settings.output / "recipes" / f"seed{seed}_{variant}_{stage}.yaml"
        _run_train(recipe, path, run / f"{stage}.log", on_steps)
    return run / "finetune"


# ------------------------------------------------------------------------------------------------ the run


def _set_torch_threads(n: int) -> int:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


PHASES = 5


def _bar(settings: DemoSettings, phase: int, name: str, total: int, unit: str, position: int = 0) -> tqdm:
    """The progress bar of one phase of the demo ("[2/5] build corpora"), kept on screen when done."""
    return tqdm(
        total=total, desc=f"[{phase}/{PHASES}] {name}", unit=f" {unit}", disable=not settings.progress,
        position=position, leave=True, dynamic_ncols=True,
    )  # fmt: skip


@contextlib.contextmanager
def _library_bars_off():
    """transformers', huggingface_hub's and datasets' own progress bars (weights loading and writing) off:
    they would run into the demo's. Restored afterwards."""
    import datasets
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    states = (
        transformers_logging.is_progress_bar_enabled(),
        not hub_utils.are_progress_bars_disabled(),
        datasets.is_progress_bar_enabled(),
    )
    transformers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if states[0]:
            transformers_logging.enable_progress_bar()
        if states[1]:
            hub_utils.enable_progress_bars()
        if states[2]:
            datasets.enable_progress_bars()


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Run the whole miniature and write OUTPUT/report.md; returns the numbers of the report."""
    if settings.num_seeds < 1:
        raise UsageError(f"--num-seeds must be at least 1, got {settings.num_seeds}.")
    if settings.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {settings.jobs}.")
    with _library_bars_off():
        return _run_demo(settings)


def _run_demo(settings: DemoSettings) -> dict[str, Any]:
    from .report import write_report

    started = time.perf_counter()
    settings.output.mkdir(parents=True, exist_ok=True)
    world = make_world(settings)
    corpora = write_corpora(settings, world)
    datasets = build_datasets(settings, corpora)
    inits = make_base_checkpoints(settings, corpora)
    questions = json.loads(corpora["test_questions"].read_text())

    # `jobs` runs (seed, variant) pairs at once, each training in its own process; a pair is evaluated as
    # soon as it is trained, one evaluation at a time (remote-code loading is not thread-safe), while the
    # other workers keep training. Detailed captions are longer, so a shared queue balances the load.
    runs = [(seed, variant) for seed in settings.seeds for variant in VARIANTS]
    steps = len(runs) * (settings.pretrain_steps + settings.finetune_steps)
    train_bar = _bar(settings, 4, "train (both stages, every seed and variant)", steps, "step")
    evaluate_bar = _bar(settings, 5, "evaluate (caption and answer held-out scenes)", len(runs), "model", 1)
    lock = threading.Lock()

    def on_steps(count: int) -> None:
        with lock:
            train_bar.update(count)

    torch_threads = _set_torch_threads(1)
    evaluation = threading.Lock()

    def run_pair(seed: int, variant: str) -> tuple[int, str, dict]:
        final = train_variant(settings, seed, variant, inits[seed], datasets, on_steps)
        with evaluation:
            scores = evaluate(final, settings.output / "data", world, questions)
        with lock:
            evaluate_bar.update(1)
        return seed, variant, {"seed": seed, "model": str(final), **scores}

    finished: dict[tuple[int, str], dict] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:
            for future in as_completed([pool.submit(run_pair, s, v) for s, v in runs]):
                seed, variant, result = future.result()
                finished[(seed, variant)] = result
    finally:
        _set_torch_threads(torch_threads)
        train_bar.close()
        evaluate_bar.close()
    results = {v: [finished[(s, v)] for s in settings.seeds] for v in VARIANTS}
    numbers = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "fast": _is_fast(settings),
        "baselines": baselines(world, corpora, settings.seed),
        "results": results,
        "seconds": time.perf_counter() - started,
    }
    (settings.output / "results.json").write_text(json.dumps(numbers, indent=1))
    report = write_report(settings, numbers, world, questions)
    numbers["report"] = str(report)
    return numbers


def _is_fast(settings: DemoSettings) -> bool:
    """True for the --fast sizes (a few training steps: the scores say nothing about learning)."""
    return settings.pretrain_steps <= FAST["pretrain_steps"] and settings.finetune_steps <= FAST["finetune_steps"]


def summary_line(numbers: dict[str, Any]) -> str:
    from .report import FAST_NOTE

    def mean(variant: str, key: str) -> float:
        return statistics.mean(r[key] for r in numbers["results"][variant])

    b = numbers["baselines"]
    line = (
        f"demo: caption F1 detailed {mean('detailed', 'caption_f1'):.2f} / short {mean('short', 'caption_f1'):.2f} "
        f"(chance {b['caption_f1_chance']:.2f}); QA accuracy detailed {mean('detailed', 'qa_accuracy'):.2f} / short "
        f"{mean('short', 'qa_accuracy'):.2f} (prior {b['qa_prior_accuracy']:.2f}); "
        f"{len(numbers['results']['detailed'])} seed(s), {numbers['seconds']:.0f} s; report {numbers['report']}"
    )
    return (FAST_NOTE + "\n" + line) if numbers.get("fast") else line


def start_line(settings: DemoSettings) -> str:
    """What the demo is about to do, where, and for how long."""
    duration = (
        "measured: 1.5 to 4 minutes on 2 CPU cores shared with other work"
        if _is_fast(settings)
        else "measured with the default sizes: 6.4 minutes on 2 idle CPU cores, 15 to 35 on 2 busy ones"
    )
    return f"sharegpt4v demo: writing to {settings.output} ({duration})"


def settings_from_args(args: Any) -> DemoSettings:
    """The settings of a run from `DemoArguments`."""
    settings = DemoSettings(output=Path(args.output), seed=args.seed)
    if args.fast:
        settings = replace(settings, **FAST)
    overrides = {k: getattr(args, k) for k in ("num_seeds", "jobs") if getattr(args, k, None) is not None}
    return replace(settings, progress=args.progress, **overrides)
