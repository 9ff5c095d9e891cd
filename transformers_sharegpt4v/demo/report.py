"""The demo's report: DIR/report.md with the numbers over the seeds, and PNG figures drawn with PIL (scores
with their spread, training curves, sample images with their generated captions). PIL is already a
dependency; a plotting library is not worth adding for three figures."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .world import Scene, detailed_caption

# The --fast run's warning (pipeline.py has the same words for the summary line).
FAST_NOTE = (
    "--fast: a few training steps only, so these scores say nothing about learning (the models cannot have "
    "learnt yet; zeros are expected); it checks that every step runs. Run without --fast for the experiment."
)

COLOURS = {"short": (230, 140, 40), "detailed": (40, 110, 200)}
INK, GRID, WHITE = (30, 30, 30), (215, 215, 215), (255, 255, 255)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) from the trainer's log, written by `sharegpt4v train` next to the final model."""
    state = run_dir / "trainer_state.json"
    if not state.is_file():
        return []
    history = json.loads(state.read_text()).get("log_history", [])
    return [(h["step"], h["loss"]) for h in history if "loss" in h]


def _font(size: int) -> ImageFont.ImageFont:
    """PIL's bundled font at `size` px (a scalable one since Pillow 10.1; the old bitmap font otherwise)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


TITLE, TEXT, SMALL = _font(16), _font(13), _font(12)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels: broken between words, and inside a word only when the
    word alone is wider (an untrained model's "........")."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
            continue
        while draw.textlength(word, font=font) > width:
            cut = max(1, max(n for n in range(1, len(word) + 1) if draw.textlength(word[:n], font=font) <= width))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines


def _line_height(font: ImageFont.ImageFont) -> int:
    left, top, right, bottom = font.getbbox("Ag")
    return bottom - top + 4


def _bars(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, groups: dict, baseline: float, label: str
) -> None:
    """Bar chart in `box`: one bar per variant (mean), whiskers for min..max over seeds, a dashed baseline
    labelled in the right margin (never on a bar), value and name under each bar."""
    x0, y0, x1, y1 = box
    draw.text((x0, y0 - 30), title, fill=INK, font=TITLE)
    for tick in range(0, 11, 2):
        y = y1 - (y1 - y0) * tick / 10
        draw.line([(x0, y), (x1, y)], fill=GRID)
        draw.text((x0 - 8, y), f"{tick / 10:.1f}", fill=INK, font=SMALL, anchor="rm")
    width = (x1 - x0) // (2 * len(groups) + 1)
    for i, (variant, values) in enumerate(groups.items()):
        left = x0 + width * (2 * i + 1)
        mean = statistics.mean(values)
        top = y1 - (y1 - y0) * mean
        draw.rectangle([left, top, left + width, y1], fill=COLOURS[variant])
        lo, hi = min(values), max(values)
        mid = left + width // 2
        draw.line([(mid, y1 - (y1 - y0) * lo), (mid, y1 - (y1 - y0) * hi)], fill=INK, width=2)
        for v in values:
            draw.ellipse([mid - 3, y1 - (y1 - y0) * v - 3, mid + 3, y1 - (y1 - y0) * v + 3], outline=INK)
        draw.text((mid, y1 + 6), f"{variant} {mean:.2f}", fill=INK, font=TEXT, anchor="ma")
    y = y1 - (y1 - y0) * baseline
    for x in range(x0, x1, 10):
        draw.line([(x, y), (x + 5, y)], fill=(200, 30, 30), width=2)
    draw.text((x1 + 6, y), f"{label}\n{baseline:.2f}", fill=(200, 30, 30), font=SMALL, anchor="lm")


def _curves(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, curves: dict[str, list]) -> None:
    x0, y0, x1, y1 = box
    draw.text((x0, y0 - 30), title, fill=INK, font=TITLE)
    points = [p for runs in curves.values() for run in runs for p in run]
    if not points:
        draw.text((x0 + 10, y0 + 10), "no logged steps", fill=INK, font=TEXT)
        return
    max_step = max(s for s, _ in points) or 1
    max_loss = max(v for _, v in points) or 1.0
    draw.rectangle(box, outline=GRID)
    for tick in range(5):
        y = y1 - (y1 - y0) * tick / 4
        draw.text((x0 - 8, y), f"{max_loss * tick / 4:.1f}", fill=INK, font=SMALL, anchor="rm")
    for variant, runs in curves.items():
        for run in runs:
            xy = [(x0 + (x1 - x0) * s / max_step, y1 - (y1 - y0) * v / max_loss) for s, v in run]
            if len(xy) > 1:
                draw.line(xy, fill=COLOURS[variant], width=2)
    draw.text((x0, y1 + 6), "step 0", fill=INK, font=SMALL)
    draw.text((x1, y1 + 6), f"step {max_step}", fill=INK, font=SMALL, anchor="ra")


def draw_scores(numbers: dict[str, Any], curves: dict[str, dict[str, list]], path: Path) -> Path:
    image = Image.new("RGB", (1060, 700), WHITE)
    draw = ImageDraw.Draw(image)
    results, base = numbers["results"], numbers["baselines"]
    for box, title, key, baseline, label in (
        ((70, 60, 440, 290), "held-out caption attribute F1", "caption_f1", "caption_f1_chance", "chance"),
        ((600, 60, 970, 290), "held-out QA accuracy", "qa_accuracy", "qa_prior_accuracy", "prior"),
    ):
        _bars(draw, box, title, {v: [r[key] for r in rs] for v, rs in results.items()}, base[baseline], label)
    _curves(draw, (70, 410, 500, 640), "stage 1 loss (orange: short, blue: detailed captions)", curves["pretrain"])
    _curves(draw, (600, 410, 1030, 640), "stage 2 loss (same fine-tuning data)", curves["finetune"])
    if numbers.get("fast"):
        draw.text((70, 672), "--fast: a few training steps only; these scores say nothing about learning.",
                  fill=(200, 30, 30), font=TEXT)  # fmt: skip
    image.save(path)
    return path


def draw_samples(numbers: dict[str, Any], world: dict[str, list[Scene]], path: Path, count: int = 4) -> Path:
    """Held-out images with the ground truth and each variant's caption (first seed), in full."""
    tile, gap, margin = 200, 24, 20
    count = min(count, len(world["test"]))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    columns = []
    for i, scene in enumerate(world["test"][:count]):
        blocks = [("truth", detailed_caption(scene))] + [
            (variant, numbers["results"][variant][0]["captions"][i]) for variant in ("short", "detailed")
        ]
        columns.append(
            [(label, _wrap(measure, f"{label}: {text or '(empty caption)'}", TEXT, tile)) for label, text in blocks]
        )
    step = _line_height(TEXT)
    text_height = max(sum(len(lines) * step + 10 for _, lines in column) for column in columns) if columns else 0
    image = Image.new(
        "RGB", (margin * 2 + count * tile + (count - 1) * gap, margin + tile + 12 + text_height + margin), WHITE
    )
    draw = ImageDraw.Draw(image)
    for i, column in enumerate(columns):
        x = margin + i * (tile + gap)
        picture = Image.open(Path(numbers["settings"]["output"]) / "data" / "images" / f"test_{i:05d}.png")
        image.paste(picture.convert("RGB").resize((tile, tile), Image.NEAREST), (x, margin))
        y = margin + tile + 12
        for label, lines in column:
            for line in lines:
                draw.text((x, y), line, fill=COLOURS.get(label, INK), font=TEXT)
                y += step
            y += 10
    image.save(path)
    return path


