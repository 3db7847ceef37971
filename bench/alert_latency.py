"""Benchmark: alerting, block mined -> webhook received, p50/p95 over at least --alerts alerts,
beside a hand-written watcher in the same run; then throughput through sink -> route ->
deliver, beside plain HTTP POSTs to the same receiver.

    python bench/alert_latency.py [--alerts 200] [--block-time 1] [--per-block 2]

Latency. anvil mines a block every --block-time seconds; each block carries --per-block
transfers over 1 ETH from a watched sender (matches) and one under it. Trace runs the whole
path on real processes: the follower (stream pool), alert_evaluate with a declarative
condition (udf pool), the sink and routing on commit, the delivery pool's signed webhook. The
baseline is what a user would write instead: one loop polling the node every 10 ms, fetching
each new block with its transactions, filtering them and POSTing a signed webhook, with no
durability, no dedupe and no reorg handling: the floor of this path on this machine. "Mined" is
when a 5 ms poller first sees the block at the node; "received" is the receiver's arrival time.

Throughput. A backtest with `deliver: true` over the chain so far, for a definition matching
every transfer (its own channel), publishes its events in one commit; measured from the
commit's sink row to the last webhook received (events/s), beside the same number of POSTs
sent straight to the receiver by two threads (the delivery pool's concurrency).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import percentile, platform, start_celery, stop, wait_for_workers, wait_until

ONE_ETH = 10**18
SECRET = "bench-secret"  # noqa: S105 - a loopback receiver's test secret


class Receiver:
    """A webhook receiver on loopback: arrival time per path and transaction."""

    def __init__(self) -> None:
        self.arrivals: dict[str, dict[str, float]] = {"/trace": {}, "/baseline": {}}
        self.last: dict[str, float] = {}
        self.count: dict[str, int] = {"/trace": 0, "/baseline": 0}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                now = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()
                document = json.loads(body)
                tx = (document.get("event") or document).get("tx_hash")
                with receiver.lock:
                    receiver.count[self.path] = receiver.count.get(self.path, 0) + 1
                    receiver.arrivals.setdefault(self.path, {}).setdefault(tx, now)
                    receiver.last[self.path] = now

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"


def watch_mined(url: str, seen: dict[int, float], stop_event: threading.Event) -> None:
    from trace_chain.rpc import RpcPool

    with RpcPool("watch", [url]) as rpc:
        last = None
        while not stop_event.is_set():
            top = int(rpc.call("eth_blockNumber"), 16)
            if last is None or top > last:
                now = time.time()
                for number in range(top if last is None else last + 1, top + 1):
                    seen.setdefault(number, now)
                last = top
            time.sleep(0.005)


def baseline_watcher(url: str, sender: str, target: str, stop_event: threading.Event) -> None:
    """The hand-written alternative: poll, fetch, filter, POST."""
    import requests

    from trace_chain.rpc import RpcPool

    session = requests.Session()
    with RpcPool("baseline", [url]) as rpc:
        nxt = int(rpc.call("eth_blockNumber"), 16) + 1
        while not stop_event.is_set():
            if int(rpc.call("eth_blockNumber"), 16) < nxt:
                time.sleep(0.01)
                continue
            block = rpc.call("eth_getBlockByNumber", [hex(nxt), True])
            for tx in block["transactions"]:
                if tx["from"].lower() == sender and int(tx["value"], 16) > ONE_ETH:
                    body = json.dumps({"tx_hash": tx["hash"], "block": nxt}).encode()
                    stamp = str(int(time.time()))
                    mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
                    session.post(
                        target,
                        data=body,
                        headers={"X-Signature": mac.hexdigest(), "X-Timestamp": stamp},
                        timeout=10,
                    )
            nxt += 1


def traffic(url: str, accounts: list[str], per_block: int, block_time: float, stop_event):
    """Per block: `per_block` matching transfers and one that does not match."""
    from trace_chain.rpc import RpcPool

    sender, *others = accounts
    sent: list[str] = []
    with RpcPool("traffic", [url]) as rpc:
        while not stop_event.is_set():
            for i in range(per_block):
                tx = {"from": sender, "to": others[i % len(others)], "value": hex(2 * ONE_ETH)}
                sent.append(rpc.call("eth_sendTransaction", [tx]).lower())
            small = {"from": sender, "to": others[0], "value": hex(ONE_ETH // 10)}
            rpc.call("eth_sendTransaction", [small])
            stop_event.wait(block_time)
    return sent


def tx_blocks(url: str, hashes: list[str]) -> dict[str, int]:
    from trace_chain.rpc import RpcPool

    out = {}
    with RpcPool("receipts", [url]) as rpc:
        for tx in hashes:
            receipt = rpc.call("eth_getTransactionReceipt", [tx])
            if receipt:
                out[tx] = int(receipt["blockNumber"], 16)
    return out


def dags(chain_id: int) -> str:
    return f"""
