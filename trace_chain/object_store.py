"""The object store behind cold data and artifacts, chosen by `TRACE_OBJECT_STORE_URL`: a local
directory (`file:///abs/dir`, the Lite default) or S3 / an S3-compatible endpoint (`s3://bucket/prefix`).

Keys are relative, `/`-separated paths under the store's root. Every write of one key is atomic
(a reader sees the old object or the new one, never a partial one); nothing here orders writes
across keys — the commit protocols that need an order (cold_layout's `_SUCCESS` last) do it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

OBJECT_STORE_URL_ENV = "TRACE_OBJECT_STORE_URL"
S3_ENDPOINT_ENVS = ("TRACE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
S3_ADDRESSING_STYLE_ENV = "TRACE_S3_ADDRESSING_STYLE"
# Temp files of in-flight local writes start with this; `list` never shows them.
_TEMP_PREFIX = ".trace-tmp-"


class ObjectStoreError(RuntimeError):
    """The object store is misconfigured or refused an operation."""


class ObjectNotFound(KeyError):
    """No object under this key."""


def validate_key(key: str, *, allow_empty: bool = False) -> str:
    """A key is a relative path of non-empty segments; `..`, `.`, backslashes and NUL are
    refused so a key can never leave the store's root on a local disk."""
    if not isinstance(key, str):
        raise ObjectStoreError(f"object key must be a string, got {type(key).__name__}")
    if key == "" and allow_empty:
        return key
    body = key[:-1] if allow_empty and key.endswith("/") else key
    segments = body.split("/")
    if (
        not body
        or key.startswith("/")
        or "\\" in key
        or "\0" in key
        or any(s in ("", ".", "..") for s in segments)
        or segments[-1].startswith(_TEMP_PREFIX)
    ):
        raise ObjectStoreError(f"invalid object key {key!r}")
    return key


class ObjectStore(ABC):
    """The minimal interface operators use; `uri(key)` is what gets recorded as a location."""

    url: str

    @abstractmethod
    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None: ...

    @abstractmethod
    def put_bytes(self, data: bytes, key: str) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; `ObjectNotFound` if there is none."""

    @abstractmethod
    def open_stream(self, key: str) -> BinaryIO:
        """A file object reading the object from its start (close it); `ObjectNotFound` if
        there is none. For objects too large to hold in memory (query exports)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix` (a plain string prefix, as in S3), sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with `prefix` (which must not be empty); returns how many."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """The absolute address of `key` (`file:///...` or `s3://bucket/...`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalObjectStore(ObjectStore):
    """A directory used as an object store. Writes go to a temp file in the target directory,
    are fsynced and renamed over the key, so readers and crashes never see half an object."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root_path = Path(root)
        if not root_path.is_absolute():
            raise ObjectStoreError(f"local object store root must be absolute, got {root}")
        self.root = root_path
        self.url = root_path.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        with open(local_path, "rb") as source:
            self._write(key, lambda out: shutil.copyfileobj(source, out, 1024 * 1024))

    def put_bytes(self, data: bytes, key: str) -> None:
        self._write(key, lambda out: out.write(data))

    def _write(self, key: str, fill: Any) -> None:
        path = self._path(key)
        for tries_left in range(3, -1, -1):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
                break
            except FileNotFoundError:  # a concurrent delete_prefix pruned the directory
                if not tries_left:
                    raise
        try:
            with os.fdopen(fd, "wb") as out:
                fill(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)  # mkstemp makes 0600; objects are read by other services
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        # The rename is durable only once the directory entry is.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def open_stream(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        validate_key(prefix, allow_empty=True)
        # Walk only the deepest directory the prefix names, then filter by the rest.
        directory, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if name.startswith(_TEMP_PREFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ObjectStoreError("refusing to delete the whole object store (empty prefix)")
        keys = self.list(prefix)
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()
        self._prune_empty_dirs(prefix)
        return len(keys)

    def _prune_empty_dirs(self, prefix: str) -> None:
        # Directories carry no objects; leaving empty ones behind would only clutter listings.
        directory = prefix.rpartition("/")[0]
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        if base.is_dir():
            for dirpath, _dirnames, _filenames in os.walk(base, topdown=False):
                if Path(dirpath) != base:
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
        while base != self.root:
            try:
                base.rmdir()
            except OSError:
                break
            base = base.parent

    def uri(self, key: str = "") -> str:
        if not key:
            return self.url.rstrip("/") + "/"
        trailing = "/" if key.endswith("/") else ""
        return self._path(key.rstrip("/") if trailing else key).as_uri() + trailing


class S3ObjectStore(ObjectStore):
    """A bucket (and optional key prefix) on S3 or an S3-compatible endpoint, through boto3.

    A single PUT is atomic in S3, which is all `put_*` promise; large files go through boto3's
    managed (multipart) upload, which also completes atomically."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        addressing_style: str | None = None,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ObjectStoreError("S3 object store needs a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.addressing_style = addressing_style
        self.url = f"s3://{bucket}/{self.prefix}"
        # Retries after a request's first try (botocore's max_attempts, standard mode); set
        # before the first request to fail fast instead (`trace smoke`).
        self.max_attempts = 5
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # A custom endpoint (MinIO, moto, an IP address) rarely resolves bucket subdomains.
            style = self.addressing_style or ("path" if self.endpoint_url else "auto")
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                config=Config(
                    s3={"addressing_style": style},
                    retries={"max_attempts": self.max_attempts, "mode": "standard"},
                ),
            )
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        self.client.upload_file(os.fspath(local_path), self.bucket, self._key(key))

    def put_bytes(self, data: bytes, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        return answer["Body"].read()

    def open_stream(self, key: str) -> BinaryIO:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        return answer["Body"]  # botocore's StreamingBody reads in chunks as it goes

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> list[str]:
        validate_key(prefix, allow_empty=True)
        paginator = self.client.get_paginator("list_objects_v2")
        keys = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise ObjectStoreError("refusing to delete the whole object store (empty prefix)")
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self.prefix + k} for k in keys[start : start + 1000]]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ObjectStoreError(
                    f"S3 refused to delete {len(answer['Errors'])} object(s) under "
                    f"{self.uri(prefix)}: {first.get('Key')}: {first.get('Message')}"
                )
        return len(keys)

    def uri(self, key: str = "") -> str:
        if not key:
            return self.url
        validate_key(key.rstrip("/") if key.endswith("/") else key)
        return f"s3://{self.bucket}/{self.prefix}{key}"


