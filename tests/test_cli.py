"""The `sharegpt4v` dispatcher: subcommands, help, and one way of reporting bad input for all of them.

Bad input ends with one line, `sharegpt4v CMD: error: ...`, exit code 2, the output location as it was, and
the same command works once the input is fixed. `--help` and the `data` commands never import torch, and
`import transformers_sharegpt4v` stays light while still registering the Auto classes."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIXTURE_IMAGES
from test_captioning import captioner_dir  # noqa: F401  (fixture)

from transformers_sharegpt4v.cli import COMMANDS, main
from transformers_sharegpt4v.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "examples" / "recipes"


def _error_line(captured) -> str:
    """The one line of a usage error: stderr ends with it, and nothing else of it is a traceback."""
    assert "Traceback" not in captured.err, captured.err
    lines = captured.err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


def _run(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transformers_sharegpt4v.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _turns(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def _corpus(tmp_path: Path) -> tuple[Path, Path]:
    """A one-record corpus whose image exists under the returned root."""
    root = tmp_path / "root"
    (root / "coco").mkdir(parents=True)
    shutil.copy(FIXTURE_IMAGES / "waterview.jpg", root / "coco" / "lake.jpg")
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps([{"id": "a", "image": "coco/lake.jpg", "conversations": _turns("<image>\nq", "a")}]))
    return corpus, root


def _caption_folder(folder: Path, captions: dict[str, str]) -> Path:
    """What `sharegpt4v caption` writes (run.json, data/train-r000-*.parquet), without running a model."""
    (folder / "data").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"model": "m", "prompt": "Describe.", "generation": {}}))
    table = pa.table({"image": list(captions), "caption": list(captions.values())})
    pq.write_table(table, folder / "data" / "train-r000-000000.parquet")
    return folder


# ------------------------------------------------------------------------------------------- dispatcher


def test_every_subcommand_has_help(capsys):
    for name in COMMANDS:
        try:
            code = main([name, "--help"])
        except SystemExit as exit_info:  # argparse's help
            code = exit_info.code
        assert code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_unknown_command_bare_call_and_version(capsys):
    assert main([]) == 0 and "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from transformers_sharegpt4v import __version__

    assert capsys.readouterr().out.strip() == f"sharegpt4v {__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "stats", "{tmp}/nowhere"], "nowhere"),
        (
            ["caption", "--model", "{tmp}", "--images", "{tmp}", "--output", "{tmp}/out", "--batch-size", "0"],
            "--batch-size",
        ),
        (
            "caption --model {tmp} --images {tmp} --output {tmp}/out --compile --cache dynamic".split(),
            "--compile needs the static cache",
        ),
        (["convert", "{tmp}/missing", "{tmp}/dst"], "missing"),
        (["init", "{tmp}/dst", "--vision", "{tmp}/vit", "--llm", "{tmp}/llm"], "--vision"),
        (["push", "{tmp}", "user/repo"], "config.json"),
        (["merge-lora", "{tmp}", "{tmp}/out"], "adapter_config.json"),
        (["train", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SHAREGPT4V_DEBUG", raising=False)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"sharegpt4v {argv[0]}: error: "), captured.err
    assert message in captured.err and "Traceback" not in captured.err and len(captured.err.splitlines()) == 1
    assert captured.out == ""
    monkeypatch.setenv("SHAREGPT4V_DEBUG", "1")
    with pytest.raises(UsageError):
        main(argv)


def test_only_usage_errors_become_one_line(tmp_path, capsys, monkeypatch):
    """A ValueError that is not a UsageError (a bug, or another library's error) keeps its traceback, wherever
    it was raised; a UsageError is one line. UsageError stays a ValueError for Python callers."""
    import transformers_sharegpt4v.corpora.cli as corpora_cli

    monkeypatch.delenv("SHAREGPT4V_DEBUG", raising=False)

    def raise_value_error(args):
        raise ValueError("an internal inconsistency")

    stats = corpora_cli.ACTIONS["stats"]
    monkeypatch.setitem(corpora_cli.ACTIONS, "stats", stats._replace(run=raise_value_error))
    with pytest.raises(ValueError, match="internal inconsistency"):
        main(["data", "stats", str(tmp_path)])

    def raise_usage_error(args):
        raise UsageError("OUT is odd: give another one.")

    monkeypatch.setitem(corpora_cli.ACTIONS, "stats", stats._replace(run=raise_usage_error))
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "sharegpt4v data: error: OUT is odd: give another one.\n"
    assert issubclass(UsageError, ValueError)


# -------------------------------------------------------------------------------- start fast, speak little


def test_help_and_data_commands_never_import_torch(tmp_path):
    """`--help` of every command (and of each data action) and the data commands themselves run without
    importing torch or transformers (checked in a fresh interpreter)."""
    corpus, root = _corpus(tmp_path)
    _caption_folder(tmp_path / "caps", {"a.jpg": "a dog"})
    out = tmp_path / "out"
    helps = [[name, "--help"] for name in COMMANDS] + [["data", action, "--help"] for action in
             ("build", "export", "stats", "push")] + [["--help"], ["--version"]]  # fmt: skip
    code = f"""
        import contextlib, io, sys
        from transformers_sharegpt4v.cli import main

        def quiet(argv):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                try:
                    return main(argv), err.getvalue()
                except SystemExit as exit_info:
                    return exit_info.code, err.getvalue()

        def heavy():
            return [name for name in ("torch", "transformers", "trl") if name in sys.modules]

        for argv in {helps!r}:
            assert quiet(argv)[0] == 0, argv
            assert not heavy(), (argv, heavy())
        assert quiet(["data", "build", "--json", {str(corpus)!r}, "--image-root", {str(root)!r},
                      "--output", {str(out)!r}, "--num-workers", "0"])[0] == 0
        assert not heavy(), ("build", heavy())
        assert quiet(["data", "stats", {str(out)!r}])[0] == 0 and not heavy(), ("stats", heavy())
        assert quiet(["data", "stats", {str(tmp_path / "caps")!r}])[0] == 0 and not heavy()
        assert quiet(["data", "export", {str(out)!r}, "--to-json", {str(tmp_path / "back.json")!r}])[0] == 0
        assert not heavy(), ("export", heavy())
        code, err = quiet(["data", "push", {str(out)!r}, "me/corpus"])  # HF_HUB_OFFLINE=1: refused
        assert code == 2 and "HF_HUB_OFFLINE" in err, err
        assert not heavy(), ("push", heavy())
        print("OK")
    """
    result = _python(code, env={"HF_HUB_OFFLINE": "1"})
    assert result.stdout.strip() == "OK"
    assert (out / "data").is_dir() and json.loads((tmp_path / "back.json").read_text())[0]["id"] == "a"


def test_plain_import_is_light_and_registers_every_auto_class(tiny_model, llama_tokenizer_dir, tmp_path):
    """After `import transformers_sharegpt4v` (which loads neither torch nor transformers) the six Auto classes
    load a plugin checkpoint without trust_remote_code, whichever of transformers or the plugin comes first."""
    from transformers import LlamaTokenizer

    from transformers_sharegpt4v import ShareGPT4VProcessor

    folder = tmp_path / "checkpoint"
    tokenizer = LlamaTokenizer.from_pretrained(llama_tokenizer_dir)
    ShareGPT4VProcessor.prepare_tokenizer(tokenizer)
    tiny_model.save_pretrained(folder)
    ShareGPT4VProcessor.from_model_config(tiny_model.config, tokenizer).save_pretrained(folder)
    for name in ("configuration", "modeling", "processing", "image_processing"):
        (folder / f"{name}_sharegpt4v.py").unlink()  # no remote code to fall back on: the registration must work
    load = f"""
        from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForCausalLM,
                                  AutoModelForImageTextToText, AutoProcessor)
        folder = {str(folder)!r}
        expected = {{AutoConfig: "ShareGPT4VConfig", AutoModel: "ShareGPT4VModel",
                    AutoModelForCausalLM: "ShareGPT4VForCausalLM", AutoModelForImageTextToText: "ShareGPT4VForCausalLM",
                    AutoImageProcessor: "ShareGPT4VImageProcessor", AutoProcessor: "ShareGPT4VProcessor"}}
        for auto, name in expected.items():
            loaded = auto.from_pretrained(folder)
            assert type(loaded).__name__ == name and type(loaded).__module__.startswith("transformers_sharegpt4v."), (
                auto, type(loaded))
        print("OK")
    """
    first_plugin = "import sys\nimport transformers_sharegpt4v\n"
    first_plugin += "assert not {'torch', 'transformers'} & set(sys.modules), sorted({'torch', 'transformers'} & set(sys.modules))\n"
    orders = {
        "plugin first": first_plugin,
        "transformers first": "import transformers\nimport transformers_sharegpt4v\n",
        "a module of the plugin first": "from transformers_sharegpt4v.processing_sharegpt4v import ShareGPT4VProcessor\n",
    }
    for order, head in orders.items():
        assert _python(head + textwrap.dedent(load)).stdout.strip() == "OK", order


def test_train_help_is_short_and_help_all_lists_every_key(capsys):
    from dataclasses import fields

    from transformers_sharegpt4v.training.cli import SHAREGPT4V_KEYS
    from transformers_sharegpt4v.training.recipe import ShareGPT4VArguments

    assert main(["train", "--help"]) == 0
    short = capsys.readouterr().out
    assert "--config RECIPE.yaml" in short and "--help-all" in short and len(short.splitlines()) < 30
    assert tuple(field.name for field in fields(ShareGPT4VArguments)) == SHAREGPT4V_KEYS
    assert all(key in short for key in SHAREGPT4V_KEYS)
    assert main(["train", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert "--config RECIPE.yaml" in full and "--learning_rate" in full and "--vision_trainable_from_layer" in full


def test_data_actions_describe_themselves(capsys):
    for action, words in (("build", "report.json"), ("export", "JSON list"), ("stats", "degenerate"),
                          ("push", "Hub dataset")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["data", action, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert words in text.split("positional arguments")[0], (action, text)


def test_caption_preset_names_are_the_engines():
    from transformers_sharegpt4v.captioning.arguments import CaptionArguments
    from transformers_sharegpt4v.captioning.engine import PRESETS

    preset = next(f for f in dataclasses.fields(CaptionArguments) if f.name == "preset")
    assert set(preset.metadata["choices"]) == set(PRESETS)


def test_options_are_one_dataclass_with_defaults_then_config_then_flags(tmp_path, capsys):
    """Every migrated command parses its dataclass the way the recipes are parsed: dataclass defaults <
    `--config` YAML < flags; `--num_workers` equals `--num-workers`; an unknown key or flag names itself."""
    from transformers_sharegpt4v.arguments import parse_arguments
    from transformers_sharegpt4v.captioning.arguments import CaptionArguments
    from transformers_sharegpt4v.corpora.cli import ExportArguments, StatsArguments

    config = tmp_path / "caption.yaml"
    config.write_text("model: m\nimages: imgs\noutput: out\nbatch_size: 8\nnum-workers: 3\nprogress: false\n")
    args = parse_arguments(CaptionArguments, ["--config", str(config), "--batch_size", "4"], "sharegpt4v caption")
    assert (args.model, args.images, args.batch_size, args.num_workers, args.progress) == ("m", "imgs", 4, 3, False)
    assert args.rows_per_shard == 1000 and args.preset is None
    args = parse_arguments(CaptionArguments, "--model m --images i --output o --no-progress --compile".split(), "c")
    assert (args.progress, args.compile, args.dtype) == (False, True, "auto")
    config.write_text("model: m\nimages: imgs\noutput: out\ncompile: true\n")
    args = parse_arguments(CaptionArguments, [f"--config={config}", "--compile", "--no-progress"], "c")
    assert (args.model, args.compile, args.progress) == ("m", True, False)
    config.write_text("model: m\nbatch_sise: 8\n")
    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(CaptionArguments, ["--config", str(config)], "sharegpt4v caption")
    assert exit_info.value.code == 2 and "batch_sise" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_arguments(CaptionArguments, "--model m --images i --output o --bogus 1".split(), "sharegpt4v caption")
    assert "--bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_arguments(CaptionArguments, "--images i --output o".split(), "sharegpt4v caption")
    assert "--model" in capsys.readouterr().err
    # the old spellings of renamed flags still work, with a one-line warning
    args = parse_arguments(CaptionArguments, "--model m --images i --output o --shard-size 7".split(), "c")
    assert args.rows_per_shard == 7 and "--shard-size is deprecated, use --rows-per-shard" in capsys.readouterr().err
    args = parse_arguments(ExportArguments, ["OUT", "--json", "x.json"], "sharegpt4v data export")
    assert (args.dataset, args.to_json) == ("OUT", "x.json") and "use --to-json" in capsys.readouterr().err
    args = parse_arguments(StatsArguments, ["OUT", "--output", "s.json"], "sharegpt4v data stats")
    assert args.report == "s.json" and "use --report" in capsys.readouterr().err
    # a list option: flags replace the file's list, as any flag replaces the file's value
    from transformers_sharegpt4v.corpora.cli import BuildArguments

    config.write_text("json: [a.json, b.json]\nimage_root: r\noutput: o\n")
    args = parse_arguments(BuildArguments, ["--config", str(config)], "sharegpt4v data build")
    assert args.json == ["a.json", "b.json"]
    args = parse_arguments(BuildArguments, ["--config", str(config), "--json", "c.json"], "sharegpt4v data build")
    assert args.json == ["c.json"]
    args = parse_arguments(BuildArguments, "--json c.json --json d.json --image-root r --output o".split(), "b")
    assert args.json == ["c.json", "d.json"]


# ---------------------------------------------------------------------------------------------- caption


def _caption_argv(model, images, out) -> list[str]:
    return ["caption", "--model", str(model), "--images", str(images), "--output", str(out),
            "--max-new-tokens", "2", "--batch-size", "2", "--no-progress"]  # fmt: skip


@pytest.fixture
def two_images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("waterview.jpg", "extreme_ironing.jpg"):
        shutil.copy(FIXTURE_IMAGES / name, folder / name)
    return folder


def test_caption_with_a_missing_model_writes_nothing_and_the_fixed_command_runs(
    captioner_dir,  # noqa: F811
    two_images,
    tmp_path,
    capsys,
    monkeypatch,
):
    monkeypatch.delenv("SHAREGPT4V_DEBUG", raising=False)
    out = tmp_path / "out"
    missing = tmp_path / "ShareGPT4V-7B"
    assert main(_caption_argv(missing, two_images, out)) == 2
    line = _error_line(capsys.readouterr())
    assert line.startswith("sharegpt4v caption: error: --model ") and str(missing) in line and "no such" in line
    assert not out.exists()
    # a Hub id that cannot be fetched (the tests run with HF_HUB_OFFLINE=1) says why
    assert main(_caption_argv("someone/ShareGPT4V-7B", two_images, out)) == 2
    assert "HF_HUB_OFFLINE" in _error_line(capsys.readouterr()) and not out.exists()
    # a folder without weights: refused before OUT is written
    (tmp_path / "config-only").mkdir()
    shutil.copy(captioner_dir / "config.json", tmp_path / "config-only" / "config.json")
    assert main(_caption_argv(tmp_path / "config-only", two_images, out)) == 2
    assert "could not be loaded" in _error_line(capsys.readouterr()) and not out.exists()

    assert main(_caption_argv(captioner_dir, two_images, out)) == 0
    assert "caption: 2 done" in capsys.readouterr().out
    assert pq.read_table(sorted((out / "data").glob("*.parquet"))[0]).num_rows == 2


def test_a_run_json_without_captions_does_not_block_other_settings(captioner_dir, two_images, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"model": "another-model", "prompt": "other", "generation": {}}))
    assert main(_caption_argv(captioner_dir, two_images, out)) == 0
    assert json.loads((out / "run.json").read_text())["model"] == str(captioner_dir.resolve())
    # once it holds captions, other settings are refused, before anything is written
    before = sorted(p.name for p in (out / "data").iterdir())
    assert main([*_caption_argv(captioner_dir, two_images, out), "--prompt", "Say something else."]) == 2
    assert "already holds captions made with other settings" in _error_line(capsys.readouterr())
    assert sorted(p.name for p in (out / "data").iterdir()) == before


def test_caption_workers_default_to_the_cores_and_a_finished_run_starts_none(
    captioner_dir,  # noqa: F811
    two_images,
    tmp_path,
    monkeypatch,
):
    import warnings

    from transformers_sharegpt4v.captioning import run

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= run.default_num_workers() <= max(1, min(4, cores - 1))
    loaders = []
    make_loader = run.make_loader
    monkeypatch.setattr(run, "make_loader", lambda *a: loaders.append(a[-1]) or make_loader(*a))
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = run.caption_images(str(captioner_dir), two_images, out, max_new_tokens=2, progress=False)
        again = run.caption_images(str(captioner_dir), two_images, out, max_new_tokens=2, progress=False)
    assert (first.done, again.done, again.skipped) == (2, 0, 2)
    assert loaders == [run.default_num_workers()]  # the resume with nothing to do made no DataLoader
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]


# ------------------------------------------------------------------------------------------------- data


def test_data_build_refuses_a_json_that_is_not_a_list_and_writes_nothing(tmp_path, capsys):
    corpus, root = _corpus(tmp_path)
    good = corpus.read_text()
    corpus.write_text(json.dumps({"records": json.loads(good)}))
    out = tmp_path / "new" / "out"
    argv = ["data", "build", "--json", str(corpus), "--image-root", str(root), "--output", str(out),
            "--num-workers", "0"]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys.readouterr())
    assert line.startswith("sharegpt4v data: error: ") and str(corpus) in line and "is not a JSON list" in line
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["corpus.json", "root"]
    corpus.write_text(good)
    assert main(argv) == 0
    assert (out / "data").is_dir() and (out / "report.json").is_file()


def test_data_build_with_no_usable_record_fails_and_keeps_the_previous_build(tmp_path, capsys):
    corpus, root = _corpus(tmp_path)
    out = tmp_path / "out"
    argv = ["data", "build", "--json", str(corpus), "--image-root", str(root), "--output", str(out),
            "--num-workers", "0"]  # fmt: skip
    assert main(argv) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (root / "coco" / "lake.jpg").rename(root / "lake.jpg")  # every record now misses its image
    assert main([*argv, "--overwrite"]) == 2
    line = _error_line(capsys.readouterr())
    assert line.startswith("sharegpt4v data: error: no record of") and "missing_image 1" in line
    assert "record 'a'" in line and "--image-root" in line
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.json", "out", "root"]  # no staging left
    (root / "lake.jpg").rename(root / "coco" / "lake.jpg")
    assert main([*argv, "--overwrite"]) == 0


def test_data_build_into_a_full_folder_says_the_flag(tmp_path, capsys):
    corpus, root = _corpus(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main(["data", "build", "--json", str(corpus), "--image-root", str(root), "--output",
                 str(tmp_path / "out")]) == 2  # fmt: skip
    line = _error_line(capsys.readouterr())
    assert "pass --overwrite" in line and "overwrite=True" not in line
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_data_stats_reads_a_caption_folder_and_export_refuses_it(tmp_path, capsys):
    caps = _caption_folder(tmp_path / "caps", {"a.jpg": "a dog on the grass", "b.jpg": "red car, " * 20})
    assert main(["data", "stats", str(caps)]) == 0
    printed = capsys.readouterr().out
    assert "captions            2" in printed and "b.jpg: 'red car,'" in printed
    assert json.loads((caps / "stats.json").read_text())["captions"] == 2
    assert main(["data", "export", str(caps), "--to-json", str(tmp_path / "x.json")]) == 2
    assert "--export-json" in _error_line(capsys.readouterr()) and not (tmp_path / "x.json").exists()
    (tmp_path / "other" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "other" / "data" / "train-0.parquet")
    assert main(["data", "stats", str(tmp_path / "other")]) == 2
    assert "not a corpus built by `sharegpt4v data build`" in _error_line(capsys.readouterr())


# ------------------------------------------------------------------------------------------- train, push


def test_train_with_a_missing_model_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SHAREGPT4V_DEBUG", raising=False)
    missing = tmp_path / "no-such-checkpoint"
    run = tmp_path / "run"
    argv = ["train", "--config", str(RECIPES / "tiny_finetune.yaml"), "--model_name_or_path", str(missing),
            "--output_dir", str(run)]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys.readouterr())
    assert line.startswith(f"sharegpt4v train: error: --model_name_or_path {missing}: no such folder")
    assert not run.exists()
    assert main([*argv[:-4], "--model_name_or_path", "someone/missing-model", "--output_dir", str(run)]) == 2
    assert "HF_HUB_OFFLINE" in _error_line(capsys.readouterr()) and not run.exists()


@pytest.fixture
def llava_folder(tmp_path) -> Path:
    """Enough of a llava-hf checkpoint for `push` to get as far as the Hub."""
    folder = tmp_path / "llava"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "x"}, "could not be reached"),
    ],
)
def test_push_offline_or_without_network_is_one_line(llava_folder, tmp_path, env, reason):
    before = sorted(p.name for p in llava_folder.iterdir())
    for argv in (["push", str(llava_folder), "me/model"], ["data", "push", str(tmp_path / "corpus"), "me/corpus"]):
        if argv[0] == "data":
            corpus, root = _corpus(tmp_path)
            assert main(["data", "build", "--json", str(corpus), "--image-root", str(root), "--output",
                         str(tmp_path / "corpus"), "--num-workers", "0"]) == 0  # fmt: skip
        result = _run(argv, env=env)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "Traceback" not in result.stderr and line.startswith(f"sharegpt4v {argv[0]}: error: Pushing ")
        assert reason in line, line
    assert sorted(p.name for p in llava_folder.iterdir()) == before  # no model card written for a failed push
    assert not (tmp_path / "corpus" / ".hub-upload").exists()