name: watch
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {chain_id}, rpc_pool: bench}}
  - name: evaluate
    activation: reactive
    runtime: udf
    operator: alert_evaluate
    execution_strategy: PerUpdate
    scaling: {{max_concurrency: 1}}
    config: {{chain_id: {chain_id}, alerts: [big]}}
    inputs: [{{from: {{job: follow, output: 0}}}}]
  - name: history
    activation: manual
    runtime: udf
    operator: alert_evaluate
    config: {{chain_id: {chain_id}, alerts: [every]}}
    inputs: [{{from: {{job: follow, output: 0}}}}]
"""


def latencies(arrivals: dict[str, float], blocks: dict[str, int], seen: dict[int, float]):
    return [
        (arrivals[tx] - seen[blocks[tx]]) * 1000
        for tx in arrivals
        if tx in blocks and blocks[tx] in seen
    ]


def stages(org, blocks: dict[str, int], seen: dict[int, float], arrivals: dict[str, float]):
    """Medians of each step of the path, in ms from the block being mined: the evaluation's
    claim and end, the event written by the sink, the delivery recorded, the webhook received."""
    from statistics import median

    from trace_web.alerts.models import Delivery
    from trace_web.orchestration.models import Task

    rows: dict[str, list[float]] = {
        k: [] for k in ("claimed", "evaluated", "event", "sent", "received")
    }
    deliveries = Delivery.objects.filter(event__definition__name="big").select_related("event")
    tasks = {
        t.pk: t for t in Task.objects.filter(pk__in=[d.event.producer_task_id for d in deliveries])
    }
    for d in deliveries:
        tx, task = d.event.tx_hash, tasks.get(d.event.producer_task_id)
        if tx not in blocks or blocks[tx] not in seen or task is None or tx not in arrivals:
            continue
        mined = seen[blocks[tx]]
        rows["claimed"].append(task.started_at.timestamp() - mined)
        rows["evaluated"].append(task.finished_at.timestamp() - mined)
        rows["event"].append(d.event.created_at.timestamp() - mined)
        rows["sent"].append(d.delivered_at.timestamp() - mined)
        rows["received"].append(arrivals[tx] - mined)
    return {k: median(v) * 1000 for k, v in rows.items() if v}


def throughput(org, receiver: Receiver, tip: int) -> tuple[float, int, float]:
    """(events/s through sink -> route -> deliver, events, direct POSTs/s)."""
    import requests

    from trace_web.alerts.models import AlertDefinition, Delivery
    from trace_web.orchestration.models import Outbox, OutboxKind
    from trace_web.orchestration.services.sources import job_run_manual
    from trace_web.orchestration.services.tasks import TaskScope

    every = AlertDefinition.objects.get(org=org, name="every")
    before = Outbox.objects.filter(kind=OutboxKind.ALERT_SINK).count()
    job_run_manual(
        org=org,
        dag_name="watch",
        job_name="history",
        scope=TaskScope(range_start=0, range_end=tip + 1),
        payload={"backtest": True, "deliver": True, "definitions": [every.pk]},
    )
    sinks = Outbox.objects.filter(kind=OutboxKind.ALERT_SINK).order_by("-id")
    wait_until(lambda: sinks.count() > before, timeout=600, interval=0.05)
    started = sinks.first().created_at.timestamp()
    deliveries = Delivery.objects.filter(event__definition=every)
    wait_until(
        lambda: (
            deliveries.exists()
            and not deliveries.filter(status__in=["pending", "sending"]).exists()
        ),
        timeout=900,
        interval=0.05,
    )
    events = deliveries.count()
    rate = events / (receiver.last["/burst"] - started)
    session = requests.Session()
    body = json.dumps({"tx_hash": "0x" + "0" * 64}).encode()

    def post(_):
        session.post(receiver.url("/direct"), data=body, timeout=10)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(post, range(events)))
    direct = events / (time.perf_counter() - t0)
    return rate, events, direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--block-time", type=float, default=1.0)
    parser.add_argument("--per-block", type=int, default=2)
    args = parser.parse_args()

    home = platform()
    from common import data_db

    data_db()
    os.environ["TRACE_OBJECT_STORE_URL"] = (home / "objects").as_uri()
    os.environ["TRACE_DELIVERY_ALLOW_PRIVATE"] = "1"  # the receiver is on loopback
    from django.conf import settings

    settings.TRACE_OBJECT_STORE_URL = os.environ["TRACE_OBJECT_STORE_URL"]
    from trace_chain import devchain
    from trace_chain.rpc import RpcPool
    from trace_web.alerts.models import AlertDefinition, Channel
    from trace_web.orchestration.services.dags import dag_sync
    from trace_web.orgs.services import org_create

    receiver = Receiver()
    with devchain.Anvil(block_time=args.block_time, accounts=args.per_block + 2) as node:
        os.environ["TRACE_RPC_POOL_BENCH"] = node.url
        with RpcPool("accounts", [node.url]) as rpc:
            accounts = [a.lower() for a in rpc.call("eth_accounts")]
        org = org_create(slug="bench")
        hook = Channel.objects.create(
            org=org,
            name="hook",
            kind="webhook",
            target=receiver.url("/trace"),
            secret=SECRET,
            rate_limit_per_minute=100_000,
        )
        big = AlertDefinition.objects.create(
            org=org,
            name="big",
            chain_id=devchain.ANVIL_CHAIN_ID,
            condition={
                "match": "transaction",
                "from": [accounts[0]],
                "where": f"value > {ONE_ETH}",
            },
        )
        every = AlertDefinition.objects.create(
            org=org,
            name="every",
            chain_id=devchain.ANVIL_CHAIN_ID,
            condition={"match": "transaction", "where": "value > 0"},
        )
        burst = Channel.objects.create(
            org=org,
            name="burst",
            kind="webhook",
            target=receiver.url("/burst"),
            secret=SECRET,
            rate_limit_per_minute=100_000,
        )
        big.channels.set([hook])
        every.channels.set([burst])
        dag_sync(org=org, yaml_text=dags(devchain.ANVIL_CHAIN_ID), activate=True)
        processes = [
            start_celery("stream", ["worker", "-Q", "stream", "--pool", "threads", "-c", "4",
                                    "-l", "WARNING", "-n", "stream@%h"], home),
            start_celery("udf", ["worker", "-Q", "udf,platform", "-c", "2",
                                 "-l", "WARNING", "-n", "udf@%h"], home),
            start_celery("delivery", ["worker", "-Q", "delivery", "-c", "2",
                                      "-l", "WARNING", "-n", "delivery@%h"], home),
            start_celery("dispatcher", ["worker", "-Q", "dispatcher", "-c", "1",
                                        "-l", "WARNING", "-n", "dispatcher@%h"], home),
            start_celery("beat", ["beat", "-l", "WARNING",
                                  "--schedule", str(home / "beat-schedule")], home),
        ]  # fmt: skip
        stop_event = threading.Event()
        seen: dict[int, float] = {}
        try:
            wait_for_workers(4)
            threading.Thread(
                target=watch_mined, args=(node.url, seen, stop_event), daemon=True
            ).start()
            threading.Thread(
                target=baseline_watcher,
                args=(node.url, accounts[0], receiver.url("/baseline"), stop_event),
                daemon=True,
            ).start()
            time.sleep(5 * args.block_time)  # the follower and the alert job on their feet
            sent: list[str] = []
            sender = threading.Thread(
                target=lambda: sent.extend(
                    traffic(node.url, accounts, args.per_block, args.block_time, stop_event)
                ),
                daemon=True,
            )
            sender.start()
            wait_until(
                lambda: len(receiver.arrivals["/trace"]) >= args.alerts + 2 * args.per_block,
                timeout=3600,
                interval=0.1,
            )
            stop_event.set()
            sender.join()
            time.sleep(3 * args.block_time)  # what was sent last arrives too
            blocks = tx_blocks(node.url, sent)
            warm = sorted(blocks.values())[2 * args.per_block :]  # leave the first blocks out
            first = warm[0] if warm else 0
            blocks = {tx: b for tx, b in blocks.items() if b >= first}
            trace = latencies(receiver.arrivals["/trace"], blocks, seen)
            base = latencies(receiver.arrivals["/baseline"], blocks, seen)
            steps = stages(org, blocks, seen, receiver.arrivals["/trace"])
            tip = max(blocks.values())
            rate, events, direct = throughput(org, receiver, tip)
        finally:
            stop_event.set()
            stop(processes)
    duplicates = receiver.count["/trace"] - len(receiver.arrivals["/trace"])
    print(f"block time {args.block_time} s, {args.per_block} matches per block, "
          f"{len(trace)} alerts measured (Trace), {len(base)} (baseline)")  # fmt: skip
    print(f"{'path':<52}{'p50 ms':>10}{'p95 ms':>10}")
    for label, values in (
        ("hand-written poll + POST loop (baseline)", base),
        ("Trace: follower -> evaluate -> sink -> deliver", trace),
    ):
        print(f"{label:<52}{percentile(values, 0.5):>10.0f}{percentile(values, 0.95):>10.0f}")
    print("Trace, median ms after the block was mined: " + ", ".join(
        f"{k} {v:.0f}" for k, v in steps.items()))  # fmt: skip
    print(f"duplicate webhooks received by Trace's endpoint: {duplicates}")
    print(f"\nthroughput, {events} events of a delivering backtest:")
    print(f"{'path':<52}{'events/s':>10}")
    print(f"{'plain POSTs, 2 threads (baseline)':<52}{direct:>10.0f}")
    print(f"{'Trace: sink -> route -> deliver':<52}{rate:>10.0f}  ({rate / direct:.2f}x)")


if __name__ == "__main__":
    main()
