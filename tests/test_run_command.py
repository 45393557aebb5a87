"""The test command's verdict: what pytest's exit code makes of the whole run."""

from __future__ import annotations

from tests.run import NO_TESTS_COLLECTED, verdict


def test_no_tests_collected_fails_the_command_with_a_message_that_says_so() -> None:
    code, line = verdict(NO_TESTS_COLLECTED, ["ruff", "mypy", "pytest"], 1.0)
    assert code == 1
    assert line == "tests/run.py: FAILED: pytest collected no tests (check its arguments)"


def test_a_failing_pytest_passes_its_exit_code_on() -> None:
    assert verdict(1, ["pytest"], 1.0) == (1, "tests/run.py: FAILED: pytest exited with 1")
    assert verdict(2, ["pytest"], 1.0)[0] == 2


def test_a_passing_run_names_the_steps_it_ran() -> None:
    code, line = verdict(0, ["ruff", "mypy", "import contracts", "pytest"], 2.25)
    assert code == 0
    assert line == "tests/run.py: passed: ruff, mypy, import contracts, pytest (2.2 min)"
