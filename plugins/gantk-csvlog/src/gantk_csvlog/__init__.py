"""gantk-csvlog: a training logger that writes ``metrics.csv`` into the run folder
(``gantk train --logger csv``) and a command that prints its last rows
(``gantk csv-tail RUN``). An example of gantk's ``register_loggers`` and
``register_commands`` hooks."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

import gantk

__version__ = "0.1.0"

FILENAME = "metrics.csv"


class CSVLogger(gantk.Logger):
    name = "csv"
    description = "writes the logged metrics to metrics.csv in the run folder (one row per log step)"
    options = {"filename": FILENAME}

    def on_start(self, trainer) -> None:
        self.path = Path(trainer.run_dir) / self.opts["filename"]
        self.columns: list[str] | None = None
        if self.path.is_file():  # a resumed run: keep the header already written
            with open(self.path, newline="") as f:
                self.columns = next(csv.reader(f), None)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        new = self.columns is None
        if new:
            self.columns = list(row)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


@gantk.hookimpl
def register_loggers(register):
    register(CSVLogger)


@gantk.hookimpl
def register_commands(cli):
    @cli.command("csv-tail")
    def csv_tail(
        run: Annotated[Path, typer.Argument(help="A run folder trained with --logger csv.")],
        n: Annotated[int, typer.Option("-n", help="Rows to show.")] = 5,
    ) -> None:
        """Print the last rows of a run's metrics.csv (gantk-csvlog)."""
        path = run / FILENAME
        if not path.is_file():
            typer.echo(f"error: {path} not found (train with --logger csv)", err=True)
            raise typer.Exit(1)
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        for row in [rows[0], *rows[1:][-n:]]:
            typer.echo(",".join(row))
