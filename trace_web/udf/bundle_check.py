"""A bundle zip checked whole, before anything of it is stored or run: the archive's shape
(size, file count, per-file size, paths, symlinks, duplicates, zip-bomb ratio), its
`manifest.json` (typed, strict), every file against the manifest's size and sha256, and an
optional Ed25519 signature over the canonical manifest. No models: the same check runs at
upload and again, over the stored bytes, before every run."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from trace_operators.validation import Problems, StrictModel, validate

MANIFEST_NAME = "manifest.json"
MANIFEST_MAX_BYTES = 256 * 1024
# A file this small cannot be a bomb whatever its ratio (a run of spaces compresses 1000:1).
RATIO_FLOOR_BYTES = 64 * 1024
ENTRY_SUFFIXES = {"python": (".py",), "node": (".mjs", ".js")}

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,99}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")]
Entrypoint = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
FilePath = Annotated[str, StringConstraints(min_length=1, max_length=255)]
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,99}$")


class BundleInvalid(Problems):
    """The bundle is refused; `errors` are `field: message` lines (`manifest.files[2].sha256:
    ...`, `zip: ...`)."""


@dataclass(frozen=True)
class BundleLimits:
    max_bytes: int
    max_files: int
    max_file_bytes: int
    max_total_bytes: int
    max_ratio: float


class ManifestFile(StrictModel):
    path: FilePath
    size: Annotated[int, Field(ge=0, le=2**53)]
    sha256: Sha256


class Manifest(StrictModel):
    name: Name
    version: Version
    runtime: Literal["python", "node"]
    entrypoint: Entrypoint = "main"
    files: Annotated[list[ManifestFile], Field(min_length=1, max_length=10_000)]
    signature: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


@dataclass(frozen=True)
class CheckedBundle:
    sha256: str  # of the zip bytes: the bundle's id
    manifest: Manifest
    raw_manifest: dict[str, Any]
    files: dict[str, bytes]  # path -> content, every one matching the manifest

    @property
    def signed(self) -> bool:
        return self.manifest.signature is not None

    def extract(self, dest: Path) -> None:
        """Write the checked files under `dest` (paths were checked: no escape is possible),
        read-only."""
        for path, content in self.files.items():
            target = dest.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o444)


def canonical_manifest(raw: dict[str, Any]) -> bytes:
    """The bytes a manifest signature covers: the manifest without `signature`, as JSON with
    sorted keys and no whitespace, UTF-8."""
    unsigned = {k: v for k, v in raw.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def path_problem(name: str) -> str | None:
    """Why a zip member name may not be a bundle path, or None."""
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        return "absolute paths are not allowed"
    if "\\" in name:
        return "backslashes are not allowed"
    segments = name.split("/")
    if any(s == ".." for s in segments):
        return "'..' is not allowed"
    for segment in segments:
        if not SEGMENT_RE.match(segment):
            return f"segment {segment!r} is not allowed (letters, digits, _ . @ + -)"
    return None


def bundle_check(data: bytes, *, limits: BundleLimits) -> CheckedBundle:
    """The bundle in `data`, every check passed, or BundleInvalid naming each problem."""
    if len(data) > limits.max_bytes:
        _refuse("zip", f"{len(data)} bytes, over the limit of {limits.max_bytes}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        _refuse("zip", f"not a readable zip archive ({exc})")
    members = _members(infos, limits)
    raw_manifest = _manifest_raw(archive, members)
    manifest = validate(
        Manifest, raw_manifest, rules=_manifest_rules, prefix="manifest", error=BundleInvalid
    )
    files = _files(archive, members, manifest)
    return CheckedBundle(
        sha256=hashlib.sha256(data).hexdigest(),
        manifest=manifest,
        raw_manifest=raw_manifest,
        files=files,
    )


def signature_verify(bundle: CheckedBundle, public_keys: list[str]) -> bool:
    """Whether the manifest's signature is valid under one of `public_keys` (raw Ed25519
    keys, base64)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if bundle.manifest.signature is None:
        return False
    try:
        signature = base64.b64decode(bundle.manifest.signature, validate=True)
    except ValueError:
        return False
    message = canonical_manifest(bundle.raw_manifest)
    for encoded in public_keys:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded)).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def public_key_problem(encoded: str) -> str | None:
    """Why `encoded` is not a raw Ed25519 public key in base64, or None."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(encoded, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return "must be a raw Ed25519 public key (32 bytes), base64"
    return None


def _refuse(path: str, message: str):
    raise BundleInvalid([(path, message)])


def _members(infos: list[zipfile.ZipInfo], limits: BundleLimits) -> dict[str, zipfile.ZipInfo]:
    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.max_files + 1:  # the manifest does not count
        _refuse("zip", f"{len(files) - 1} files, over the limit of {limits.max_files}")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if problem := path_problem(name.rstrip("/") if info.is_dir() else name):
            _refuse(f"zip[{name!r}]", problem)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            _refuse(f"zip[{name!r}]", "symlinks are not allowed")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            _refuse(f"zip[{name!r}]", "encrypted members are not allowed")
        if name in members:
            _refuse(f"zip[{name!r}]", "duplicate name")
        if info.file_size > limits.max_file_bytes:
            _refuse(
                f"zip[{name!r}]",
                f"{info.file_size} bytes, over the per-file limit of {limits.max_file_bytes}",
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            _refuse(
                f"zip[{name!r}]",
                f"compression ratio over {limits.max_ratio:g} (a zip bomb is refused)",
            )
        total += info.file_size
        members[name] = info
    if total > limits.max_total_bytes:
        _refuse("zip", f"{total} bytes extracted, over the limit of {limits.max_total_bytes}")
    return members


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with archive.open(info) as stream:
            content = stream.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError) as exc:
        _refuse(f"zip[{info.filename!r}]", f"unreadable ({exc})")
    if len(content) != info.file_size:
        _refuse(f"zip[{info.filename!r}]", "its size does not match the archive's directory")
    return content


def _manifest_raw(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> Any:
    from trace_web.parsers import json_loads_strict

    info = members.get(MANIFEST_NAME)
    if info is None:
        _refuse("manifest", f"no {MANIFEST_NAME} at the root of the zip")
    if info.file_size > MANIFEST_MAX_BYTES:
        _refuse("manifest", f"over {MANIFEST_MAX_BYTES} bytes")
    try:
        raw = json_loads_strict(_read(archive, info).decode("utf-8"))
    except ValueError as exc:
        _refuse("manifest", f"not valid JSON ({exc})")
    if not isinstance(raw, dict):
        _refuse("manifest", "must be a JSON object")
    return raw


def _manifest_rules(raw: dict[str, Any]):
    files = raw.get("files")
    if not isinstance(files, list):
        return
    seen: set[str] = set()
    for index, entry in enumerate(files):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str):
            continue
        if path == MANIFEST_NAME:
            yield f"files[{index}].path", f"{MANIFEST_NAME} is not listed in itself"
        elif problem := path_problem(path):
            yield f"files[{index}].path", problem
        if path in seen:
            yield f"files[{index}].path", f"{path!r} is listed twice"
        seen.add(path)
    runtime, entrypoint = raw.get("runtime"), raw.get("entrypoint", "main")
    suffixes = ENTRY_SUFFIXES.get(runtime) if isinstance(runtime, str) else None
    if (
        suffixes
        and isinstance(entrypoint, str)
        and not any(f"{entrypoint}{suffix}" in seen for suffix in suffixes)
    ):
        names = " or ".join(f"{entrypoint}{s}" for s in suffixes)
        yield "entrypoint", f"no file {names} in files for runtime {runtime!r}"


def _files(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], manifest: Manifest
) -> dict[str, bytes]:
    listed = {entry.path for entry in manifest.files}
    for name in members:
        if name != MANIFEST_NAME and name not in listed:
            _refuse(f"zip[{name!r}]", "not listed in manifest.files")
    files: dict[str, bytes] = {}
    for index, entry in enumerate(manifest.files):
        info = members.get(entry.path)
        if info is None:
            _refuse(f"manifest.files[{index}].path", f"{entry.path!r} is not in the zip")
        content = _read(archive, info)
        if len(content) != entry.size:
            _refuse(
                f"manifest.files[{index}].size",
                f"{entry.path!r} is {len(content)} bytes, the manifest says {entry.size}",
            )
        if hashlib.sha256(content).hexdigest() != entry.sha256:
            _refuse(f"manifest.files[{index}].sha256", f"{entry.path!r} does not match its hash")
        files[entry.path] = content
    return files
