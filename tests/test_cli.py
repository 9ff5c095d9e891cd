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
        (["caption", "--model", "{tmp}", "--images", "{tmp}", "--output", "{tmp}/out", "--batch-size", "0"], ""),
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
