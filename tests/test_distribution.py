"""Install metadata: the Claude Desktop bundle manifest (manifest.json, MCPB 0.3) and the MCP registry entry
(server.json), checked against the published field rules as far as they can be checked offline, and against
the server itself (tools, prompts, settings, version), so they cannot drift."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from server.settings import ENV_NAMES
from tests.helpers import connect
from tools.mcp_tools import build_tools

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
REGISTRY = json.loads((ROOT / "server.json").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
SEMVER = r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
KEY_VARIABLES = {"UNIAPI_KEY", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"}

# The MCPB manifest's rules (spec 0.3): required fields, server types, user_config option types.
MANIFEST_RULES = {
    "type": "object",
    "required": ["manifest_version", "name", "version", "description", "author", "server"],
    "properties": {
        "manifest_version": {"enum": ["0.2", "0.3"]},
        "name": {"type": "string", "minLength": 1},
        "version": {"type": "string", "pattern": SEMVER},
        "description": {"type": "string", "minLength": 1},
        "author": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        "server": {
            "type": "object",
            "required": ["type", "entry_point", "mcp_config"],
            "properties": {
                "type": {"enum": ["node", "python", "binary"]},
                "entry_point": {"type": "string"},
                "mcp_config": {
                    "type": "object",
                    "required": ["command"],
                    "additionalProperties": False,
                    "properties": {
                        "command": {"type": "string"},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
        "tools": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "prompts": {"type": "array", "items": {"type": "object", "required": ["name", "text"]}},
        "compatibility": {
            "type": "object",
            "properties": {"platforms": {"type": "array", "items": {"enum": ["darwin", "win32", "linux"]}}},
        },
        "user_config": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["type", "title", "description"],
                "properties": {
                    "type": {"enum": ["string", "number", "boolean", "directory", "file"]},
                    "sensitive": {"type": "boolean"},
                    "required": {"type": "boolean"},
                },
            },
        },
    },
}

# The registry's server.json rules (schema 2025-09-29): name pattern, description length, exact versions.
REGISTRY_RULES = {
    "type": "object",
    "required": ["name", "description", "version"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$", "minLength": 3, "maxLength": 200},
        "description": {"type": "string", "minLength": 1, "maxLength": 100},
        "version": {"type": "string", "maxLength": 255, "pattern": SEMVER},
        "packages": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["registryType", "identifier", "version", "transport"],
                "properties": {
                    "registryType": {"enum": ["npm", "pypi", "oci", "nuget", "mcpb"]},
                    "registryBaseUrl": {"type": "string"},
                    "identifier": {"type": "string"},
                    "version": {"type": "string", "minLength": 1, "not": {"const": "latest"}, "pattern": SEMVER},
                    "runtimeHint": {"type": "string"},
                    "transport": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["stdio", "streamable-http", "sse"]}},
                    },
                    "environmentVariables": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "isRequired": {"type": "boolean"},
                                "isSecret": {"type": "boolean"},
                                "choices": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_manifest_follows_the_mcpb_rules() -> None:
    jsonschema.validate(MANIFEST, MANIFEST_RULES)
    assert MANIFEST["version"] == VERSION


def test_manifest_env_references_and_secrets() -> None:
    env = MANIFEST["server"]["mcp_config"]["env"]
    options = MANIFEST["user_config"]
    for name, value in env.items():
        assert name == "PYTHONPATH" or name in ENV_NAMES.values(), name
        for reference in re.findall(r"\$\{user_config\.([a-z_]+)\}", value):
            assert reference in options, reference
            assert options[reference].get("sensitive", False) is (name in KEY_VARIABLES), name
    referenced = set(re.findall(r"\$\{user_config\.([a-z_]+)\}", json.dumps(env)))
    assert referenced == set(options)  # no option the server never receives


def test_manifest_lists_the_real_tools_and_prompts() -> None:
    assert {tool["name"] for tool in MANIFEST["tools"]} == {tool.name for tool in build_tools()}
    assert [prompt["name"] for prompt in MANIFEST["prompts"]] == ["create_video"]
    assert MANIFEST["compatibility"]["runtimes"]["python"] == PYPROJECT["project"]["requires-python"]
    assert MANIFEST["server"]["mcp_config"]["args"] == ["-m", "server"]


@pytest.mark.anyio
async def test_manifest_prompt_arguments_match_the_server(settings) -> None:
    async with connect(settings) as client:
        prompts = (await client.list_prompts()).prompts
    assert {p.name: [a.name for a in p.arguments] for p in prompts} == {
        p["name"]: p["arguments"] for p in MANIFEST["prompts"]
    }


def test_registry_entry_follows_the_rules() -> None:
    jsonschema.validate(REGISTRY, REGISTRY_RULES)
    assert REGISTRY["version"] == VERSION
    (package,) = REGISTRY["packages"]
    assert package["identifier"] == PYPROJECT["project"]["name"] and package["version"] == VERSION
    for variable in package["environmentVariables"]:
        assert variable["name"] in ENV_NAMES.values()
        assert variable.get("isSecret", False) is (variable["name"] in KEY_VARIABLES)


def test_readme_carries_the_registry_ownership_line() -> None:
    # The registry verifies a PyPI package by this line in its README (the package's long description).
    assert f"mcp-name: {REGISTRY['name']}" in (ROOT / "README.md").read_text()
