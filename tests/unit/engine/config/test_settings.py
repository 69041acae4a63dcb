"""Settings read at the edge: the API token as secret files hold it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.cli.main import main
from engine.config.settings import Settings


@pytest.mark.parametrize("raw", ["secret\n", "  secret \r\n", "\tsecret"])
def test_a_token_with_surrounding_whitespace_is_stripped(raw: str) -> None:
    assert Settings(api_token=raw).api_token == "secret"


def test_an_empty_token_means_an_open_api() -> None:
    assert Settings(api_token="").api_token is None


@pytest.mark.parametrize("raw", [" ", "\n", " \t\r\n"])
def test_a_token_of_only_whitespace_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="only whitespace"):
        Settings(api_token=raw)


@pytest.mark.timeout(30)  # before the fix, serve started with the blank token
def test_serve_refuses_a_blank_token_at_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFECYCLE_API_TOKEN", " \n")
    assert main(["serve"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LIFECYCLE_API_TOKEN" in err
