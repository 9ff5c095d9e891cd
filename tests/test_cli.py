"""The `sharegpt4v` dispatcher: subcommands, help, and one way of reporting bad input for all of them."""

import pytest

from transformers_sharegpt4v.cli import COMMANDS, main


def test_every_subcommand_has_help(capsys):
    for name in COMMANDS:
        try:
            code = main([name, "--help"])
        except SystemExit as exit_info:  # argparse's help
            code = exit_info.code
        assert code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_unknown_command_and_bare_call(capsys):
    assert main([]) == 0 and "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "stats", "{tmp}/nowhere"], "nowhere"),
        (
            ["caption", "--model", "{tmp}", "--images", "{tmp}", "--output", "{tmp}/out", "--batch-size", "0"],
            "--batch-size",
        ),
        (["convert", "{tmp}/missing", "{tmp}/dst"], "missing"),
        (["push", "{tmp}", "user/repo"], "config.json"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SHAREGPT4V_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"sharegpt4v {argv[0]}: error: "), captured.err
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""
    monkeypatch.setenv("SHAREGPT4V_DEBUG", "1")
    with pytest.raises((ValueError, FileNotFoundError)):
        main(argv)


def test_errors_raised_inside_other_libraries_keep_their_traceback(tmp_path, capsys, monkeypatch):
    """A ValueError from json/datasets/transformers code is not turned into a one-line usage error."""
    monkeypatch.delenv("SHAREGPT4V_DEBUG", raising=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    import transformers_sharegpt4v.corpora.cli as corpora_cli

    def stats_from_json(args):
        import json

        json.loads(bad.read_text())  # raises inside the json module

    monkeypatch.setattr(corpora_cli, "_stats", stats_from_json)
    with pytest.raises(ValueError):
        main(["data", "stats", str(tmp_path)])
