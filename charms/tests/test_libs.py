# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The charm libraries: copies identical to their source, vendored versions as recorded.

Sources are under charms/orchestra/lib/charms/; charms/sync-libs copies them into the other
charms. Vendored third-party libraries are recorded (LIBAPI, LIBPATCH, source commit) in the
table of charms/README.md. Run: `python -m pytest charms/tests`.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

CHARMS = Path(__file__).resolve().parents[1]
SOURCE = CHARMS / "orchestra" / "lib" / "charms"
OURS = "oscied_orchestra"  # our own libs; every other package under lib/charms is vendored
# Where each library must be copied (sync-libs holds the same list).
EXPECTED_COPIES = {
    "oscied_orchestra": ("transform", "publisher"),
    "filesystem_client": ("transform", "publisher", "storage"),
}


def lib_files(top: Path) -> list[Path]:
    return sorted(p.relative_to(top) for p in top.rglob("*.py") if "__pycache__" not in p.parts)


def source_files() -> list[Path]:
    files = lib_files(SOURCE)
    assert files, f"no libraries under {SOURCE}"
    return files


def copies() -> list[Path]:
    """Every lib file under charms/*/lib/charms other than the orchestra's."""
    found = []
    for lib in sorted(CHARMS.glob("*/lib/charms")):
        if lib != SOURCE:
            found += [lib / rel for rel in lib_files(lib)]
    return found


def version(path: Path, name: str) -> int:
    match = re.search(rf"^{name} = (\d+)$", path.read_text(), re.M)
    assert match, f"{path}: no {name}"
    return int(match.group(1))


def recorded_vendored() -> dict[str, dict[str, str]]:
    """Read the README's vendored-library table: `charms.x.vN.y` -> its row by column."""
    readme = (CHARMS / "README.md").read_text()
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and "LIBPATCH" in cells:
            header = [c.lower() for c in cells]
            continue
        if not line.startswith("|"):
            header = []  # the table ended
        elif header and (m := re.match(r"`(charms\.[\w.]+)`", cells[0])):
            rows[m.group(1)] = dict(zip(header, cells))
    return rows


def module_name(rel: Path) -> str:
    return "charms." + ".".join(rel.with_suffix("").parts)


@pytest.mark.parametrize("rel", source_files(), ids=str)
def test_every_source_is_copied_where_it_is_needed(rel):
    for charm in EXPECTED_COPIES.get(rel.parts[0], ()):
        copy = CHARMS / charm / "lib" / "charms" / rel
        assert copy.is_file(), f"{copy.relative_to(CHARMS)} is missing: run charms/sync-libs"


@pytest.mark.parametrize("copy", copies(), ids=lambda p: str(p.relative_to(CHARMS)))
def test_every_copy_is_byte_identical_to_its_source(copy):
    charm = copy.relative_to(CHARMS).parts[0]
    source = SOURCE / copy.relative_to(CHARMS / charm / "lib" / "charms")
    if not source.exists():
        pytest.fail(f"{copy.relative_to(CHARMS)} has no source under charms/orchestra/lib")
    assert copy.read_bytes() == source.read_bytes(), f"{copy} differs: run charms/sync-libs"


def test_sync_libs_check_agrees():
    result = subprocess.run(
        [sys.executable, str(CHARMS / "sync-libs"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rel", [r for r in source_files() if r.parts[0] == OURS], ids=str)
def test_our_libs_carry_charmhub_headers(rel):
    path = SOURCE / rel
    text = path.read_text()
    assert re.search(r'^LIBID = "[0-9a-f]{32}"$', text, re.M), f"{rel}: LIBID"
    assert version(path, "LIBAPI") == int(rel.parts[1].lstrip("v"))
    assert version(path, "LIBPATCH") >= 1
    assert re.match(r'(#.*\n)*\s*"""', text), f"{rel}: module docstring"


@pytest.mark.parametrize("rel", [r for r in source_files() if r.parts[0] != OURS], ids=str)
def test_vendored_libs_match_the_readme(rel):
    path = SOURCE / rel
    name = module_name(rel)
    rows = recorded_vendored()
    assert name in rows, f"charms/README.md does not record {name}"
    row = rows[name]
    assert int(row["libapi"]) == version(path, "LIBAPI") == int(rel.parts[1].lstrip("v"))
    assert int(row["libpatch"]) == version(path, "LIBPATCH"), f"{name}: README says {row}"
    assert re.search(r"\b[0-9a-f]{7,40}\b", row.get("source", "")), f"{name}: no source commit"
    assert "Licensed under the Apache License" in path.read_text()[:2000], f"{name}: licence"


def test_every_recorded_vendored_lib_is_there():
    vendored = {module_name(r) for r in source_files() if r.parts[0] != OURS}
    assert set(recorded_vendored()) <= vendored, "charms/README.md records a lib not vendored"


def test_storage_charm_uses_the_service_uid():
    service = (SOURCE / OURS / "v0" / "service.py").read_text()
    nfs = (CHARMS / "storage" / "src" / "nfs.py").read_text()
    for name in ("SERVICE_UID", "SERVICE_GID"):
        ours = re.search(rf"^{name} = (\d+)$", service, re.M)
        theirs = re.search(rf"^{name} = (\d+)$", nfs, re.M)
        assert ours and theirs and ours.group(1) == theirs.group(1), name
