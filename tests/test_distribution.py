"""Install metadata: the Claude Desktop bundle manifest (manifest.json, MCPB 0.4, server type "uv") and the MCP
registry entry (server.json), each validated against its vendored official schema, then against the rules the
schemas cannot express and against the server itself (tools, prompts, settings, version), so they cannot drift.

The schemas are byte copies, pinned by sha256 (moving to a newer one is a deliberate change of file and pin):
- mcpb-manifest-v0.4.schema.json: github.com/modelcontextprotocol/mcpb, schemas/ (at 27083dc, mcpb 2.1.2);
- server.schema.2025-12-11.json: https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json
  (github.com/modelcontextprotocol/static), the registry's current schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from server import __version__
from server.settings import ENV_NAMES
from tests.helpers import connect
from tools.mcp_tools import build_tools

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parent / "schemas"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
REGISTRY = json.loads((ROOT / "server.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
KEY_VARIABLES = {"UNIAPI_KEY", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"}
PINNED = {
    "mcpb-manifest-v0.4.schema.json": "068557824c651d6d49b86ad132adeafe62ca788d918b3e1e2b224bf0f91320fd",
    "server.schema.2025-12-11.json": "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0",
}
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def schema(name: str) -> dict[str, Any]:
    raw = (SCHEMAS / name).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == PINNED[name], f"{name} is not the pinned copy"
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


def schema_errors(document: dict[str, Any], name: str) -> list[str]:
    validator = jsonschema.Draft7Validator(schema(name), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path)) or '/'}: {e.message}" for e in validator.iter_errors(document)]


def test_the_version_is_one_everywhere() -> None:
    assert SEMVER.match(VERSION)
    assert __version__ == MANIFEST["version"] == REGISTRY["version"] == REGISTRY["packages"][0]["version"] == VERSION


# ---- manifest.json -----------------------------------------------------------------------------------------------


def test_manifest_follows_the_mcpb_0_4_schema() -> None:
    assert MANIFEST["manifest_version"] == "0.4"
    assert schema_errors(MANIFEST, "mcpb-manifest-v0.4.schema.json") == []


def test_a_bad_manifest_is_caught_by_the_schema() -> None:
    broken = {**MANIFEST, "server": {**MANIFEST["server"], "type": "conda"}}
    assert schema_errors(broken, "mcpb-manifest-v0.4.schema.json")


def test_the_bundle_runs_the_console_script_with_uv() -> None:
    server = MANIFEST["server"]
    config = server["mcp_config"]
    assert server["type"] == "uv" and config["command"] == "uv"
    # the locked dependencies, installed for the user's own Python and platform, and the package installed as a
    # wheel (not the unpacked folder on the import path)
    assert config["args"][:3] == ["run", "--directory", "${__dirname}"]
    assert {"--frozen", "--no-editable"} <= set(config["args"])
    assert config["args"][-1] in PYPROJECT["project"]["scripts"]
    assert (ROOT / server["entry_point"]).is_file()
    assert MANIFEST["compatibility"]["runtimes"]["python"] == PYPROJECT["project"]["requires-python"]
    assert set(MANIFEST["compatibility"]["platforms"]) == {"darwin", "win32", "linux"}


def test_macos_finds_uv_where_its_installers_put_it() -> None:
    """Claude Desktop on macOS does not get the shell's PATH. An override replaces `env` as a whole (mcpb 2.1.2),
    so it must repeat every variable."""
    config = MANIFEST["server"]["mcp_config"]
    darwin = config["platform_overrides"]["darwin"]
    assert set(darwin) == {"env"}
    assert {k: v for k, v in darwin["env"].items() if k != "PATH"} == config["env"]
    path = darwin["env"]["PATH"].split(":")
    assert {"${HOME}/.local/bin", "/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin"} <= set(path)


def test_manifest_settings_reach_the_server_under_their_variables() -> None:
    env = MANIFEST["server"]["mcp_config"]["env"]
    options = MANIFEST["user_config"]
    for name, value in env.items():
        assert name in ENV_NAMES.values(), name
        for reference in PLACEHOLDER.findall(value):
            option = reference.removeprefix("user_config.")
            assert option in options, reference
            assert options[option].get("sensitive", False) is (name in KEY_VARIABLES), name
    referenced = {ref.removeprefix("user_config.") for ref in PLACEHOLDER.findall(json.dumps(env))}
    assert referenced == set(options)  # no option the server never receives


def test_every_optional_setting_has_a_plain_default() -> None:
    """A host passes an optional setting with no default as the literal text `${user_config.x}`, and does not expand
    `${HOME}` in defaults (mcpb 2.1.2): every default must be a value the server reads as is."""
    for name, option in MANIFEST["user_config"].items():
        assert option.get("required", False) or "default" in option, name
        assert not PLACEHOLDER.search(str(option.get("default", ""))), name


def test_manifest_lists_the_real_tools_and_prompts() -> None:
    assert {tool["name"] for tool in MANIFEST["tools"]} == {tool.name for tool in build_tools()}
    assert [prompt["name"] for prompt in MANIFEST["prompts"]] == ["create_video"]


@pytest.mark.anyio
async def test_manifest_prompt_arguments_match_the_server(settings) -> None:
    async with connect(settings) as client:
        prompts = (await client.list_prompts()).prompts
    assert {p.name: [a.name for a in p.arguments] for p in prompts} == {
        p["name"]: p["arguments"] for p in MANIFEST["prompts"]
    }


def test_the_icon_is_a_512_pixel_png_beside_the_manifest() -> None:
    data = (ROOT / MANIFEST["icon"]).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (512, 512)


def test_manifest_links_are_the_project_s() -> None:
    urls = PYPROJECT["project"]["urls"]
    assert MANIFEST["repository"]["url"] == urls["Repository"] == REGISTRY["repository"]["url"]
    assert MANIFEST["homepage"] == urls["Homepage"] and MANIFEST["support"] == urls["Issues"]
    assert MANIFEST["license"] == PYPROJECT["project"]["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text()


# ---- server.json (the MCP registry) ------------------------------------------------------------------------------


def test_registry_entry_follows_the_current_registry_schema() -> None:
    assert REGISTRY["$schema"] == schema("server.schema.2025-12-11.json")["$id"]
    assert schema_errors(REGISTRY, "server.schema.2025-12-11.json") == []


def test_a_bad_registry_entry_is_caught_by_the_schema() -> None:
    assert schema_errors({**REGISTRY, "description": "x" * 101}, "server.schema.2025-12-11.json")
    assert schema_errors({**REGISTRY, "name": "no-namespace"}, "server.schema.2025-12-11.json")


def test_registry_entry_matches_the_package() -> None:
    """The registry's own rules beyond the schema: one exact version, the PyPI name, a GitHub namespace owned by
    the repository's owner, secrets marked as such."""
    owner = REGISTRY["name"].split("/")[0].removeprefix("io.github.")
    assert REGISTRY["repository"]["source"] == "github"
    assert REGISTRY["repository"]["url"].startswith(f"https://github.com/{owner}/")
    assert REGISTRY["websiteUrl"] == PYPROJECT["project"]["urls"]["Homepage"]
    (package,) = REGISTRY["packages"]
    assert package["registryType"] == "pypi" and package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == PYPROJECT["project"]["name"] and package["runtimeHint"] == "uvx"
    for variable in package["environmentVariables"]:
        assert variable["name"] in ENV_NAMES.values()
        assert variable.get("isSecret", False) is (variable["name"] in KEY_VARIABLES)
        if "choices" in variable and "default" in variable:
            assert variable["default"] in variable["choices"]


def test_readme_carries_the_registry_ownership_line() -> None:
    # The registry verifies a PyPI package by this line in its README (the package's long description).
    assert f"mcp-name: {REGISTRY['name']}" in (ROOT / "README.md").read_text()


# ---- project basics ----------------------------------------------------------------------------------------------


def test_package_metadata_names_its_authors_and_links() -> None:
    project = PYPROJECT["project"]
    assert project["authors"] and all(author.get("name") for author in project["authors"])
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(project["urls"])
    assert project["license-files"] == ["LICENSE"]


def test_the_changelog_has_this_version() -> None:
    assert re.search(rf"^## \[?{re.escape(VERSION)}\]?", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
