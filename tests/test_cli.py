"""The CLI skeleton: every subcommand is registered and bad input is one line with exit code 2."""

import subprocess
import sys

import pytest

from reports import cli


def test_every_command_is_registered():
    parser, modules = cli.build_parser()
    assert set(modules) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_help_of_each_command(command):
    proc = subprocess.run([sys.executable, "-m", "reports.cli", command, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: idfree-audit" in proc.stdout and command in proc.stdout


def test_bad_input_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "nope.parquet"
    proc = subprocess.run([sys.executable, "-m", "reports.cli", "attack", str(missing)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "nope.parquet" in lines[0]
