"""The local dev chain: anvil (npm `@foundry-rs/anvil`) started on a free loopback port, plus
helpers that deploy a log-emitting contract, generate traffic and trigger reorgs through RPC.

Used by the Lite stack and by tests; plain Python, no Django.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from trace_chain.rpc import RpcPool

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO_ROOT / "node_modules"
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
EMITTER_SOURCE = CONTRACTS_DIR / "TraceEmitter.sol"
EMITTER_ARTIFACT = CONTRACTS_DIR / "TraceEmitter.json"
# Internal-call traffic for the `traces` dataset (trace_chain/devchain_calls.py).
CALLER_SOURCE = CONTRACTS_DIR / "TraceCaller.sol"
CALLER_ARTIFACT = CONTRACTS_DIR / "TraceCaller.json"
ANVIL_CHAIN_ID = 31337
LOOPBACK = "127.0.0.1"
ANVIL_PATH_ENV = "TRACE_ANVIL_PATH"

# npm installs exactly one of these optional packages, matching the machine.
_PLATFORM_PACKAGES = {
    ("linux", "x86_64"): "anvil-linux-amd64",
    ("linux", "amd64"): "anvil-linux-amd64",
    ("linux", "aarch64"): "anvil-linux-arm64",
    ("linux", "arm64"): "anvil-linux-arm64",
    ("darwin", "x86_64"): "anvil-darwin-amd64",
    ("darwin", "arm64"): "anvil-darwin-arm64",
}

TRANSFER_GAS = 21_000
CALL_GAS = 300_000
DEPLOY_GAS = 1_000_000


class AnvilNotInstalled(FileNotFoundError):
    """The anvil binary is not where npm puts it."""


class AnvilError(RuntimeError):
    """anvil did not start, or a dev-chain operation failed."""


# --- finding and running anvil ----------------------------------------------------------------


def anvil_path() -> Path:
    """The anvil binary: `$TRACE_ANVIL_PATH` if set, else the one `npm ci` installed for this
    platform (the platform package, or where the package's postinstall downloads it when the
    platform package could not be installed)."""
    override = os.environ.get(ANVIL_PATH_ENV, "").strip()
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise AnvilNotInstalled(f"{ANVIL_PATH_ENV}={override} is not an executable file")
    system = sys.platform
    machine = platform.machine().lower()
    candidates = []
    package = _PLATFORM_PACKAGES.get((system, machine))
    if package:
        candidates.append(NODE_MODULES / "@foundry-rs" / package / "bin" / "anvil")
    candidates.append(NODE_MODULES / "@foundry-rs" / "anvil" / "anvil")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise AnvilNotInstalled(
        f"anvil is not installed (looked for {looked}); run `npm ci` in {REPO_ROOT} "
        f"(Node.js 20+), or set {ANVIL_PATH_ENV} to an anvil binary"
    )


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# Resolved in the parent: the child runs between fork and exec, where loading a library
# (what `ctypes.CDLL` does) could deadlock if another thread held the loader lock at fork time.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # If the Python process dies without cleaning up, anvil gets SIGTERM instead of lingering.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Anvil:
    """An anvil node on a free 127.0.0.1 port, as a context manager.

    `block_time` (seconds, fractions allowed: anvil accepts e.g. 0.2) turns on interval mining;
    without it every transaction is mined at once (automine), or not at all with
    `no_mining=True` (then mine with `mine()`). `die_with_parent` ties anvil's life to the
    thread that started it (Linux `PR_SET_PDEATHSIG`): start it from a long-lived thread."""

    def __init__(
        self,
        *,
        block_time: float | None = None,
        no_mining: bool = False,
        chain_id: int = ANVIL_CHAIN_ID,
        accounts: int = 10,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        if block_time is not None and block_time <= 0:
            raise ValueError(f"block_time must be positive, got {block_time}")
        if block_time is not None and no_mining:
            raise ValueError("block_time and no_mining exclude each other")
        self.block_time = block_time
        self.no_mining = no_mining
        self.chain_id = chain_id
        self.accounts = accounts
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_dir: str | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise AnvilError("anvil is not running")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return Path(self._log_dir) / "anvil.log" if self._log_dir else None

    def argv(self, port: int, binary: Path | None = None) -> list[str]:
        argv = [
            str(binary or anvil_path()),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--chain-id",
            str(self.chain_id),
            "--accounts",
            str(self.accounts),
        ]
        if self.block_time is not None:
            argv += ["--block-time", f"{self.block_time:g}"]
        if self.no_mining:
            argv.append("--no-mining")
        return argv + self.extra_args

    def start(self) -> Anvil:
        if self.proc is not None:
            raise AnvilError("anvil already started")
        binary = anvil_path()  # fails with the `npm ci` hint before anything is created
        self._log_dir = tempfile.mkdtemp(prefix="trace-anvil-")
        last_error = ""
        # The free port can be taken between our probe and anvil's bind; try a few.
        for _ in range(5):
            port = free_port()
            with open(self.log_path, "wb") as log_file:  # type: ignore[arg-type]
                self.proc = subprocess.Popen(
                    self.argv(port, binary),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                )
            self.port = port
            try:
                self._wait_ready()
                return self
            except AnvilError as exc:
                last_error = str(exc)
                self._terminate()
                if "in use" not in last_error.lower():
                    break
        self.stop()  # removes the log directory; its tail is in the message
        raise AnvilError(last_error)

    def _wait_ready(self) -> None:
        # Plain requests, not an RpcPool: "connection refused" is expected here, not a warning.
        deadline = time.monotonic() + self.startup_timeout
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AnvilError(
                        f"anvil exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    answer = session.post(self.url, json=payload, timeout=1.0).json()
                    chain_id = int(answer["result"], 16)
                except (requests.RequestException, ValueError, KeyError, TypeError):
                    time.sleep(0.05)
                    continue
                if chain_id != self.chain_id:
                    raise AnvilError(f"anvil answered chain id {chain_id}, not {self.chain_id}")
                return
        raise AnvilError(f"anvil not ready after {self.startup_timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-chars:]

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._terminate()
        self.port = None
        if self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- RPC helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _rpc(url: str) -> Iterator[RpcPool]:
    # Dev operations are not idempotent (sending transactions): never retry them.
    with RpcPool("devchain", [url], timeout=30.0, max_retries=0) as pool:
        yield pool


def _hex(value: int) -> str:
    return hex(value)


def dev_accounts(url: str) -> list[str]:
    with _rpc(url) as rpc:
        return [a.lower() for a in rpc.call("eth_accounts")]


def send_transfers(url: str, count: int) -> list[str]:
    """Send `count` small ETH transfers, one per dev account (so anvil never gives two of them
    the same nonce), to be mined by whatever mining mode the node runs; returns their hashes."""
    with _rpc(url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        if count > len(accounts) - 1:
            raise AnvilError(f"{count} transfers need {count + 1} dev accounts")
        return [
            rpc.call(
                "eth_sendTransaction",
                [{"from": sender, "to": accounts[0], "value": _hex(1), "gas": _hex(TRANSFER_GAS)}],
            ).lower()
            for sender in accounts[1 : count + 1]
        ]


def mine(url: str, blocks: int = 1) -> int:
    """Mine `blocks` blocks now, whatever the mining mode; returns the new head number."""
    with _rpc(url) as rpc:
        for _ in range(blocks):
            rpc.call("evm_mine")
        return int(rpc.call("eth_blockNumber"), 16)


def reorg(url: str, depth: int, tx_block_pairs: Sequence[tuple[Any, int]] = ()) -> None:
    """Replace the last `depth` blocks with new ones at the same heights (new hashes).

    anvil's `anvil_reorg` takes `[depth, [[tx, block_offset], ...]]`: each tx (a transaction
    request object or raw signed bytes as hex) is mined into the block `block_offset` after the
    common ancestor, `0 <= block_offset < depth`. Without pairs the new blocks are empty;
    transactions of the replaced blocks are dropped, not replayed (anvil 1.7.1 does not put
    them back in its pool either)."""
    if depth < 1:
        raise ValueError(f"reorg depth must be >= 1, got {depth}")
    for _, offset in tx_block_pairs:
        if not 0 <= offset < depth:
            raise ValueError(f"block offset {offset} is outside 0..{depth - 1}")
    with _rpc(url) as rpc:
        rpc.call("anvil_reorg", [depth, [[tx, offset] for tx, offset in tx_block_pairs]])


# --- the emitter contract ---------------------------------------------------------------------


def emitter_artifact() -> dict[str, Any]:
    """The committed compiler output for TraceEmitter.sol (bytecode, selectors, event topics)."""
    return json.loads(EMITTER_ARTIFACT.read_text())


_COMPILE_JS = r"""
const solc = require('solc');
const { keccak256 } = require('js-sha3');
const source = require('fs').readFileSync(0, 'utf8');
const [fileName, contractName] = process.argv.slice(1);
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  // No CBOR metadata tail: the bytecode then depends on the code, not on file names/comments.
  metadata: { appendCBOR: false },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.methodIdentifiers'] } },
};
const sources = { [fileName]: { content: source } };
const input = { language: 'Solidity', sources, settings };
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join('\n'));
  process.exit(1);
}
const c = out.contracts[fileName][contractName];
const selectors = {};
for (const [sig, id] of Object.entries(c.evm.methodIdentifiers)) selectors[sig] = '0x' + id;
const events = {};
for (const item of c.abi.filter((x) => x.type === 'event')) {
  const signature = `${item.name}(${item.inputs.map((i) => i.type).join(',')})`;
  events[item.name] = {
    signature,
    anonymous: !!item.anonymous,
    topic0: item.anonymous ? null : '0x' + keccak256(signature),
    indexed: item.inputs.filter((i) => i.indexed).length,
  };
}
console.log(JSON.stringify({
  contract: contractName, compiler: 'solc-js ' + solc.version(), settings,
  bytecode: '0x' + c.evm.bytecode.object, selectors, events, abi: c.abi,
}, null, 2));
"""


def compile_emitter() -> dict[str, Any]:
    """Compile TraceEmitter.sol with the solc-js from node_modules (needs `npm ci` and node).

    Used to produce the committed artifact and by the test that proves the two match."""
    return compile_contract(EMITTER_SOURCE, "TraceEmitter")


def compile_contract(source: Path, contract: str) -> dict[str, Any]:
    """Compile `contract` of the Solidity file `source` with the solc-js from node_modules
    (needs `npm ci` and node): the artifact committed beside the source."""
    node = shutil.which("node")
    if node is None:
        raise AnvilError(f"node is not on PATH; install Node.js 20+ to compile {contract}")
    if not (NODE_MODULES / "solc").is_dir():
        raise AnvilNotInstalled(f"solc-js is not installed; run `npm ci` in {REPO_ROOT}")
    done = subprocess.run(
        [node, "-e", _COMPILE_JS, source.name, contract],
        input=source.read_bytes(),
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AnvilError(f"solc-js failed:\n{done.stderr.decode(errors='replace')[-4000:]}")
    return json.loads(done.stdout)


def _encode_uint(value: int) -> str:
    return f"{value:064x}"


def emitter_calldata(function: str, *args: int | bytes) -> str:
    """ABI-encode a call to one of the emitter's functions (static arguments only)."""
    selectors = emitter_artifact()["selectors"]
    signature = next((s for s in selectors if s.split("(")[0] == function), None)
    if signature is None:
        raise ValueError(f"TraceEmitter has no function {function!r}")
    encoded = ""
    for arg in args:
        if isinstance(arg, bytes):
            if len(arg) > 32:
                raise ValueError("bytes32 argument longer than 32 bytes")
            encoded += arg.ljust(32, b"\0").hex()
        else:
            encoded += _encode_uint(arg)
    return selectors[signature] + encoded


