"""Quickstart: load a ShareGPT4V checkpoint, chat about an image, caption a batch of images.

    python examples/quickstart.py [--model PATH_OR_HUB_ID]

With --model (a converted ShareGPT4V-7B folder, say; see "Use the released ShareGPT4V models" in the
README) it runs on that model. Without it, it first writes a tiny randomly initialised ShareGPT4V (real
576-token image geometry, a LLaMA-style tokenizer trained on a few lines: `write_tiny_checkpoint` of
`transformers_sharegpt4v.testing_utils`) to ./outputs/tiny-sharegpt4v so that the whole API runs on a CPU
with nothing downloaded; its answers are then noise, by construction.
"""

import argparse
import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from transformers_sharegpt4v import default_attn_implementation
from transformers_sharegpt4v.demo.world import render_scene, sample_scene
from transformers_sharegpt4v.testing_utils import write_tiny_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: a tiny random model)")
    args = parser.parse_args()
    model_path = args.model or str(write_tiny_checkpoint(Path("outputs/tiny-sharegpt4v")))

    # Load: any ShareGPT4V checkpoint loads with trust_remote_code, with or without this plugin installed.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(
        model_path,
        trust_remote_code=True,
        dtype=torch.bfloat16 if device == "cuda" else torch.float32,
        attn_implementation=default_attn_implementation(device),
    ).to(device)
    processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=True)

    # Chat: the vicuna_v1 template puts <image> at the front of the first user turn, as the original did.
    rng = random.Random(0)
    images = [render_scene(sample_scene(rng), 336) for _ in range(3)]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=images[:1], text=prompt, return_tensors="pt").to(device)
    output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"prompt: {prompt!r}\nanswer: {answer!r}")

    # Batched captioning: one prompt per image, left padding, greedy decoding.
    caption_prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Analyze the image in a comprehensive and detailed manner."}]}],
        add_generation_prompt=True,
    )  # fmt: skip
    batch = processor(
        images=images, text=[caption_prompt] * len(images), padding=True, padding_side="left", return_tensors="pt"
    ).to(device)
    output = model.generate(**batch, max_new_tokens=20, do_sample=False)
    captions = processor.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    for i, caption in enumerate(captions):
        print(f"caption {i}: {caption!r}")
    print(
        f"quickstart done: model {model_path}, {len(captions)} captions, image tokens per image {processor.image_seq_length}"
    )


if __name__ == "__main__":
    main()
