from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

here = Path(__file__).parent
GUARD_PTH = "sharegpt4v-torchvision-guard.pth"


class BuildPyWithGuard(build_py):
    """Also puts `sharegpt4v-torchvision-guard.pth` at the root of site-packages: at interpreter start it hides a
    torchvision that cannot load beside the installed torch (see sharegpt4v_torchvision_guard.py), which
    `pip install lmms-eval` brings on CPU-only machines."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(here / GUARD_PTH), str(Path(self.build_lib) / GUARD_PTH), preserve_mode=0)
        if getattr(self, "editable_mode", False):  # `pip install -e`: the wheel's root is install's install_lib
            root = self.get_finalized_command("install").install_lib
            self.copy_file(str(here / GUARD_PTH), str(Path(root) / GUARD_PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / GUARD_PTH)]


setup(
    name="transformers-sharegpt4v",
    version="0.1.0",
    description="ShareGPT4V vision-language models on the Hugging Face stack: model, processor, "
    "conversion, corpora, TRL training and captioning at scale.",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["transformers_sharegpt4v", "transformers_sharegpt4v.*"]),
    py_modules=["sharegpt4v_torchvision_guard"],
    cmdclass={"build_py": BuildPyWithGuard},
    include_package_data=True,
    package_data={"transformers_sharegpt4v": ["chat_templates/*.jinja", "evaluation/benchmarks.yaml"]},
    install_requires=[
        # CPU wheels: `pip install torch==2.13.0` first on CPU-only machines; GPU users install the CUDA
        # build of their choice (see README). A range keeps either satisfied without a re-install.
        "torch>=2.6",
        # inference, conversion and captioning run on 5.20+ (tested); training recipes use 5.23's
        # `activation_checkpointing` argument, hence the higher floor of the train/test extras
        "transformers>=5.20,<6",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "numpy",
        "pillow>=10",
        "tqdm",
        "pyyaml",
        # LLaMA tokenizers ship as SentencePiece `tokenizer.model` files (released checkpoints, Vicuna).
        "sentencepiece",
        "protobuf",
    ],
    extras_require={
        "train": ["transformers>=5.23,<6", "trl>=1.0,<2", "datasets>=4", "accelerate>=1.0", "peft>=0.15"],
        "flash": ["flash-attn>=2.6"],
        # `sharegpt4v eval` / `lmms_eval --model sharegpt4v`. lmms-eval pins wandb==0.25.0, hence protobuf<7, which
        # cannot load sentencepiece 0.2.3's generated code (transformers then fails to read tokenizer.model):
        # sentencepiece<0.2.3 has none. Its evaluator patches filelock internals that 4.x no longer has.
        # transformers 5.23: `generate` takes the prefilled / reserved cache as `cache=`.
        "eval": ["lmms-eval>=0.7.3,<0.8", "transformers>=5.23,<6", "datasets>=4", "sentencepiece<0.2.3", "filelock<4"],
        "test": ["pytest>=8", "transformers>=5.23,<6", "trl>=1.0,<2", "datasets>=4", "accelerate>=1.0", "peft>=0.15"],
        "dev": [
            "pytest>=8",
            "ruff",
            "transformers>=5.23,<6",
            "trl>=1.0,<2",
            "datasets>=4",
            "accelerate>=1.0",
            "peft>=0.15",
        ],
    },
    entry_points={
        "console_scripts": ["sharegpt4v=transformers_sharegpt4v.cli:main"],
        # lmms-eval finds `--model sharegpt4v` here (a callable returning its ModelManifest)
        "lmms_eval.models": ["sharegpt4v=transformers_sharegpt4v.evaluation.registry:manifests"],
    },
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: Apache Software License"],
)
