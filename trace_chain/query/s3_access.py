"""Credentials for the sandbox to read committed cold files on S3: the same chain the object
store uses (boto3's credentials and region: variables, shared config, the ECS task role; the
endpoint from TRACE_S3_ENDPOINT_URL or AWS_ENDPOINT_URL), resolved by trusted code before the
sandbox opens and handed to it as a DuckDB secret the user's SQL cannot read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from trace_chain.object_store import S3_ENDPOINT_ENVS
from trace_chain.query.errors import SandboxSetupFailed
from trace_chain.query.hardening import S3Access


def s3_access_from_env(environ: Mapping[str, str] | None = None) -> S3Access:
    """What the sandbox needs to read s3:// files; SandboxSetupFailed without credentials."""
    import boto3

    env = os.environ if environ is None else environ
    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise SandboxSetupFailed("cold files are on S3 and no AWS credentials are configured")
    frozen = credentials.get_frozen_credentials()
    endpoint = next((env[n].strip() for n in S3_ENDPOINT_ENVS if env.get(n, "").strip()), None)
    host, use_ssl = None, True
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        host, use_ssl = parts.netloc, parts.scheme != "http"
    style = env.get("TRACE_S3_ADDRESSING_STYLE", "").strip() or ("path" if host else "vhost")
    return S3Access(
        key_id=frozen.access_key,
        secret=frozen.secret_key,
        session_token=frozen.token,
        region=session.region_name or "us-east-1",
        endpoint=host,
        url_style="path" if host or style == "path" else "vhost",
        use_ssl=use_ssl,
    )
