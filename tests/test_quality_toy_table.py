"""benchmarks/quality/toy_table.py trains, scores and tabulates, and resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality" / "toy_table.py"


@pytest.fixture(scope="module")
def toy_table():
    return load_script(SCRIPT, "toy_table")


def test_table_runs_scores_and_resumes(toy_table, tmp_path, capsys):
    args = ["--data", "8gaussians", "--methods", "gan,gp-every-4", "--seeds", "0", "--steps", "2", "--workers", "1", "--n", "200",
            "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.jsonl"), "--json", str(tmp_path / "t.json")]
    assert toy_table.main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["gan", "gp-every-4"]
    for r in rows:
        assert r["steps"] == 2 and r["n_eval"] == 200 and r["n_modes"] == 8 and 0 <= r["modes_covered"] <= 8
        assert 0.0 <= r["hq_share"] <= 1.0 and r["w1"] > 0 and r["w1_ratio"] == pytest.approx(r["w1"] / r["w1_floor"])
    by = {r["method"]: r["config"] for r in rows}
    # the settings gantk train uses for these flags: the inferred preset plus the toy recommendations
    assert by["gan"]["loss"] == "minimax" and by["gan"]["preset"] == "gan" and by["gan"]["n_critic"] == 1
    assert by["gp-every-4"]["penalty_every"] == 4 and by["gp-every-4"]["lipschitz_options"]["lambda"] == 0.1
    assert (by["gp-every-4"]["batch_size"], by["gan"]["batch_size"]) == (512, 256)  # tuned for wgan-gp with gp
    out = json.loads((tmp_path / "t.json").read_text())
    assert "| 8gaussians | gan | 1 |" in out["table"] and len(out["rows"]) == 2
    capsys.readouterr()
    assert toy_table.main(args) == 0  # resumes: nothing left to run
    assert "0 runs to do, 2 already" in capsys.readouterr().out
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2
    # --no-run tabulates only: a method with no results trains nothing
    other = [a if a != "gan,gp-every-4" else "gan,wgan" for a in args] + ["--no-run"]
    assert toy_table.main(other) == 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2
    assert "| 8gaussians | wgan |" not in json.loads((tmp_path / "t.json").read_text())["table"]
    # rows count only for the settings they ran with: another lr or generator depth is another table
    for extra in (["--lr", "5e-4"], ["--g-depth", "7"], ["--batch-size", "64"]):
        assert toy_table.main(args + extra + ["--no-run"]) == 0
        assert json.loads((tmp_path / "t.json").read_text())["rows"] == []
    assert toy_table.settings_of(rows[0]["config"]) == toy_table.expected_settings(
        {"data": "8gaussians", "method": rows[0]["method"], "steps": 2})


def test_scoring_is_part_of_a_row_and_rescore_reuses_the_run(toy_table, tmp_path, capsys):
    args = ["--data", "8gaussians", "--methods", "wgan-gp", "--seeds", "0", "--steps", "2", "--workers", "1",
            "--n", "150", "--draws", "2", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.jsonl"),
            "--json", str(tmp_path / "t.json")]
    assert toy_table.main(args) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert toy_table.eval_of(row) == (2, toy_table.FLOOR_DRAWS) and not row.get("rescored")
    # scored another way (3 draws): not in the 2-draw table; --rescore scores the run's
    # checkpoint again instead of training anew
    three = args[:]
    three[three.index("--draws") + 1] = "3"
    assert toy_table.main(three + ["--no-run"]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["rows"] == []
    capsys.readouterr()
    assert toy_table.main(three + ["--rescore"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[1]["rescored"] and toy_table.eval_of(rows[1]) == (3, toy_table.FLOOR_DRAWS)
    assert rows[1]["seconds"] == row["seconds"] and rows[1]["run"] == row["run"]
    # draw 0 is the same generated set: same modes and high-quality share
    assert (rows[1]["hq_share"], rows[1]["modes_covered"]) == (row["hq_share"], row["modes_covered"])
    assert (rows[1]["w1_floor"], rows[1]["w1_draws"]) == (row["w1_floor"], 3)
    assert len(json.loads((tmp_path / "t.json").read_text())["rows"]) == 1
    # rows scored before averaging (no draw counts) are (1, 1)
    assert toy_table.eval_of({"w1": 1.0}) == (1, 1)


def test_unknown_method_is_refused(toy_table, tmp_path):
    with pytest.raises(SystemExit) as exc:
        toy_table.main(["--methods", "nope", "--results", str(tmp_path / "r.jsonl")])
    assert exc.value.code == 2