def write_report(settings: Any, numbers: dict[str, Any], world: dict[str, list[Scene]], questions: list[dict]) -> Path:
    """OUTPUT/report.md (with scores.png and samples.png beside it) from the numbers of a run."""
    out = Path(settings.output)
    results = numbers["results"]
    curves = {
        stage: {v: [_loss_curve(Path(r["model"]).parent / stage) for r in rs] for v, rs in results.items()}
        for stage in ("pretrain", "finetune")
    }
    scores_png = draw_scores(numbers, curves, out / "scores.png")
    samples_png = draw_samples(numbers, world, out / "samples.png")
    lines = [
        "# ShareGPT4V in miniature",
        "",
        *([f"**{FAST_NOTE}**", ""] if numbers.get("fast") else []),
        f"{settings.n_pretrain} pretraining scenes, {settings.n_finetune} fine-tuning scenes, {settings.n_test} held-out "
        f"scenes ({len(questions)} questions); {len(results['detailed'])} seed(s); stage 1 {settings.pretrain_steps} "
        f"steps and stage 2 {settings.finetune_steps} steps of batch {settings.batch_size} for both variants; "
        f"{numbers['seconds']:.0f} s in all.",
        "",
        "The two variants differ only in their stage-1 captions: **short** names the main object (alt-text style), "
        "**detailed** names every object with its colour, size, texture, position, the count and the spatial "
        "relations (ShareGPT4V style). Stage 2 is the same for both.",
        "",
        *_scores_table(results, numbers["baselines"]),
        "",
        *_finding(results),
        "",
        f"![scores and training curves]({scores_png.name})",
        "",
        f"![held-out samples]({samples_png.name})",
        "",
        *_per_seed_table(results),
        "",
        "Recipes: `recipes/`; corpora: `corpora/` (ShareGPT4V JSON) and `datasets/`; models: `runs/`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _scores_table(results: dict[str, list[dict]], base: dict[str, float]) -> list[str]:
    """The table of mean ± std scores per variant, with the baselines, and how they are computed."""

    def cell(variant: str, key: str) -> str:
        mean, std = _mean_std([r[key] for r in results[variant]])
        return f"{mean:.3f} ± {std:.3f}"

    lines = [
        "| pretraining captions | caption precision | caption recall | caption F1 | QA accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant in ("short", "detailed"):
        lines.append(
            f"| {variant} | {cell(variant, 'caption_precision')} | {cell(variant, 'caption_recall')} | "
            f"{cell(variant, 'caption_f1')} | {cell(variant, 'qa_accuracy')} |"
        )
    return lines + [
        f"| chance / prior | | | {base['caption_f1_chance']:.3f} | {base['qa_prior_accuracy']:.3f} |",
        "",
        "Mean ± standard deviation over seeds. Caption scores compare the attribute facts a generated caption states "
        "(object present, colour, size, texture, position, count) with the scene's ground truth; chance describes a "
        "random scene of the same world. The QA prior answers each question form with its most frequent training answer.",
    ]


def _finding(results: dict[str, list[dict]]) -> list[str]:
    """Detailed minus short pretraining, per seed, and what that says."""
    pairs = list(zip(results["detailed"], results["short"], strict=False))
    qa_gap = [d["qa_accuracy"] - s["qa_accuracy"] for d, s in pairs]
    f1_gap = [d["caption_f1"] - s["caption_f1"] for d, s in pairs]
    return [
        "## Finding",
        "",
        f"- Detailed minus short pretraining, caption F1 per seed: {', '.join(f'{g:+.3f}' for g in f1_gap)}.",
        f"- Detailed minus short pretraining, QA accuracy per seed: {', '.join(f'{g:+.3f}' for g in qa_gap)}.",
        "- " + _verdict(qa_gap),
    ]


def _per_seed_table(results: dict[str, list[dict]]) -> list[str]:
    lines = [
        "## Per seed",
        "",
        "| seed | variant | caption F1 | QA accuracy | captioning run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant in ("short", "detailed"):
        for r in results[variant]:
            lines.append(
                f"| {r['seed']} | {variant} | {r['caption_f1']:.3f} | {r['qa_accuracy']:.3f} | {r['caption_summary']} |"
            )
    return lines


def _verdict(gaps: list[float]) -> str:
    if len(gaps) < 2:
        return "One seed only: no conclusion on QA (run with --num-seeds 3 or more)."
    mean, std = _mean_std(gaps)
    if all(g > 0 for g in gaps):
        return f"Detailed pretraining helped QA on every seed (mean gain {mean:+.3f} ± {std:.3f})."
    if all(g < 0 for g in gaps):
        return f"Detailed pretraining hurt QA on every seed (mean change {mean:+.3f} ± {std:.3f})."
    return f"No consistent QA effect at this scale: the gain changes sign across seeds (mean {mean:+.3f} ± {std:.3f})."
