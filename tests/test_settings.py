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


def test_an_unfilled_placeholder_counts_as_unset() -> None:
    # An MCPB host passes an optional setting left empty as its literal placeholder.
    settings = Settings.from_env(
        {
            "UNIAPI_KEY": "${user_config.uniapi_key}",
            "FAL_KEY": "f",
            "FAL_MCP_DOWNLOAD_DIR": "${user_config.download_dir}",
        }
    )
    assert (settings.provider, settings.uniapi_key, settings.download_dir) == ("fal", None, None)
    assert Settings.from_env({"FAL_MCP_MAX_WAIT_SECONDS": " ${user_config.max_wait_seconds} "}).max_wait_seconds == 50


def test_a_half_expanded_placeholder_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match=r"FAL_MCP_FILE_ROOTS.*placeholder") as refused:
        Settings.from_env({"FAL_MCP_FILE_ROOTS": "${HOME}/Pictures"})
    assert refused.value.variables == ("FAL_MCP_FILE_ROOTS",)


def test_an_unknown_provider_is_reported_as_such() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"FAL_MCP_PROVIDER": "falai", "UNIAPI_KEY": "sk-secret-value"})
    message = str(refused.value)
    assert "FAL_MCP_PROVIDER" in message and "'falai'" in message
    assert "FAL_MCP_BASE_URL" not in message and refused.value.variables == ("FAL_MCP_PROVIDER",)


def test_a_bad_key_value_is_never_quoted() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"FAL_KEY_ID": "id-secret-value"})  # without its FAL_KEY_SECRET
    assert "id-secret-value" not in str(refused.value)


# ---- credentials in URLs are never quoted back --------------------------------------------------------------


@pytest.mark.parametrize("variable", ["FAL_MCP_BASE_URL", "FAL_MCP_STORAGE_TOKEN_BASE", "FAL_MCP_STORAGE_UPLOAD_BASE"])
@pytest.mark.parametrize(
    "url",
    [
        "https://admin:hunter2@api.example.com",  # credentials in the URL
        "ftp://admin:hunter2@api.example.com",  # ... and a wrong scheme
        "http://admin:hunter2@api.example.com",  # ... and plain http beyond loopback
        "admin:hunter2@api.example.com",  # ... and no scheme
        "https://api.example.com/?key=hunter2",  # a key in the query
        "https://api.example.com/#hunter2",
        "https://admin:hunter2@api.example.com:junk",
    ],
)
def test_credentials_in_a_url_setting_are_not_quoted(variable: str, url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: url, "FAL_KEY": "k"})
    message = str(refused.value)
    assert variable in message and "hunter2" not in message
    assert "api.example.com" in message  # what is not secret still helps to find the mistake


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1 'unsafe-eval' https://evil.example",  # would land in the job view's CSP
        "http://127.0.0.1:8000;script-src",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:0",
        "https://api.example.com:https",
    ],
)
def test_a_base_url_with_a_junk_port_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match=r"FAL_MCP_BASE_URL.*port"):
        Settings.from_env({"FAL_MCP_BASE_URL": url})


def test_good_ports_are_kept() -> None:
    for url in ("http://127.0.0.1:8000", "http://[::1]:8000", "http://localhost", "https://api.example.com:443"):
        assert Settings.from_env({"FAL_MCP_BASE_URL": url}).base_url == url


# ---- the database URL -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://fal:se@cret@127.0.0.1:5432/fal",  # libpq: password 'se', host 'cret@127.0.0.1', quoted
        "postgresql://fal:se/cret@127.0.0.1:5432/fal",  # libpq: host 'fal', port 'se', quoted
        "postgresql://fal:se?cret@127.0.0.1:5432/fal",
        "postgresql://fal:se#cret@127.0.0.1:5432/fal",
    ],
)
def test_an_unescaped_character_in_the_database_password_is_refused_unquoted(url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"FAL_MCP_DATABASE_URL": url})
    message = str(refused.value)
    assert "FAL_MCP_DATABASE_URL" in message and "%40" in message
    assert "cret" not in message and "se@" not in message


def test_a_percent_encoded_database_password_is_accepted() -> None:
    settings = Settings.from_env({"FAL_MCP_DATABASE_URL": "postgresql://fal:se%40cret@127.0.0.1:5432/fal"})
    assert "se@cret" in settings.database_secrets()
