"""Make the inputs of a CPU smoke test of ShareGPT4V training: a tiny CLIP, a tiny Llama and a caption corpus.

    python examples/training/make_tiny_inputs.py runs/tiny
    sharegpt4v init runs/tiny/init --vision runs/tiny/vit --llm runs/tiny/llm
    sharegpt4v train --config examples/recipes/tiny_pretrain.yaml
    sharegpt4v train --config examples/recipes/tiny_finetune.yaml

Writes `vit/` (CLIPVisionModel at 336/14, so the real 576 image tokens, hidden 32, 3 layers), `llm/`
(LlamaForCausalLM, hidden 32, 2 layers, with a LLaMA-style SentencePiece tokenizer trained here on the
corpus text) and `corpus/` (parquet in the `sharegpt4v data build` layout: id, images, messages, source)
of drawn shapes with detailed captions of very different lengths (1 to 24 sentences), plus a few two-turn
conversations. Nothing is downloaded. The builders are `make_tiny_inputs` and `make_corpus_rows` of
`transformers_sharegpt4v.testing_utils` (the tests and benchmarks use them too).
"""

from __future__ import annotations

import argparse

from transformers_sharegpt4v.testing_utils import make_tiny_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write vit/, llm/ and corpus/ to")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_tiny_inputs(args.root, args.samples, args.seed)
    print("Wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
