"""Build the Claude Desktop bundle (MCPB manifest 0.4, server type "uv"): `bundle/` and `fal-queue-mcp-<version>.mcpb`.

    python scripts/build_bundle.py                # the committed HEAD
    python scripts/build_bundle.py --worktree     # the working tree: tracked and new files, never ignored ones
    python scripts/build_bundle.py --validate     # also `npx @anthropic-ai/mcpb validate` the manifest

The bundle holds the source only: manifest.json, icon.png, pyproject.toml, uv.lock, README.md, LICENSE and the
`server`/`tools` packages. The host runs `uv run --frozen --no-editable fal-queue-mcp` in the unpacked folder, which
installs the locked dependencies built for the user's own CPython and platform (macOS, Windows, Linux).

The source is taken from git (`git archive`, or `git ls-files` with --worktree), so build products, caches and
untracked files never get in; the .mcpb is a zip with sorted entries and fixed dates, so the same source gives the
same bytes. The build writes only `bundle/` and the .mcpb (both git-ignored), and can be run again at will.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENTS = ("manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "LICENSE", "server", "tools")
NEVER_SUFFIXES = {".pyc", ".pyo", ".so", ".pyd", ".mcpb"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest: no build time in the bytes
MCPB_CLI = os.environ.get("MCPB_CLI", "npx -y @anthropic-ai/mcpb@2.1.2")


class BuildError(Exception):
    pass


def git(*args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
    if done.returncode != 0:
        raise BuildError(f"git {' '.join(args)}: {done.stderr.decode().strip()}")
    return done.stdout


def export(stage: Path, ref: str | None) -> str:
    """Copy the bundle's files into `stage`, from git revision `ref`, or from the working tree when None."""
    if ref is None:
        listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *CONTENTS)
        for name in sorted(set(listed.decode().split("\0")) - {""}):
            if (ROOT / name).is_file():  # a tracked file deleted in the working tree is left out
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / name, stage / name)
        return "the working tree"
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit, "--", *CONTENTS))) as tar:
        tar.extractall(stage, filter="data")
    return f"{ref} ({commit[:12]})"


def check(stage: Path) -> dict[str, object]:
    """The staged bundle is complete and consistent; returns its manifest."""
    missing = [name for name in CONTENTS if not (stage / name).exists()]
    if missing:
        raise BuildError(f"not in the source: {', '.join(missing)} (new files must be committed, or use --worktree)")
    manifest: dict[str, object] = json.loads((stage / "manifest.json").read_text())
    project = tomllib.loads((stage / "pyproject.toml").read_text())["project"]
    if manifest["version"] != project["version"]:
        raise BuildError(f"manifest.json version {manifest['version']} != pyproject.toml version {project['version']}")
    server = manifest["server"]
    assert isinstance(server, dict)
    if not (stage / server["entry_point"]).is_file():
        raise BuildError(f"the manifest's entry_point {server['entry_point']} is not in the bundle")
    _check_lock(stage)
    return manifest


def _check_lock(stage: Path) -> None:
    """`--frozen` installs uv.lock as it is: it must match pyproject.toml (checked offline, in a second)."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        print("warning: uv not found (pip install uv): uv.lock was not checked against pyproject.toml", file=sys.stderr)
        return
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    command = [uv, "lock", "--check", "--offline", "--quiet", "--directory", str(stage), "--python", sys.executable]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BuildError(f"uv.lock does not match pyproject.toml: run `uv lock` and commit it\n{done.stderr.strip()}")


def write_zip(stage: Path, target: Path) -> int:
    """A deterministic zip of `stage`: sorted names, fixed dates and modes."""
    files = sorted(path for path in stage.rglob("*") if path.is_file())
    unwanted = [str(path.relative_to(stage)) for path in files if _build_product(path.relative_to(stage))]
    if unwanted:
        raise BuildError(f"build products in the source: {', '.join(unwanted)}")
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    partial.replace(target)
    return len(files)


def _build_product(name: Path) -> bool:
    folders = name.parts[:-1]
    return name.suffix in NEVER_SUFFIXES or any(part == "__pycache__" or part.endswith(".egg-info") for part in folders)


def validate(stage: Path) -> None:
    done = subprocess.run([*shlex.split(MCPB_CLI), "validate", str(stage / "manifest.json")], text=True)
    if done.returncode != 0:
        raise BuildError("mcpb validate refused the manifest (see above)")


def build(out_dir: Path, ref: str | None, *, run_validate: bool = False) -> Path:
    stage = out_dir / "bundle"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    source = export(stage, ref)
    manifest = check(stage)
    if run_validate:
        validate(stage)
    target = out_dir / f"{manifest['name']}-{manifest['version']}.mcpb"
    count = write_zip(stage, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"{target}: {count} files from {source}, {target.stat().st_size} bytes, sha256 {digest}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="HEAD", help="git revision to bundle (default: HEAD)")
    parser.add_argument("--worktree", action="store_true", help="bundle the working tree instead of a revision")
    parser.add_argument("--out-dir", type=Path, default=ROOT, help="where bundle/ and the .mcpb go (default: here)")
    parser.add_argument("--validate", action="store_true", help=f"also run `{MCPB_CLI} validate`")
    args = parser.parse_args(argv)
    try:
        build(args.out_dir.resolve(), None if args.worktree else args.ref, run_validate=args.validate)
    except BuildError as exc:
        print(f"build_bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