RECEIPT_BATCH = 500  # anvil refuses very large JSON-RPC batches


def wait_receipts(rpc: RpcPool, tx_hashes: Sequence[str], timeout: float = 30.0) -> list[dict]:
    """Receipts for `tx_hashes`, mining a block if some are still pending (automine off)."""
    deadline = time.monotonic() + timeout
    mined_once = False
    while True:
        receipts = [
            receipt
            for i in range(0, len(tx_hashes), RECEIPT_BATCH)
            for receipt in rpc.batch(
                [("eth_getTransactionReceipt", [h]) for h in tx_hashes[i : i + RECEIPT_BATCH]]
            )
        ]
        if all(r is not None for r in receipts):
            return receipts
        if time.monotonic() > deadline:
            missing = sum(r is None for r in receipts)
            raise AnvilError(f"{missing} transaction(s) still pending after {timeout}s")
        if not mined_once:
            rpc.call("evm_mine")
            mined_once = True
        else:
            time.sleep(0.05)


def deploy_emitter(url: str, *, sender: str | None = None) -> str:
    """Deploy TraceEmitter from an unlocked dev account; returns its lowercase address."""
    with _rpc(url) as rpc:
        sender = sender or rpc.call("eth_accounts")[0]
        tx_hash = rpc.call(
            "eth_sendTransaction",
            [
                {
                    "from": sender,
                    "data": emitter_artifact()["bytecode"],
                    "gas": _hex(DEPLOY_GAS),
                }
            ],
        )
        (receipt,) = wait_receipts(rpc, [tx_hash])
        if int(receipt["status"], 16) != 1 or not receipt.get("contractAddress"):
            raise AnvilError(f"emitter deployment failed: {receipt}")
        address = receipt["contractAddress"].lower()
        if rpc.call("eth_getCode", [address, "latest"]) in ("0x", None):
            raise AnvilError(f"no code at {address} after deployment")
        return address


