"""ShareGPT4VProcessor vs transformers' LlavaProcessor on the same prompts, tokenizer and image processor.

ShareGPT4VProcessor tokenizes like the original code (each piece between `<image>`s and special tokens on its
own, SentencePiece style) and computes assistant masks vectorized; LlavaProcessor runs the fast tokenizer once
on the whole expanded string (different ids around the image: that is the point of the plugin) and computes
the masks with transformers' per-token loop. Both get the same LLaMA-style tokenizer (trained in code, with
`<image>` and `<pad>` added), the same `ShareGPT4VImageProcessor` and the same vicuna_v1 template, so the
difference is the text side. Three measurements, medians of interleaved repeats:

- text: `processor(text=batch)` on text-only prompts (pure tokenization + padding);
- images: `processor(images=..., text=batch)` with one 640x480 image per prompt (image preprocessing included);
- masks: `apply_chat_template(..., tokenize=True, return_assistant_tokens_mask=True)` on multi-turn
  conversations with an image, what TRL's collator calls with `assistant_only_loss=True`.

    OMP_NUM_THREADS=1 python benchmarks/bench_processor.py [--batch 32] [--repeats 5]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image
from transformers import LlavaProcessor

from transformers_sharegpt4v import ShareGPT4VImageProcessor, ShareGPT4VProcessor
from transformers_sharegpt4v.testing_utils import SYSTEM_PROMPT, llama_tokenizer


def build_processors(folder: Path) -> tuple[ShareGPT4VProcessor, LlavaProcessor]:
    tokenizer = llama_tokenizer(folder, image_token=True)
    image_processor = ShareGPT4VImageProcessor()
    plugin = ShareGPT4VProcessor(image_processor, tokenizer)
    peer = LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=plugin.chat_template["vicuna_v1"],
    )
    return plugin, peer


def seconds(case, processor) -> float:
    start = time.perf_counter()
    case(processor)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        plugin, peer = build_processors(Path(tmp))
    question = "Describe the image in detail: the objects, their colours, left and right, top and bottom."
    answer = "A dog is sitting on the grass next to a red ball. " * 6
    texts = [f"{SYSTEM_PROMPT} USER: {question} {i} ASSISTANT: {answer}</s>" for i in range(args.batch)]
    image_texts = [f"{SYSTEM_PROMPT} USER: <image>\n{question} {i} ASSISTANT:" for i in range(args.batch)]
    image = Image.new("RGB", (640, 480), (120, 80, 40))
    images = [image] * args.batch
    conversations = [
        [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": f"And {i}?"},
            {"role": "assistant", "content": answer},
        ]
        for i in range(args.batch)
    ]
    kwargs = {"padding": True, "padding_side": "right", "return_tensors": "pt"}
    cases = {
        "text": lambda p: p(text=texts, **kwargs),
        "images": lambda p: p(images=images, text=image_texts, **kwargs),
        "masks": lambda p: p.apply_chat_template(
            conversations,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "right"},
        ),
    }
    print(f"batch={args.batch}, repeats={args.repeats} (median seconds per batch; ratio = plugin / peer)")
    for name, case in cases.items():
        case(plugin), case(peer)  # warm-up (template compilation, caches)
        plugin_s, peer_s = [], []
        for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit both alike
            plugin_s.append(seconds(case, plugin))
            peer_s.append(seconds(case, peer))
        a, b = statistics.median(plugin_s), statistics.median(peer_s)
        same_length = case(plugin)["input_ids"].shape == case(peer)["input_ids"].shape
        print(
            f"{name:7s} plugin {a * 1e3:8.1f} ms  peer (LlavaProcessor) {b * 1e3:8.1f} ms  ratio {a / b:5.2f}  "
            f"({args.batch / a:7.1f} vs {args.batch / b:7.1f} samples/s; same shape: {same_length})"
        )
    print("done: plugin ids follow the original chunked tokenization; the peer's differ around images and '</s>'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
