"""The EVM chain adapter: head number, chain id, block ranges and receipts over an `RpcPool`,
decoded to plain Python values and normalized into rows for the hot tables.

Batches adapt their size (halve when the node refuses or times out, grow back on success),
in the manner of ethereum-etl. Plain Python, no Django.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from trace_chain.rpc import RpcError, RpcPool, RpcTooLarge, RpcUnavailable

log = logging.getLogger(__name__)

ReceiptsMode = Literal["auto", "block", "transaction"]

# Fields the JSON-RPC spec types as QUANTITY (hex integers), per object kind. Everything else
# stays as the node sent it, except hashes and addresses, which are lowercased.
BLOCK_QUANTITIES = frozenset(
    {
        "number",
        "timestamp",
        "gasUsed",
        "gasLimit",
        "baseFeePerGas",
        "size",
        "difficulty",
        "totalDifficulty",
        "blobGasUsed",
        "excessBlobGas",
    }
)
TRANSACTION_QUANTITIES = frozenset(
    {
        "blockNumber",
        "blockTimestamp",
        "transactionIndex",
        "value",
        "gas",
        "gasPrice",
        "maxFeePerGas",
        "maxPriorityFeePerGas",
        "maxFeePerBlobGas",
        "nonce",
        "type",
        "chainId",
        "v",
        "yParity",
    }
)
RECEIPT_QUANTITIES = frozenset(
    {
        "blockNumber",
        "blockTimestamp",
        "transactionIndex",
        "cumulativeGasUsed",
        "gasUsed",
        "effectiveGasPrice",
        "status",
        "type",
        "blobGasUsed",
        "blobGasPrice",
    }
)
LOG_QUANTITIES = frozenset({"blockNumber", "blockTimestamp", "transactionIndex", "logIndex"})
LOWERCASE_FIELDS = frozenset(
    {
        "hash",
        "parentHash",
        "miner",
        "from",
        "to",
        "contractAddress",
        "address",
        "blockHash",
        "transactionHash",
    }
)

# Fragments of RpcUnavailable errors that suggest the request was too big to answer in time,
# so a smaller batch may succeed; a refused connection does not get better by splitting.
_SIZE_SYMPTOMS = ("Timeout", "ChunkedEncodingError", "HTTP 413", "too large", "too big")


class ChainDataError(RuntimeError):
    """The node's answers are missing or inconsistent for the requested range."""


class BlockNotFound(ChainDataError):
    """The node has no block (or receipts) at this number yet: it is behind, or the range is
    past the head. Retrying later, or on another endpoint, may succeed."""

    def __init__(self, number: int, what: str = "block") -> None:
        super().__init__(f"{what} {number} not available from the node")
        self.number = number


class RangeChanged(ChainDataError):
    """Blocks and receipts of one range disagree (a reorg happened between the requests);
    fetch the range again."""


# --- decoding ---------------------------------------------------------------------------------


def to_int(value: Any) -> int | None:
    """A JSON-RPC QUANTITY as an int (`None` stays `None`; ints pass through, which some nodes
    send for a few fields, e.g. anvil's receipt `blockTimestamp`)."""
    if value.__class__ is str:  # the usual case first: this runs for every field of every row
        if value[:2] in ("0x", "0X"):
            return int(value, 16) if len(value) > 2 else 0
        return int(value) if value else 0
    if value is None or isinstance(value, int):
        return value
    raise ValueError(f"not a JSON-RPC quantity: {value!r}")


def _required_int(value: Any, what: str) -> int:
    number = to_int(value)
    if number is None:
        raise ChainDataError(f"{what} returned null")
    return number


