"""ShareGPT4V caption corpora <-> `datasets`: build (validate, convert, shard), export, statistics, Hub push.

    from transformers_sharegpt4v.corpora import build_corpus, load_corpus
    result = build_corpus("sharegpt4v_instruct_gpt4-vision_cap100k.json", "data", "cap100k")
    print(result.summary())
    dataset = load_corpus("cap100k", streaming=False)  # = load_dataset("cap100k", split="train")

The command line is `sharegpt4v data build|export|stats|push` (corpora/cli.py).
"""

from .._lazy import lazy_attributes, names_by_module
from .records import __all__ as _RECORD_NAMES  # a light module (standard library only)

# Names load on first use (pyarrow, datasets, huggingface_hub come with them): `sharegpt4v data --help` and the
# light modules of this package (cli.py) cost nothing to import.
_NAMES = names_by_module(
    {
        ".build": ("BuildResult", "build_corpus"),
        ".layout": ("corpus_features", "read_report"),
        ".export": ("export_corpus", "iter_corpus_rows", "load_corpus", "record_from_row"),
        ".hub": ("push_corpus",),
        ".images": ("ImageChecker", "check_image_file"),
        ".reader": ("JSONListReader", "MalformedRecord"),
        ".records": _RECORD_NAMES,  # every public name of records.py
        ".stats": ("CaptionStats", "DegenerateRule", "corpus_stats", "find_repetition", "words_of"),
    }
)

__all__ = sorted(_NAMES)


__getattr__ = lazy_attributes(__name__, _NAMES)