# --- traffic ----------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What `generate_traffic` sent: the emitter used and every transaction, by kind."""

    emitter: str
    block_numbers: list[int] = field(default_factory=list)
    tx_hashes: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # tx hash -> kind

    @property
    def first_block(self) -> int:
        return min(self.block_numbers)

    @property
    def last_block(self) -> int:
        return max(self.block_numbers)


# One transaction of each shape an indexer must store, cycled through per transaction:
# a legacy and a 1559 transfer (values above 2**63 wei), a payable call with one log, a burst of
# logs with 1 to 4 topics plus an anonymous one, and a call that reverts (status 0, no logs).
TRAFFIC_KINDS = ("transfer_1559", "ping", "burst", "transfer_legacy", "ping", "burst", "fail")
LEGACY_GAS_PRICE = 50 * 10**9  # above any base fee busy dev blocks reach
LARGE_VALUE_WEI = 10 * 10**18 + 12345  # 10 ETH and change: > 2**63, catches int64 truncation


def _traffic_tx(kind: str, sender: str, receiver: str, emitter: str, n: int) -> dict[str, Any]:
    if kind == "transfer_1559":
        return {"from": sender, "to": receiver, "value": _hex(LARGE_VALUE_WEI + n), "gas": "0x5208"}
    if kind == "transfer_legacy":
        return {
            "from": sender,
            "to": receiver,
            "value": _hex(n + 1),
            "gas": _hex(TRANSFER_GAS),
            "gasPrice": _hex(LEGACY_GAS_PRICE),
        }
    if kind == "ping":
        tag = f"trace-{n}".encode()
        data = emitter_calldata("ping", tag)
        return {
            "from": sender,
            "to": emitter,
            "data": data,
            "value": _hex(n),
            "gas": _hex(CALL_GAS),
        }
    if kind == "burst":
        data = emitter_calldata("burst", 1 + n % 3)
        return {"from": sender, "to": emitter, "data": data, "gas": _hex(CALL_GAS)}
    if kind == "fail":
        # Explicit gas: without it anvil would estimate, hit the revert and refuse to send.
        return {
            "from": sender,
            "to": emitter,
            "data": emitter_calldata("fail"),
            "gas": _hex(CALL_GAS),
        }
    raise ValueError(f"unknown traffic kind {kind!r}")


