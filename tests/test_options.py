"""One source for options: every TrainConfig field carries its Option, and the CLI,
validation, resume rules and the README's option table are derived from it."""
import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gantk.cli import app
from gantk.config import (
    EXTRA_OPTIONS,
    RESUME_OVERRIDABLE,
    TrainConfig,
    check_value,
    cli_fields,
    flag_of,
    option,
    options_markdown,
)
from gantk.errors import UnknownComponentError, UsageError

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- options:begin -->\n", "<!-- options:end -->"


def test_readme_option_table_is_the_generated_one():
    """Set GANTK_FIX_README=1 to rewrite the README's table from the config."""
    text = README.read_text()
    assert BEGIN in text and END in text, "README.md lost its option-table markers"
    head, rest = text.split(BEGIN, 1)
    table, tail = rest.split(END, 1)
    if table != options_markdown() and os.environ.get("GANTK_FIX_README"):
        README.write_text(head + BEGIN + options_markdown() + END + tail)
        table = options_markdown()
    assert table == options_markdown(), (
        "README.md's option table differs from gantk/config.py; regenerate it with "
        "GANTK_FIX_README=1 python -m pytest tests/test_options.py")


def test_every_field_has_an_option_and_every_flag_is_on_the_cli():
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for f in dataclasses.fields(TrainConfig):
        opt = option(f.name)
        assert opt.help, f.name
        if opt.flag != "":
            assert flag_of(f.name) in res.output, f.name
    for name in EXTRA_OPTIONS:
        assert flag_of(name) in res.output
    assert {f.name for f in cli_fields()} | {"data_options", "model_options", "loss_options",
                                              "lipschitz_options"} == {f.name for f in dataclasses.fields(TrainConfig)}


def test_resume_rules_come_from_the_options():
    assert set(RESUME_OVERRIDABLE) == {"steps", "log_every", "checkpoint_every", "image_every", "keep", "device",
                                       "amp", "channels_last", "data_memory", "cache_dir"}
    assert all(option(k).resume for k in RESUME_OVERRIDABLE)
    table = options_markdown()
    for k in RESUME_OVERRIDABLE:
        assert f"| `{flag_of(k)}` |" in table and table.split(f"| `{flag_of(k)}` |", 1)[1].split("\n")[0].endswith("yes |")


@pytest.mark.parametrize("field,value,msg", [
    ("steps", 0, "--steps must be >= 1, got 0"),
    ("lr", float("inf"), "--lr must be > 0, got inf"),
    ("lr", float("nan"), "--lr must be > 0, got nan"),
    ("lr_floor", 1.0, "--lr-floor must lie in [0, 1), got 1.0"),
    ("ema", -0.1, "--ema must lie in [0, 1) (0 = off), got -0.1"),
    ("amp", "fp8", "--amp must be auto or off or fp32 or bf16 or fp16, got 'fp8'"),
    ("betas", (0.5, 1.0), "--betas must lie in [0, 1), got (0.5, 1.0)"),
    ("device", "tpu", "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("device", "cuda:abc", "--device must be auto, cpu, cuda or cuda:N, got 'cuda:abc'"),
    ("seed", 10**20, "--seed must lie in [0, 9223372036854775808)"),
    ("name", "../../x", "--name must be one folder name inside --out"),
    ("log_every", -1, "--log-every must be >= 0"),
])
def test_validation_is_derived_from_the_options(field, value, msg):
    cfg = TrainConfig(**{field: value})
    with pytest.raises(UsageError) as exc:
        cfg.validate()
    assert str(exc.value).startswith(msg)


def test_unknown_choices_name_the_kind():
    with pytest.raises(UnknownComponentError, match="unknown optimizer 'adma'; did you mean 'adam'"):
        TrainConfig(optimizer="adma").validate()
    with pytest.raises(UnknownComponentError, match="unknown preset"):
        TrainConfig(preset="wgan-pg").validate()
    assert check_value("threads", 0) == "must be >= 1, got 0"
    assert check_value("steps", 5) is None and TrainConfig().validate() is None


def test_cli_values_go_through_the_same_checks(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--out", str(tmp_path), "--lr-floor", "2"])
    assert res.exit_code == 2 and "--lr-floor must lie in [0, 1)" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path), "--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.output and ">= 1" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path), "--betas", "0.5"])
    assert res.exit_code == 2 and "--betas" in res.output
    assert not list(tmp_path.iterdir())  # nothing created


def test_version_short_help_and_one_device_default():
    import gantk

    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith(f"gantk {gantk.__version__}")
    for args in (["-h"], ["train", "-h"], ["sample", "-h"], ["ext", "-h"]):
        res = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert res.exit_code == 0 and "Usage:" in res.output, args
    for cmd in ("train", "sample", "eval", "bench"):
        res = runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
        line = next(x for x in res.output.splitlines() if "--device" in x)
        block = res.output[res.output.index(line):][:400]
        assert "default: auto" in block or "default: (auto)" in block, (cmd, block)


def test_help_is_grouped_and_readable_at_80_columns():
    import re

    from gantk.config import PANELS

    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0
    heads = [m.group(1) for m in re.finditer(r"╭─ (.+?) ─", res.output)]
    assert heads == ["Options", *PANELS]
    starts = []
    for line in res.output.splitlines():
        m = re.match(r"│ (--[\w-]+.*?\S)\s{2,}(\S.*?)\s*│$", line)
        if m and line.index(m.group(2)) > 0:
            starts.append(line.index(m.group(2)))
    # the help text gets about half the width (the speed group, whose --joint-forward /
    # --separate-forward pair is long, a little less)
    assert starts and sorted(starts)[len(starts) // 2] <= 40 and max(starts) <= 52, starts


def _all_commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _all_commands(cmd, path + (name,))
        else:
            yield path + (name,)


def test_no_command_shows_a_value_type_beside_a_flag():
    """Typer writes ``<bool>`` beside flags (``--help`` included), which reads as if they
    took a value; every command, a plugin's too (gantk-csvlog's csv-tail), shows none."""
    import typer
    commands = list(_all_commands(typer.main.get_command(app)))
    assert ("ext", "build") in commands and ("sample",) in commands
    for path in commands:
        _check_flag_display(path, CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).output)
    # a third-party plugin's command (tests load no third-party plugin in-process)
    pytest.importorskip("gantk_csvlog")
    env = {k: v for k, v in os.environ.items() if k != "GANTK_LOAD_PLUGINS"}
    out = subprocess.run([sys.executable, "-m", "gantk", "csv-tail", "--help"], capture_output=True, text=True,
                         env={**env, "COLUMNS": "120"}, timeout=120)
    _check_flag_display(("csv-tail",), out.stdout)


def _check_flag_display(path, out):
    assert "Show this message" in out, path
    assert "<bool>" not in out, path
    help_line = next(x for x in out.splitlines() if "--help" in x and "Show this message" in x)
    assert re.search(r"--help\s+-h\s+Show this message", help_line), (path, help_line)


def test_train_help_uses_typers_metavars_and_flags_take_no_value():
    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    body = res.output.split("╭─ Data and model", 1)[1]
    for bad in ("<str>", "<int>", "<float>", "<path>", "<list[str]>", "<bool>"):
        assert bad not in body, bad
    assert "INTEGER" in body and "FLOAT" in body and "TEXT" in body
    line = next(x for x in body.splitlines() if "--allow-batchnorm" in x)
    assert "TEXT" not in line and "BOOL" not in line.upper().split("ALLOW-BATCHNORM")[1][:12]
