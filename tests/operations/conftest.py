"""The CLI tests' `run` fixture (`orgbill ARGS` in-process), for every module here."""

from tests.operations.test_cli import run  # noqa: F401
