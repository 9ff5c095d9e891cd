"""ShareGPT4VForCausalLM (the plugin) vs transformers' LlavaForConditionalGeneration: forward and greedy generate.

Both models hold the same weights (a small model with the real image geometry: CLIP at 336/14 -> 576 image
tokens, hidden 256, 4 vision + 4 language layers, the 32064-token vocabulary) and get the same inputs, in one
process. Runs are interleaved (plugin, llava, copy, copy, llava, plugin, ...) and the medians are compared.
Goal: ratio plugin / llava <= 1.05. The "copy" (a second LlavaForConditionalGeneration with the same weights)
shows the noise floor: on a shared machine two identical models can differ by several percent.

    OMP_NUM_THREADS=1 python benchmarks/bench_model.py [--repeats 9] [--new-tokens 16] [--batch 1]
"""

import argparse
import statistics
import time

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

from transformers_sharegpt4v import ShareGPT4VConfig, ShareGPT4VForCausalLM

IMAGE_TOKEN_ID = ShareGPT4VConfig().image_token_id


def build_models(hidden: int, layers: int) -> tuple[ShareGPT4VForCausalLM, LlavaForConditionalGeneration]:
    common = dict(
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            image_size=336,
            patch_size=14,
            projection_dim=hidden,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=hidden,
            intermediate_size=int(2.6875 * hidden),
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            vocab_size=32064,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            pad_token_id=32001,
        ),
    )
    torch.manual_seed(0)
    llava = LlavaForConditionalGeneration(LlavaConfig(image_token_index=IMAGE_TOKEN_ID, **common)).eval()
    plugin = ShareGPT4VForCausalLM(ShareGPT4VConfig(image_token_id=IMAGE_TOKEN_ID, **common)).eval()
    plugin.load_state_dict(llava.state_dict())
    return plugin, llava


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name: str, runs: dict[str, callable], repeats: int) -> None:
    """Interleaved timings (the order flips every round) of `runs`; prints medians and ratios to "llava"."""
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    order = list(runs)
    for r in range(repeats):
        for key in order if r % 2 == 0 else order[::-1]:
            times[key].append(timed(runs[key]))
    median = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"{name}: plugin {median['plugin'] * 1e3:.1f} ms, LlavaForConditionalGeneration {median['llava'] * 1e3:.1f} ms "
        f"(medians of {repeats}), ratio plugin/llava {median['plugin'] / median['llava']:.3f}"
        f"  [noise floor: an identical copy of the Llava model / llava = {median['copy'] / median['llava']:.3f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()

    plugin, llava = build_models(args.hidden, args.layers)
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, 32000, (args.batch, 40), generator=generator)
    image = torch.full((args.batch, 576), IMAGE_TOKEN_ID)
    input_ids = torch.cat([torch.ones(args.batch, 1, dtype=torch.long), text[:, :20], image, text[:, 20:]], dim=1)
    pixel_values = torch.randn(args.batch, 3, 336, 336, generator=generator)
    inputs = dict(input_ids=input_ids, pixel_values=pixel_values)
    print(
        f"threads {torch.get_num_threads()}, batch {args.batch} x {input_ids.shape[1]} tokens (576 image), "
        f"hidden {args.hidden}, {args.layers}+{args.layers} layers"
    )

    with torch.inference_mode():
        diff = (plugin(**inputs).logits - llava(**inputs).logits).abs().max().item()
        generate = dict(inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
        same = torch.equal(plugin.generate(**generate), llava.generate(**generate))
        print(f"same weights: max |logits diff| {diff:.2e}, identical greedy tokens: {same}")
        copy = LlavaForConditionalGeneration(llava.config).eval()  # control: same class, same weights
        copy.load_state_dict(llava.state_dict())
        compare(
            "forward",
            {"plugin": lambda: plugin(**inputs), "llava": lambda: llava(**inputs), "copy": lambda: copy(**inputs)},
            args.repeats,
        )
        compare(
            f"greedy generate ({args.new_tokens} new tokens)",
            {
                "plugin": lambda: plugin.generate(**generate),
                "llava": lambda: llava.generate(**generate),
                "copy": lambda: copy.generate(**generate),
            },
            args.repeats,
        )


if __name__ == "__main__":
    main()
