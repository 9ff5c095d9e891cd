"""ShareGPT4V caption corpora <-> `datasets`: build (validate, convert, shard), export, statistics, Hub push.

    from transformers_sharegpt4v.corpora import build_corpus, load_corpus
    result = build_corpus("sharegpt4v_instruct_gpt4-vision_cap100k.json", "data", "cap100k")
    print(result.summary())
    dataset = load_corpus("cap100k", streaming=False)  # = load_dataset("cap100k", split="train")

The command line is `sharegpt4v data build|export|stats|push` (corpora/cli.py).
"""

from .._lazy import lazy_attributes

# Names load on first use (pyarrow, datasets, huggingface_hub come with them): `sharegpt4v data --help` and the
# light modules of this package (cli.py) cost nothing to import.
_NAMES = {
    "BuildResult": "build",
    "build_corpus": "build",
    "corpus_features": "layout",
    "read_report": "layout",
    "export_corpus": "export",
    "iter_corpus_rows": "export",
    "load_corpus": "export",
    "record_from_row": "export",
    "push_corpus": "hub",
    "ImageChecker": "images",
    "check_image_file": "images",
    "JSONListReader": "reader",
    "MalformedRecord": "reader",
    "iter_json_records": "reader",
    "IMAGE_TAG": "records",
    "SKIP_REASONS": "records",
    "InvalidRecord": "records",
    "Record": "records",
    "check_record": "records",
    "conversations_to_messages": "records",
    "messages_to_conversations": "records",
    "parse_record": "records",
    "source_of": "records",
    "CaptionStats": "stats",
    "DegenerateRule": "stats",
    "corpus_stats": "stats",
    "find_repetition": "stats",
    "words_of": "stats",
}

__all__ = sorted(_NAMES)


__getattr__ = lazy_attributes(__name__, {name: "." + module for name, module in _NAMES.items()})