def generate_traffic(
    url: str, *, blocks: int, txs_per_block: int, emitter: str | None = None
) -> Traffic:
    """Mine `blocks` blocks holding `txs_per_block` transactions each, sent from anvil's
    unlocked dev accounts with `eth_sendTransaction`: ETH transfers and emitter calls (so the
    blocks have logs). Automine is paused while a block's transactions are sent and restored
    after; each block is then mined with `evm_mine`. Under interval mining the interval miner
    may take some transactions first: every transaction is still mined, just not necessarily
    `txs_per_block` to a block."""
    if blocks < 1 or txs_per_block < 0:
        raise ValueError("need blocks >= 1 and txs_per_block >= 0")
    emitter = emitter or deploy_emitter(url)
    traffic = Traffic(emitter=emitter.lower())
    with _rpc(url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        if len(accounts) < 2:
            raise AnvilError("anvil needs at least two dev accounts")
        if txs_per_block > len(accounts) - 1:
            raise AnvilError(
                f"{txs_per_block} transactions per block need {txs_per_block + 1} dev accounts "
                f"(start Anvil(accounts=...)); this node has {len(accounts)}"
            )
        automine = bool(rpc.call("anvil_getAutomine"))
        if automine:
            rpc.call("evm_setAutomine", [False])
        try:
            n = int(rpc.call("eth_blockNumber"), 16) * 1000  # varies values between runs
            sent: list[str] = []
            mined: set[int] = set()
            for _ in range(blocks):
                block_txs = []
                for i in range(txs_per_block):
                    kind = TRAFFIC_KINDS[n % len(TRAFFIC_KINDS)]
                    # One transaction per sender per block: with automine off anvil gives a
                    # sender's second pending transaction the nonce of its first, and one of
                    # the two is silently dropped.
                    sender = accounts[1 + i]
                    receiver = accounts[(n + 3) % len(accounts)]
                    tx = _traffic_tx(kind, sender, receiver, traffic.emitter, n + i)
                    tx_hash = rpc.call("eth_sendTransaction", [tx]).lower()
                    traffic.kinds[tx_hash] = kind
                    block_txs.append(tx_hash)
                    n += 1
                rpc.call("evm_mine")
                mined.add(int(rpc.call("eth_blockNumber"), 16))
                sent += block_txs
            receipts = wait_receipts(rpc, sent) if sent else []
        finally:
            if automine:
                rpc.call("evm_setAutomine", [True])
    traffic.tx_hashes = sent
    traffic.block_numbers = sorted(mined | {int(r["blockNumber"], 16) for r in receipts})
    for receipt in receipts:
        kind = traffic.kinds[receipt["transactionHash"].lower()]
        if (int(receipt["status"], 16) == 1) == (kind == "fail"):
            raise AnvilError(f"{kind} transaction {receipt['transactionHash']} has wrong status")
    return traffic


def traffic_forever(url: str, *, every: float = 1.0, per_round: int = 3) -> None:
    """Keep a running interval-mining node busy for demos: every `every` seconds, `per_round`
    transfers plus an emitter call, so its blocks hold transactions and logs. Waits for the
    node to answer first; runs until interrupted."""
    deadline = time.monotonic() + 60
    while True:
        try:
            emitter = deploy_emitter(url)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    sender = dev_accounts(url)[per_round + 1]
    n = 0
    while True:
        send_transfers(url, per_round)
        with _rpc(url) as rpc:
            data = emitter_calldata("ping", f"demo-{n}".encode())
            rpc.call(
                "eth_sendTransaction",
                [{"from": sender, "to": emitter, "data": data, "gas": _hex(CALL_GAS)}],
            )
        n += 1
        time.sleep(every)


def _main(argv: Sequence[str]) -> int:
    """`python -m trace_chain.devchain compile-emitter` rewrites the committed artifacts;
    `python -m trace_chain.devchain run [--block-time S]` runs anvil until Ctrl-C;
    `python -m trace_chain.devchain traffic URL` sends demo transactions until Ctrl-C."""
    if argv[:1] == ["traffic"] and len(argv) == 2:
        with contextlib.suppress(KeyboardInterrupt):
            traffic_forever(argv[1])
        return 0
    if argv[:1] == ["compile-emitter"]:
        EMITTER_ARTIFACT.write_text(json.dumps(compile_emitter(), indent=2) + "\n")
        print(f"wrote {EMITTER_ARTIFACT}")
        CALLER_ARTIFACT.write_text(
            json.dumps(compile_contract(CALLER_SOURCE, "TraceCaller"), indent=2) + "\n"
        )
        print(f"wrote {CALLER_ARTIFACT}")
        return 0
    if argv[:1] == ["run"]:
        block_time = float(argv[2]) if argv[1:2] == ["--block-time"] else None
        with Anvil(block_time=block_time) as anvil:
            print(f"anvil on {anvil.url} (chain id {anvil.chain_id}); Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while anvil.proc is not None and anvil.proc.poll() is None:
                    time.sleep(0.5)
        return 0
    print(_main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
