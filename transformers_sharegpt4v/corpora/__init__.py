"""ShareGPT4V caption corpora <-> `datasets`: build (validate, convert, shard), export, statistics, Hub push.

    from transformers_sharegpt4v.corpora import build_corpus, load_corpus
    result = build_corpus("sharegpt4v_instruct_gpt4-vision_cap100k.json", "data", "cap100k")
    print(result.summary())
    dataset = load_corpus("cap100k", streaming=False)  # = load_dataset("cap100k", split="train")

The command line is `sharegpt4v data build|export|stats|push` (corpora/cli.py).
"""

from .build import BuildResult, build_corpus, corpus_features, read_report
from .export import export_corpus, iter_corpus_rows, load_corpus, record_from_row
from .hub import push_corpus
from .images import ImageChecker, check_image_file
from .reader import JSONListReader, MalformedRecord, iter_json_records
from .records import (
    IMAGE_TAG,
    SKIP_REASONS,
    InvalidRecord,
    Record,
    check_record,
    conversations_to_messages,
    messages_to_conversations,
    parse_record,
    source_of,
)
from .stats import CaptionStats, DegenerateRule, corpus_stats, find_repetition, words_of

__all__ = [
    "IMAGE_TAG",
    "SKIP_REASONS",
    "BuildResult",
    "CaptionStats",
    "DegenerateRule",
    "ImageChecker",
    "InvalidRecord",
    "JSONListReader",
    "MalformedRecord",
    "Record",
    "build_corpus",
    "check_image_file",
    "check_record",
    "conversations_to_messages",
    "corpus_features",
    "corpus_stats",
    "export_corpus",
    "find_repetition",
    "iter_corpus_rows",
    "iter_json_records",
    "load_corpus",
    "messages_to_conversations",
    "parse_record",
    "push_corpus",
    "read_report",
    "record_from_row",
    "source_of",
    "words_of",
]