def _decode(obj: Mapping[str, Any], quantities: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in quantities:
            out[key] = to_int(value)
        elif key in LOWERCASE_FIELDS and isinstance(value, str):
            out[key] = value.lower()
        elif key == "topics" and isinstance(value, list):
            out[key] = [t.lower() for t in value]
        else:
            out[key] = value
    return out


def decode_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """A block as the node sent it, with QUANTITY fields as ints and hashes lowercased;
    `transactions` decoded too when they are objects (hashes are lowercased)."""
    out = _decode(block, BLOCK_QUANTITIES)
    txs = block.get("transactions") or []
    out["transactions"] = [
        decode_transaction(tx) if isinstance(tx, Mapping) else str(tx).lower() for tx in txs
    ]
    return out


def decode_transaction(tx: Mapping[str, Any]) -> dict[str, Any]:
    return _decode(tx, TRANSACTION_QUANTITIES)


def decode_receipt(receipt: Mapping[str, Any]) -> dict[str, Any]:
    out = _decode(receipt, RECEIPT_QUANTITIES)
    out["logs"] = [decode_log(entry) for entry in receipt.get("logs") or []]
    return out


def decode_log(entry: Mapping[str, Any]) -> dict[str, Any]:
    return _decode(entry, LOG_QUANTITIES)


# --- normalized rows --------------------------------------------------------------------------
# The row builders normalize the fields they keep (QUANTITY -> int, hex text lowercased) and
# nothing else, so they take an object as the node sent it or as `decode_*` returned it (both
# steps are idempotent): a range's rows are built straight from the answers, without decoding
# the dozens of fields no row keeps (signatures, blooms, roots).


def _lower(value: Any) -> Any:
    # Hex text is stored lowercase everywhere (Cryo writes it so), whatever case a node sends.
    return value.lower() if isinstance(value, str) else value


def block_row(block: Mapping[str, Any]) -> dict[str, Any]:
    """One `hot_blocks` row from a block (the one chain schema, trace_chain/chain_schema.py)."""
    get = block.get
    return {
        "number": to_int(block["number"]),
        "hash": _lower(block["hash"]),
        "parent_hash": _lower(block["parentHash"]),
        "timestamp": to_int(block["timestamp"]),
        "miner": _lower(get("miner")),
        "gas_used": to_int(get("gasUsed")),
        "base_fee_per_gas": to_int(get("baseFeePerGas")),
        "size": to_int(get("size")),
        "extra_data": _lower(get("extraData")),
    }


def transaction_row(tx: Mapping[str, Any], receipt: Mapping[str, Any] | None) -> dict[str, Any]:
    """One `hot_transactions` row from a transaction and its receipt."""
    get = tx.get
    receipt = receipt or {}
    status = to_int(receipt.get("status"))
    return {
        "block_number": to_int(tx["blockNumber"]),
        "block_hash": _lower(tx["blockHash"]),
        "transaction_index": to_int(tx["transactionIndex"]),
        "hash": _lower(tx["hash"]),
        "from": _lower(get("from")),
        "to": _lower(get("to")),
        "value": to_int(get("value")),
        "gas": to_int(get("gas")),
        "gas_price": to_int(get("gasPrice")),
        "max_fee_per_gas": to_int(get("maxFeePerGas")),
        "max_priority_fee_per_gas": to_int(get("maxPriorityFeePerGas")),
        "input": _lower(get("input", get("data"))),
        "nonce": to_int(get("nonce")),
        "type": to_int(get("type")),
        "success": None if status is None else status == 1,
        "gas_used": to_int(receipt.get("gasUsed")),
    }


def log_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One `hot_logs` row from a log (topics spread over topic0..topic3)."""
    topics = [_lower(t) for t in entry.get("topics") or ()]
    if len(topics) > 4:
        raise ChainDataError(f"log with {len(topics)} topics (EVM allows at most 4)")
    topics += [None] * (4 - len(topics))
    return {
        "block_number": to_int(entry["blockNumber"]),
        "block_hash": _lower(entry["blockHash"]),
        "transaction_hash": _lower(entry["transactionHash"]),
        "transaction_index": to_int(entry["transactionIndex"]),
        "log_index": to_int(entry["logIndex"]),
        "address": _lower(entry["address"]),
        "topic0": topics[0],
        "topic1": topics[1],
        "topic2": topics[2],
        "topic3": topics[3],
        "data": _lower(entry.get("data")),
        "removed": bool(entry.get("removed", False)),
    }


TRACE_METHOD = "trace_block"  # parity style; docs/schema.md says why this one


def trace_row(trace: Mapping[str, Any]) -> dict[str, Any] | None:
    """One `hot_traces` row from a parity-style trace (`trace_block`), or None for a trace
    that belongs to no transaction (block and uncle rewards): the schema leaves those out.
    Raises ChainDataError for a trace kind the schema has no mapping for."""
    kind = trace.get("type")
    action = trace.get("action") or {}
    result = trace.get("result") or {}
    if kind == "reward" or trace.get("transactionPosition") is None:
        return None
    if kind == "call":
        source, target, value = action.get("from"), action.get("to"), action.get("value")
        data, output, created = action.get("input"), result.get("output"), None
    elif kind == "create":
        source, target, value = action.get("from"), None, action.get("value")
        data, output, created = action.get("init"), result.get("code"), result.get("address")
    elif kind == "suicide":
        source, target = action.get("address"), action.get("refundAddress")
        value, data, output, created = action.get("balance"), None, None, None
    else:
        raise ChainDataError(f"trace of unknown type {kind!r} in block {trace.get('blockNumber')}")
    return {
        "block_number": to_int(trace["blockNumber"]),
        "block_hash": _lower(trace["blockHash"]),
        "transaction_index": to_int(trace["transactionPosition"]),
        "transaction_hash": _lower(trace["transactionHash"]),
        "trace_address": "_".join(str(int(i)) for i in trace.get("traceAddress") or ()),
        "trace_type": kind,
        "call_type": _lower(action.get("callType")) if kind == "call" else None,
        "from_address": _lower(source),
        "to_address": _lower(target),
        "value": to_int(value) or 0,
        "gas": to_int(action.get("gas")),
        "gas_used": to_int(result.get("gasUsed")) if trace.get("result") else None,
        "input": _lower(data),
        "output": _lower(output),
        "error": trace.get("error"),
        "subtraces": to_int(trace.get("subtraces")) or 0,
        "created_address": _lower(created),
    }


@dataclass
class RangeRows:
    """Normalized rows for the blocks `start <= number < end_exclusive`, in chain order."""

    start: int
    end_exclusive: int
    blocks: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)  # only when asked for


class TracesUnsupported(ChainDataError):
    """The node does not answer the trace method the `traces` dataset is read with."""


# --- adaptive batching ------------------------------------------------------------------------


class AdaptiveBatchSize:
    """A batch size that halves on failure and doubles back after `grow_after` successes in a
    row, between `minimum` and `maximum`. Shared by the concurrent batches of one kind of call,
    so it is locked."""

    def __init__(self, initial: int, *, minimum: int = 1, maximum: int, grow_after: int = 2):
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(f"need 1 <= minimum <= initial <= maximum, got {minimum}/{initial}")
        self.size = initial
        self.minimum = minimum
        self.maximum = maximum
        self.grow_after = grow_after
        self._successes = 0
        self._lock = threading.Lock()

    def shrink(self, failed: int | None = None) -> bool:
        """Halve (below `failed`, the size of the batch that failed, if smaller than the current
        size); False if already at the minimum (the caller should give up)."""
        with self._lock:
            self._successes = 0
            current = min(self.size, failed) if failed else self.size
            if current <= self.minimum:
                return False
            self.size = max(self.minimum, current // 2)
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._successes += 1
            if self._successes >= self.grow_after and self.size < self.maximum:
                self.size = min(self.maximum, self.size * 2)
                self._successes = 0


def _size_related(exc: RpcUnavailable) -> bool:
    return any(symptom in error for error in exc.errors.values() for symptom in _SIZE_SYMPTOMS)


# --- the adapter ------------------------------------------------------------------------------

Calls = Sequence[tuple[str, list[Any]]]


class ChainAdapter:
    """Chain reads for ingestion over one `RpcPool`.

    `receipts_mode`: "auto" uses `eth_getBlockReceipts` and falls back for good to
    per-transaction `eth_getTransactionReceipt` the first time the node says it lacks the
    method; "block" and "transaction" force one or the other.

    `concurrency`: how many JSON-RPC batch requests a read keeps in flight at once (a range is
    split into that many batches per kind of call, each at most the adaptive size); answers
    are put back in request order whatever order they arrive in. 1 sends them one after the
    other from the calling thread. `close()` ends the threads."""

    def __init__(
        self,
        pool: RpcPool,
        *,
        batch_size: int = 32,
        max_batch_size: int = 256,
        receipts_mode: ReceiptsMode = "auto",
        concurrency: int = 1,
    ) -> None:
        if receipts_mode not in ("auto", "block", "transaction"):
            raise ValueError(f"unknown receipts_mode {receipts_mode!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.pool = pool
        self.receipts_mode = receipts_mode
        self._block_receipts_supported: bool | None = {
            "auto": None,
            "block": True,
            "transaction": False,
        }[receipts_mode]
        self._initial_batch_size = batch_size
        self._max_batch_size = max_batch_size
        # One size per kind of call: a receipts-of-a-block answer is far bigger than a header.
        self.batch_sizes: dict[str, AdaptiveBatchSize] = {}
        self._chain_id: int | None = None
        self.concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def close(self) -> None:
        """End the request threads (the pool is the caller's to close)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # -- simple reads --

    def head_number(self) -> int:
        return _required_int(self.pool.call("eth_blockNumber"), "eth_blockNumber")

    def head(self) -> dict[str, Any]:
        """The node's latest block header, decoded: its number and hash in one call."""
        answer = self.pool.call("eth_getBlockByNumber", ["latest", False])
        if answer is None:
            raise ChainDataError("the node returned no latest block")
        return decode_block(answer)

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = _required_int(self.pool.call("eth_chainId"), "eth_chainId")
        return self._chain_id

    @property
    def uses_block_receipts(self) -> bool | None:
        """True/False once known; None while "auto" has not tried yet."""
        return self._block_receipts_supported

    # -- blocks --

    def blocks(
        self, start: int, end_exclusive: int, full_transactions: bool = True
    ) -> list[dict[str, Any]]:
        """Decoded blocks `start <= number < end_exclusive`, in order."""
        return self.blocks_by_number(range(start, end_exclusive), full_transactions)

    def blocks_by_number(
        self, numbers: Iterable[int], full_transactions: bool = True
    ) -> list[dict[str, Any]]:
        numbers = list(numbers)
        answers = self._batched(
            "eth_getBlockByNumber",
            [("eth_getBlockByNumber", [hex(n), full_transactions]) for n in numbers],
        )
        return [
            decode_block(_block_answer(n, answer))
            for n, answer in zip(numbers, answers, strict=True)
        ]

    # -- receipts --

    def receipts(
        self,
        block_numbers: Iterable[int],
        *,
        transaction_hashes: Mapping[int, Sequence[str]] | None = None,
    ) -> dict[int, list[dict[str, Any]]]:
        """Decoded receipts per block number, in transaction order.

        `transaction_hashes` (block number -> tx hashes) spares the per-transaction fallback
        a block fetch when the caller already has the blocks."""
        numbers = list(dict.fromkeys(block_numbers))
        if not numbers:
            return {}
        if self._block_receipts_supported is not False:
            answers = self._fetch({"eth_getBlockReceipts": _block_receipt_calls(numbers)})
            by_block = self._block_receipts_or_fallback(numbers, answers["eth_getBlockReceipts"])
            if by_block is not None:
                return {n: [decode_receipt(r) for r in by_block[n]] for n in numbers}
        return self._receipts_by_transaction(numbers, transaction_hashes)

    def _block_receipts_or_fallback(
        self, numbers: list[int], answers: list[Any] | BaseException
    ) -> dict[int, list[Any]] | None:
        """eth_getBlockReceipts answers per block, or None when "auto" learns here that the
        node lacks the method (the caller falls back to per-transaction receipts)."""
        if isinstance(answers, BaseException):
            if (
                self.receipts_mode != "auto"
                or not isinstance(answers, RpcError)
                or not answers.is_method_not_found
            ):
                raise answers
            log.info(
                "rpc pool %s lacks eth_getBlockReceipts (%s); using eth_getTransactionReceipt",
                self.pool.name,
                answers.rpc_message,
            )
            self._block_receipts_supported = False
            return None
        self._block_receipts_supported = True
        out = {}
        for number, answer in zip(numbers, answers, strict=True):
            if answer is None:
                raise BlockNotFound(number, "receipts of block")
            out[number] = answer
        return out

    def _receipts_by_transaction(
        self, numbers: list[int], transaction_hashes: Mapping[int, Sequence[str]] | None
    ) -> dict[int, list[dict[str, Any]]]:
        if transaction_hashes is None or any(n not in transaction_hashes for n in numbers):
            blocks = self.blocks_by_number(numbers, full_transactions=False)
            transaction_hashes = {b["number"]: b["transactions"] for b in blocks}
        wanted = [(n, h.lower()) for n in numbers for h in transaction_hashes[n]]
        answers = self._batched(
            "eth_getTransactionReceipt",
            [("eth_getTransactionReceipt", [h]) for _, h in wanted],
        )
        out: dict[int, list[dict[str, Any]]] = {n: [] for n in numbers}
        for (number, tx_hash), answer in zip(wanted, answers, strict=True):
            if answer is None:
                raise BlockNotFound(number, f"receipt of {tx_hash} in block")
            receipt = decode_receipt(answer)
            if receipt["blockNumber"] != number:
                raise RangeChanged(
                    f"receipt of {tx_hash} is in block {receipt['blockNumber']}, not {number}"
                )
            out[number].append(receipt)
        return out

    # -- ranges as rows --

    # -- traces --

    def traces_check(self) -> None:
        """Refuse a node that cannot give traces: ask it for the latest block's (cheap on an
        empty or small block). Raises TracesUnsupported naming the method."""
        try:
            self.pool.call(TRACE_METHOD, ["latest"])
        except RpcError as exc:
            if exc.is_method_not_found:
                raise TracesUnsupported(
                    f"rpc pool {self.pool.name!r} does not support {TRACE_METHOD} "
                    f"({exc.rpc_message}), which `traces: true` needs"
                ) from None
            raise

    def block_range_with_receipts(
        self, start: int, end_exclusive: int, *, traces: bool = False
    ) -> RangeRows:
        """Blocks, transactions (with receipt fields) and logs of `start <= n < end_exclusive`
        as hot-table rows, and with `traces` their traces. Raises `RangeChanged` if the chain
        moved under the fetches.

        With eth_getBlockReceipts the blocks and their receipts (and traces) are requested
        together (all batches in flight at once); rows are built from the answers as sent."""
        rows = RangeRows(start, end_exclusive)
        if end_exclusive <= start:
            return rows
        numbers = list(range(start, end_exclusive))
        calls: dict[str, Calls] = {
            "eth_getBlockByNumber": [("eth_getBlockByNumber", [hex(n), True]) for n in numbers]
        }
        if self._block_receipts_supported is not False:
            calls["eth_getBlockReceipts"] = _block_receipt_calls(numbers)
        if traces:
            calls[TRACE_METHOD] = _trace_calls(numbers)
        answers = self._fetch(calls)
        blocks = _raise_failure(answers["eth_getBlockByNumber"])
        blocks = [_block_answer(n, answer) for n, answer in zip(numbers, blocks, strict=True)]
        receipts = None
        if "eth_getBlockReceipts" in answers:
            receipts = self._block_receipts_or_fallback(numbers, answers["eth_getBlockReceipts"])
        if receipts is None:
            receipts = self._receipts_by_transaction(
                numbers,
                {
                    n: [t["hash"] for t in b["transactions"]]
                    for n, b in zip(numbers, blocks, strict=True)
                },
            )
        for number, block in zip(numbers, blocks, strict=True):
            block_receipts = receipts[number]
            txs = block["transactions"]
            if [_lower(r["transactionHash"]) for r in block_receipts] != [
                _lower(t["hash"]) for t in txs
            ]:
                raise RangeChanged(
                    f"block {number}: receipts do not match the block's transactions"
                )
            block_hash = _lower(block["hash"])
            if any(_lower(r["blockHash"]) != block_hash for r in block_receipts):
                raise RangeChanged(f"block {number}: receipts are of another block")
            rows.blocks.append(block_row(block))
            for tx, receipt in zip(txs, block_receipts, strict=True):
                rows.transactions.append(transaction_row(tx, receipt))
                rows.logs.extend(log_row(entry) for entry in receipt.get("logs") or ())
        if traces:
            answers_by_block = _raise_failure(answers[TRACE_METHOD])
            for number, block, answer in zip(numbers, blocks, answers_by_block, strict=True):
                block_traces = _trace_rows(number, answer)
                _check_traces(number, block, block_traces)
                rows.traces.extend(block_traces)
        return rows

    # -- batching --

    def _sizer(self, kind: str) -> AdaptiveBatchSize:
        with self._executor_lock:
            if kind not in self.batch_sizes:
                self.batch_sizes[kind] = AdaptiveBatchSize(
                    min(self._initial_batch_size, self._max_batch_size),
                    maximum=self._max_batch_size,
                )
            return self.batch_sizes[kind]

    def batched_calls(self, kind: str, calls: Calls) -> list[Any]:
        """The results of arbitrary `calls` of one kind, in order, batched like every read
        here (adaptive size, `concurrency` batches in flight)."""
        return self._batched(kind, calls)

    def _batched(self, kind: str, calls: Calls) -> list[Any]:
        """The results of `calls`, in order (batched, concurrent as configured)."""
        return _raise_failure(self._fetch({kind: calls})[kind])

    def _fetch(self, calls: Mapping[str, Calls]) -> dict[str, list[Any] | BaseException]:
        """Run each kind's calls as batches (split `concurrency` ways, at most the kind's
        adaptive size each), all kinds' batches in flight together; per kind, its results in
        call order, or the first failure among its batches. Every batch has ended (answered or
        failed) when this returns: nothing is left running on a failure."""
        jobs: list[tuple[str, Calls]] = []
        for kind, kind_calls in calls.items():
            size = max(1, min(self._sizer(kind).size, -(-len(kind_calls) // self.concurrency)))
            jobs += [(kind, kind_calls[i : i + size]) for i in range(0, len(kind_calls), size)]
        merged: dict[str, list[Any] | BaseException] = {kind: [] for kind in calls}

        def record(kind: str, outcome: list[Any] | BaseException) -> None:
            done = merged[kind]
            if isinstance(done, BaseException):
                return  # the kind's first failure (in call order) is the one reported
            if isinstance(outcome, BaseException):
                merged[kind] = outcome
            else:
                done.extend(outcome)

        if self.concurrency == 1 or len(jobs) <= 1:
            for kind, chunk in jobs:  # a kind's batches stop at its first failure
                if not isinstance(merged[kind], BaseException):
                    record(kind, _outcome(self._adaptive, kind, chunk))
        else:
            executor = self._thread_pool()
            futures = [executor.submit(self._adaptive, kind, chunk) for kind, chunk in jobs]
            wait(futures)
            for (kind, _), future in zip(jobs, futures, strict=True):
                record(kind, future.exception() or future.result())
        return merged

    def _adaptive(self, kind: str, calls: Calls) -> list[Any]:
        """Run `calls` as consecutive batches of the adaptive size for `kind`, halving it on
        a refusal or a time-out that a smaller batch may avoid."""
        sizer = self._sizer(kind)
        results: list[Any] = []
        done = 0
        while done < len(calls):
            chunk = calls[done : done + sizer.size]
            try:
                results.extend(self.pool.batch(chunk))
            except (RpcTooLarge, RpcUnavailable) as exc:
                if isinstance(exc, RpcUnavailable) and not _size_related(exc):
                    raise
                if not sizer.shrink(len(chunk)):
                    raise
                log.info(
                    "rpc pool %s: %s batch of %d failed (%s); halving to %d",
                    self.pool.name,
                    kind,
                    len(chunk),
                    type(exc).__name__,
                    sizer.size,
                )
                continue
            sizer.succeeded()
            done += len(chunk)
        return results

    def _thread_pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.concurrency, thread_name_prefix=f"rpc-{self.pool.name}"
                )
            return self._executor


def _outcome(fn, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def _raise_failure(outcome: list[Any] | BaseException) -> list[Any]:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _trace_calls(numbers: Sequence[int]) -> Calls:
    return [(TRACE_METHOD, [hex(n)]) for n in numbers]


def _trace_rows(number: int, answer: Any) -> list[dict[str, Any]]:
    if answer is None:
        raise BlockNotFound(number, "traces of block")
    rows = [row for row in map(trace_row, answer) if row is not None]
    if any(row["block_number"] != number for row in rows):
        raise RangeChanged(f"traces asked for block {number} are of another block")
    return rows


def _check_traces(number: int, block: Mapping[str, Any], traces: list[dict[str, Any]]) -> None:
    """Traces of the block fetched beside them: same hash, one top-level call per
    transaction (a reorg between the two requests shows as a mismatch here)."""
    block_hash = _lower(block["hash"])
    if any(row["block_hash"] != block_hash for row in traces):
        raise RangeChanged(f"block {number}: traces are of another block")
    tops = [
        (r["transaction_index"], r["transaction_hash"]) for r in traces if not r["trace_address"]
    ]
    expected = [(to_int(t["transactionIndex"]), _lower(t["hash"])) for t in block["transactions"]]
    if tops != expected:
        raise RangeChanged(f"block {number}: traces do not match the block's transactions")


def _block_receipt_calls(numbers: Sequence[int]) -> Calls:
    return [("eth_getBlockReceipts", [hex(n)]) for n in numbers]


def _block_answer(number: int, answer: Any) -> Mapping[str, Any]:
    """A block answer checked to be the block asked for."""
    if answer is None:
        raise BlockNotFound(number)
    got = to_int(answer.get("number"))
    if got != number:
        raise ChainDataError(f"asked for block {number}, got {got}")
    return answer
