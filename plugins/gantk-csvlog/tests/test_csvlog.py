import csv

from typer.testing import CliRunner

import gantk
from gantk.testing import check_trains
from gantk_csvlog import CSVLogger


def test_the_logger_writes_one_row_per_log_step(tmp_path):
    logger = CSVLogger()
    res = check_trains(steps=4, out=str(tmp_path), log_every=2, callbacks=[logger])
    with open(res.run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert {"critic_loss", "w_estimate"} <= set(rows[0])


def test_the_command_is_added_to_a_typer_app(tmp_path):
    import typer

    from gantk_csvlog import register_commands

    app = typer.Typer()
    register_commands(cli=app)

    @app.command("noop")
    def noop() -> None: ...

    (tmp_path / "metrics.csv").write_text("step,w\n1,0.5\n2,0.25\n3,0.125\n")
    res = CliRunner().invoke(app, ["csv-tail", str(tmp_path), "-n", "2"])
    assert res.exit_code == 0 and res.output.splitlines() == ["step,w", "2,0.25", "3,0.125"]
    assert isinstance(CSVLogger(), gantk.Logger)
