"""Assertions shared by the CLI tests (importable because pytest puts tests/ on sys.path
for its conftest.py)."""


def assert_clean_error(res, code, *needles):
    """A CliRunner result failed with ``code``, printed exactly one ``error:`` line holding
    every needle, and no traceback."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errs = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errs) == 1, res.output
    for n in needles:
        assert n in errs[0], errs[0]
