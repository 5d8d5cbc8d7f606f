from __future__ import annotations

import pytest

from server.settings import Settings, SettingsError


def test_provider_defaults_follow_the_keys() -> None:
    assert Settings.from_env({}).provider == "uniapi"
    assert Settings.from_env({"UNIAPI_KEY": "u", "FAL_KEY": "f"}).provider == "uniapi"
    fal = Settings.from_env({"FAL_KEY": "f"})
    assert (fal.provider, fal.base_url) == ("fal", "https://queue.fal.run")
    assert Settings.from_env({"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "sec"}).api_key() == "id:sec"
    assert Settings.from_env({"UNIAPI_KEY": "u"}).base_url == "https://api.uniapi.io"


def test_explicit_provider_and_base_url() -> None:
    settings = Settings.from_env({"FAL_MCP_PROVIDER": "fal", "FAL_MCP_BASE_URL": "http://127.0.0.1:9/", "FAL_KEY": "k"})
    assert settings.base_url == "http://127.0.0.1:9"
    assert settings.api_key() == "k"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"FAL_MCP_BASE_URL": "http://api.example.com"}, "FAL_MCP_BASE_URL"),
        ({"FAL_MCP_BASE_URL": "ftp://x"}, "FAL_MCP_BASE_URL"),
        ({"FAL_MCP_BASE_URL": "https://user:pw@api.example.com"}, "FAL_MCP_BASE_URL"),
        ({"FAL_MCP_PROVIDER": "openai"}, "FAL_MCP_PROVIDER"),
        ({"FAL_MCP_SUBMIT_TIMEOUT": "soon"}, "FAL_MCP_SUBMIT_TIMEOUT"),
        ({"FAL_MCP_SUBMIT_TIMEOUT": "-1"}, "FAL_MCP_SUBMIT_TIMEOUT"),
        ({"FAL_MCP_MAX_CONNECTIONS": "0"}, "FAL_MCP_MAX_CONNECTIONS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


def test_key_is_not_in_the_repr() -> None:
    settings = Settings.from_env({"UNIAPI_KEY": "sk-very-secret-value"})
    assert "sk-very-secret-value" not in repr(settings)
    assert "sk-very-secret-value" not in str(settings.model_dump())