def trace_home(environ: Mapping[str, str] | None = None) -> Path:
    """`$TRACE_HOME`, else `.trace` in the repository: the same default the settings use."""
    env = os.environ if environ is None else environ
    raw = env.get("TRACE_HOME", "").strip()
    return Path(raw).resolve() if raw else Path(__file__).resolve().parent.parent / ".trace"


def default_object_store_url(environ: Mapping[str, str] | None = None) -> str:
    return (trace_home(environ) / "objects").as_uri()


def object_store_from_url(url: str, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """`file:///abs/dir` or `s3://bucket[/prefix]`. For S3 the endpoint comes from
    `TRACE_S3_ENDPOINT_URL` (else `AWS_ENDPOINT_URL`), credentials and region from the usual
    AWS variables / instance role, which boto3 reads itself."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ObjectStoreError(f"file object store URL must be file:///abs/dir, got {url!r}")
        return LocalObjectStore(unquote(parts.path))
    if parts.scheme == "s3":
        if parts.query or parts.fragment:
            raise ObjectStoreError(f"s3 object store URL takes no query or fragment: {url!r}")
        endpoint = next((env[n].strip() for n in S3_ENDPOINT_ENVS if env.get(n, "").strip()), None)
        region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
        style = env.get(S3_ADDRESSING_STYLE_ENV, "").strip() or None
        if style not in (None, "auto", "path", "virtual"):
            raise ObjectStoreError(f"{S3_ADDRESSING_STYLE_ENV} must be auto, path or virtual")
        return S3ObjectStore(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=endpoint,
            region_name=region or None,
            addressing_style=style,
        )
    raise ObjectStoreError(
        f"unsupported object store URL {url!r}: use file:///abs/dir or s3://bucket/prefix"
    )


def object_store_from_env(environ: Mapping[str, str] | None = None) -> ObjectStore:
    """The store named by `TRACE_OBJECT_STORE_URL`, default `$TRACE_HOME/objects`."""
    env = os.environ if environ is None else environ
    url = env.get(OBJECT_STORE_URL_ENV, "").strip() or default_object_store_url(env)
    return object_store_from_url(url, env)
