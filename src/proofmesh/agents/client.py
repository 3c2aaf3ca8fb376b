"""``AgentClient``: discover a tool on chain, connect over MCP, pay, check the receipt.

- Discovery reads ``ToolRegistry`` (cached for ``discovery_ttl_s``) and ranks the
  providers of a tool name by on-chain reputation.
- Before paying a provider, the client checks that the schema it serves hashes to the
  CID registered on chain, and validates the arguments against it locally: a call
  whose arguments are wrong is refused before anything is signed.
- Payment: ``voucher`` (default; a channel per provider, opened on first use, one
  signed cumulative voucher per call) or ``exact`` (one EIP-3009 authorization per
  call, settled on chain by the provider).
- Every result must come with the provider's EIP-712 receipt binding tool, argument
  hash, result hash, payer, payment and nonce; a result whose receipt does not check
  out is treated as a failed provider.
- When a provider fails (offline, tool error, bad receipt, schema mismatch) the call
  falls back to the next provider of the same tool. Outcomes are kept in signed,
  cumulative ``Usage`` reports that ride along with later vouchers (the provider
  submits them when it redeems) and that :meth:`AgentClient.report_usage` submits
  directly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import httpx2   # the MCP SDK's HTTP client (a dependency of mcp): its transport is where the cap goes
from eth_utils import to_checksum_address
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from proofmesh.agents.receipts import Receipt, Usage
from proofmesh.agents.registry import ToolRecord, ToolRegistry
from proofmesh.agents.schema import ArgumentValidator, canonical_json, json_hash
from proofmesh.agents.x402 import (META_PAYMENT, META_RESPONSE, PAYMENT_REQUIRED, SCHEME_EXACT, SCHEME_VOUCHER,
                                   Authorization, PaymentRequired, Requirement, payment_payload, token_domain)
from proofmesh.errors import InputError, ProofmeshError, VerificationError
from proofmesh.http_reads import AnswerTooLarge, max_answer_bytes
from proofmesh.payments import DURABILITY_BEHIND, PaymentChannels, Voucher, Wallet
from proofmesh.store.journal import DURABILITY_GROUP, Journal

INVALID_PARAMS = -32602


class ToolCallFailed(ProofmeshError):
    """Every provider of a tool failed (each reason is listed)."""


class ProviderUnreachable(ProofmeshError):
    """A provider's endpoint did not answer (offline, moved, or the connection broke)."""


@dataclass(frozen=True)
class CallResult:
    """One paid tool call: the result and the evidence."""

    tool: str
    provider: str
    endpoint: str
    result: Any
    price: int
    scheme: str
    receipt: Receipt
    transaction: str | None
    latency_s: float
    failed_providers: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"tool": self.tool, "provider": self.provider, "endpoint": self.endpoint, "result": self.result,
                "price": str(self.price), "scheme": self.scheme, "receipt": self.receipt.to_json(),
                "transaction": self.transaction, "latency_ms": round(self.latency_s * 1000, 3),
                "failed_providers": list(self.failed_providers)}


@dataclass
class WorkflowResult:
    """A chain of tool calls: a receipt per step and the total paid."""

    steps: list[CallResult]

    @property
    def total_cost(self) -> int:
        return sum(s.price for s in self.steps)

    def to_json(self) -> dict:
        return {"steps": [s.to_json() for s in self.steps], "total_cost": str(self.total_cost)}


@dataclass
class _UsageState:
    calls: int = 0
    failures: int = 0
    paid: int = 0
    seq: int = 0


class _AnswerRefused(httpx2.StreamError):
    """Raised inside the SDK's read of an answer over the cap. A ``StreamError`` because that is
    what the SDK's JSON path catches: the pending request then fails with a JSON-RPC parse error
    (an ``MCPError``) at once, instead of the error tearing down the SDK's task group; the
    :class:`AnswerTooLarge` itself is kept on the transport for :class:`AgentClient` to raise."""


class _CappedStream(httpx2.AsyncByteStream):
    """An answer's body, counted as the SDK reads it; fails past the cap (or at once when a
    ``Content-Length`` over it was declared, or the body is compressed although this client asked
    for identity: a compressed body would be decoded past the cap in one read)."""

    def __init__(self, transport: "_CappedTransport", inner: Any, url: str, declared: int | None,
                 encoded: bool) -> None:
        self._transport, self._inner, self._url = transport, inner, url
        self._declared, self._encoded = declared, encoded

    def _refuse(self, size: int | None, declared: bool = False) -> _AnswerRefused:
        err = AnswerTooLarge(self._url, self._transport.limit, size, declared=declared)
        self._transport.refused = err
        return _AnswerRefused(err.message)

    async def __aiter__(self):
        limit = self._transport.limit
        if self._declared is not None and self._declared > limit:
            raise self._refuse(self._declared, declared=True)
        if self._encoded:
            raise self._refuse(None)
        n = 0
        async for chunk in self._inner:
            n += len(chunk)
            if n > limit:
                raise self._refuse(n)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedTransport(httpx2.AsyncBaseTransport):
    """The SDK's HTTP transport with every answer's body capped at ``limit`` bytes.

    The MCP SDK reads a JSON answer whole (``response.aread()``) and caps only each SSE event
    (``max_sse_event_size``), not an answer's total; its ``streamable_http_client`` takes an
    ``httpx2.AsyncClient``, and an httpx2 client takes a transport: that is where the cap goes,
    without forking the SDK. The total deadline is the SDK's ``read_timeout_seconds`` (an anyio
    deadline on the whole request, so a trickling provider cannot hold the call longer)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused: AnswerTooLarge | None = None   # the last answer refused, for the caller
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        response.stream = _CappedStream(self, response.stream, str(request.url),
                                        int(declared) if declared.isdigit() else None,
                                        encoding not in ("", "identity"))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class _Conn:
    client: Client
    stack: AsyncExitStack
    transport: _CappedTransport
    tools: dict[str, Any] = field(default_factory=dict)   # name -> mcp Tool
    verified: dict[str, ArgumentValidator] = field(default_factory=dict)  # name -> validator (schema CID ok)


class AgentClient:
    """Discover, pay for and call tools of the proofmesh network.

    ``chain.account`` pays. ``state_dir`` keeps the voucher wallet and the usage
    counters so a restarted agent never re-uses a nonce or rewinds a report.
    """

    def __init__(self, chain, *, state_dir: Path | None = None, scheme: str = SCHEME_VOUCHER,
                 deposit: int = 10**19, max_price: int | None = None, timeout_s: float = 10.0,
                 discovery_ttl_s: float = 30.0, usage_every: int = 16, max_answer_bytes: int | None = None) -> None:
        if scheme not in (SCHEME_VOUCHER, SCHEME_EXACT):
            raise InputError(f"unknown payment scheme {scheme!r}", fix="use 'voucher' or 'exact'")
        if deposit <= 0:
            raise InputError("channel deposit must be positive", fix="pass --deposit > 0")
        self.chain = chain
        self.account = chain.account
        self.address = to_checksum_address(self.account.address)
        self.scheme = scheme
        self.deposit = int(deposit)
        self.max_price = max_price
        self.timeout_s = timeout_s
        # A provider is any endpoint found on chain: its answers are capped (default: the chain's
        # home's http_max_answer_mb), and each request must be answered within timeout_s in all.
        self.max_answer_bytes = max_answer_bytes if max_answer_bytes is not None else \
            _default_answer_cap(chain)
        self.discovery_ttl_s = discovery_ttl_s
        # A usage report rides along with every ``usage_every``-th voucher to a tool (and
        # whenever a failure is new): reputation needs only the latest, signing each is waste.
        self.usage_every = max(1, int(usage_every))
        self._reported_at: dict[bytes, tuple[int, int]] = {}
        self._unsaved: set[bytes] = set()            # tools whose usage counters changed since journaled
        self.registry = ToolRegistry(chain)
        self.channels = PaymentChannels(chain)
        self.token = to_checksum_address(chain.contract("MeshToken").address)
        self.token_domain = token_domain(chain.chain_id, self.token)
        self.state_dir = state_dir
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        # Wallet records are written and fdatasynced by a group-commit thread off the call path
        # (write-behind, every 100 ms). If a crash loses the newest ones, the provider's refusal
        # carries the newest voucher it holds and the wallet resumes from it (_resync): losing
        # them costs the payer neither money nor the channel.
        self.wallet = Wallet(self.channels, self.account, state_dir / "wallet.json" if state_dir else None,
                             durability=DURABILITY_BEHIND, commit_interval_s=0.1)
        # usage counters: written to the OS per put (a process crash loses none), synced off the call
        # path at most once a second (an OS crash can only make this payer under-report)
        self._journal = Journal(state_dir / "usage.jsonl" if state_dir else None, DURABILITY_GROUP, 1.0,
                                legacy=lambda r: [(r["toolId"], r)], what="usage counters")
        self._usage: dict[bytes, _UsageState] = {
            bytes.fromhex(r["toolId"]): _UsageState(r["calls"], r["failures"], int(r["paid"]), r["seq"])
            for r in self._journal.records.values()}
        self._funded: dict[str, int] = {}            # provider -> deposit + paid of its channel, as last seen
        self._committed: dict[str, int] = {}         # provider -> cumulative signed so far
        self._channel: dict[str, bytes] = {}
        self._discovery: dict[str, tuple[float, list[ToolRecord]]] = {}
        self._conns: dict[str, _Conn] = {}
        self._lock = threading.Lock()

    # --- lifecycle --------------------------------------------------------------
    async def __aenter__(self) -> "AgentClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for url in reversed(list(self._conns)):   # anyio cancel scopes must exit LIFO
            await self._drop(url)
        with self._lock:
            for tool_id in list(self._unsaved):
                self._save_usage(tool_id, self._usage[tool_id])
        self._journal.close()
        self.wallet.close()

    # --- discovery --------------------------------------------------------------
    def discover(self, name: str, *, refresh: bool = False) -> list[ToolRecord]:
        """Active providers of tool ``name``, best reputation first (cached)."""
        hit = self._discovery.get(name)
        if hit and not refresh and time.monotonic() - hit[0] < self.discovery_ttl_s:
            return hit[1]
        found = self.registry.search(name=name)
        self._discovery[name] = (time.monotonic(), found)
        return found

    # --- calling ----------------------------------------------------------------
    async def call(self, name: str, args: dict[str, Any] | None = None, *, scheme: str | None = None,
                   max_price: int | None = None, provider: str | None = None) -> CallResult:
        """Call tool ``name`` with ``args`` on the best provider, falling back on failure."""
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise InputError("tool arguments must be a JSON object", fix='e.g. --args \'{"x": 1}\'')
        args_hash = json_hash(args)   # refuses non-JSON arguments before anything is signed
        scheme = scheme or self.scheme
        limit = self.max_price if max_price is None else max_price
        candidates = self.discover(name)
        if provider is not None:
            candidates = [t for t in candidates if t.provider.lower() == provider.lower()]
        if not candidates:
            raise InputError(f"no active provider offers tool {name!r}",
                             fix="list tools with `proofmesh agents tools --search ...`")
        failures: list[str] = []
        last_refusal: PaymentRequired | None = None
        unreachable: dict[bytes, str] = {}      # tool id -> endpoint that could not be reached
        tried: set[tuple[str, str]] = set()
        refreshed = False
        while True:
            for t in candidates:
                if (t.provider, t.endpoint) in tried:
                    continue
                tried.add((t.provider, t.endpoint))
                if scheme not in t.schemes:
                    failures.append(f"{t.provider}: does not accept {scheme}")
                    continue
                if limit is not None and t.price > limit:
                    failures.append(f"{t.provider}: price {t.price} above max {limit}")
                    continue
                try:
                    res = await self._call_one(t, args, scheme, args_hash)
                except InputError:
                    raise   # the caller's own problem: another provider would refuse it too
                except PaymentRequired as exc:
                    # e.g. a provider that changed its price or lost track of the channel:
                    # another provider has its own channel and terms
                    failures.append(f"{t.provider} ({t.endpoint}): {exc.message}")
                    last_refusal = exc
                    continue
                except ProviderUnreachable as exc:
                    unreachable[t.tool_id] = t.endpoint
                    failures.append(f"{t.provider} ({t.endpoint}): {exc.message}")
                    continue
                except ProofmeshError as exc:
                    failures.append(f"{t.provider} ({t.endpoint}): {exc.message}")
                    continue
                self._blame_unreachable(unreachable)
                return CallResult(**{**res.__dict__, "failed_providers": tuple(failures)})
            if refreshed or not unreachable:
                break
            # A cached record may be stale (a provider moved to a new endpoint): look again once.
            refreshed = True
            candidates = [t for t in self.discover(name, refresh=True)
                          if provider is None or t.provider.lower() == provider.lower()]
        self._blame_unreachable(unreachable)
        if last_refusal is not None and len(failures) == 1:
            raise last_refusal
        raise ToolCallFailed(f"every provider of {name!r} failed: " + " | ".join(failures),
                             fix="retry later, raise --max-price, or pick another tool")

    def _blame_unreachable(self, unreachable: dict[bytes, str]) -> None:
        # Count "offline" against a tool only if the chain still names the endpoint that failed;
        # a provider that moved and updated the registry is not at fault.
        current = {t.tool_id: t.endpoint for hit in self._discovery.values() for t in hit[1]}
        for tool_id, endpoint in unreachable.items():
            if current.get(tool_id) == endpoint:
                self._record(tool_id, failed=True)

    def call_sync(self, name: str, args: dict[str, Any] | None = None, **kw) -> CallResult:
        """Blocking :meth:`call` (for scripts and the CLI)."""
        async def go():
            try:
                return await self.call(name, args, **kw)
            finally:
                await self.aclose()
        return asyncio.run(go())

    async def workflow(self, steps: list[tuple[str, dict[str, Any] | Callable[[list[CallResult]], dict]]],
                       **kw) -> WorkflowResult:
        """Run tools in order; a step's args may be a function of the earlier results."""
        done: list[CallResult] = []
        for name, args in steps:
            a = args(done) if callable(args) else args
            done.append(await self.call(name, a, **kw))
        return WorkflowResult(done)

    # --- one provider -----------------------------------------------------------
    async def _conn(self, url: str) -> _Conn:
        conn = self._conns.get(url)
        if conn is None:
            stack = AsyncExitStack()
            transport = _CappedTransport(self.max_answer_bytes)
            try:
                # the SDK's default client, timeouts included (30 s, 300 s per read for a held
                # SSE stream), plus the capped transport; identity: the cap counts what is decoded
                http = await stack.enter_async_context(httpx2.AsyncClient(
                    transport=transport, timeout=httpx2.Timeout(30.0, read=300.0),
                    headers={"accept-encoding": "identity"}))
                client = await stack.enter_async_context(
                    Client(streamable_http_client(url, http_client=http), read_timeout_seconds=self.timeout_s))
                listed = await client.list_tools()
            except BaseException as exc:
                await stack.aclose()
                if transport.refused is not None:
                    raise transport.refused from None
                raise ProviderUnreachable(f"cannot connect to {url}: {_describe(exc)}",
                                          fix="the provider may be offline")
            conn = _Conn(client, stack, transport, {tool.name: tool for tool in listed.tools})
            self._conns[url] = conn
        return conn

    async def _drop(self, url: str) -> None:
        conn = self._conns.pop(url, None)
        if conn is not None:
            try:
                await conn.stack.aclose()
            except BaseException:  # a dead server cannot make closing fail the caller
                pass

    def _validator(self, conn: _Conn, t: ToolRecord) -> ArgumentValidator:
        v = conn.verified.get(t.name)
        if v is not None:
            return v
        tool = conn.tools.get(t.name)
        if tool is None:
            raise ProofmeshError(f"provider does not serve {t.name!r}", fix="it changed its tools; use another")
        from proofmesh.crypto.cid import cid_of_bytes
        doc = {"name": tool.name, "description": tool.description or "", "inputSchema": tool.input_schema}
        cid = cid_of_bytes(canonical_json(doc))
        if cid != t.schema_cid:
            raise VerificationError(f"served schema {cid} differs from the registered {t.schema_cid}",
                                    fix="the provider changed its tool without updating the registry")
        v = ArgumentValidator(tool.input_schema)
        conn.verified[t.name] = v
        return v

    async def _call_one(self, t: ToolRecord, args: dict, scheme: str, args_hash: bytes,
                        resynced: bool = False) -> CallResult:
        t0 = time.perf_counter()
        conn = await self._conn(t.endpoint)
        self._validator(conn, t).validate(args)       # InputError: not the provider's fault
        usage = self._usage.setdefault(t.tool_id, _UsageState())
        transaction = None
        if scheme == SCHEME_VOUCHER:
            voucher = self._voucher(t.provider, t.price)
            nonce = voucher.nonce
            payload = {"voucher": voucher.to_json()}
            if self._usage_due(t.tool_id, usage):
                payload["usage"] = self._signed_usage(t.tool_id, usage).to_json()
        else:
            # validity window in block time (what the token checks), not this machine's clock
            auth = Authorization.create(self.account, self.token_domain, t.provider, t.price,
                                        now=self.chain.timestamp())
            nonce = int.from_bytes(auth.nonce, "big")
            payload = auth.to_json()
        meta = {META_PAYMENT: payment_payload(scheme, self.chain.chain_id, payload)}
        conn.transport.refused = None
        try:
            result = await conn.client.call_tool(t.name, args, meta=meta)
        except MCPError as exc:
            if conn.transport.refused is not None:       # the answer was over the cap
                # a voucher went out with the request (as for a bad receipt): count it as paid
                self._record(t.tool_id, failed=True, paid=t.price if scheme == SCHEME_VOUCHER else 0)
                await self._drop(t.endpoint)
                raise conn.transport.refused from None
            if exc.code == PAYMENT_REQUIRED:
                latest = (exc.data or {}).get("latestVoucher") if isinstance(exc.data, dict) else None
                if scheme == SCHEME_VOUCHER and latest and not resynced and self._resync(t.provider, latest):
                    return await self._call_one(t, args, scheme, args_hash, resynced=True)
                # not counted against the tool: a refused payment may be this agent's fault
                reqs = [Requirement.from_json(r) for r in (exc.data or {}).get("accepts", [])]
                raise PaymentRequired(f"{t.provider} refused the payment: {exc.message}", reqs)
            if exc.code == INVALID_PARAMS:
                raise InputError(f"{t.name}: {exc.message}", fix="check the arguments against the tool's schema")
            self._record(t.tool_id, failed=True)
            raise ProofmeshError(f"MCP error {exc.code}: {exc.message}") from None
        except BaseException as exc:  # transport: connection refused, timeout, broken stream
            if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
                raise
            await self._drop(t.endpoint)
            raise ProviderUnreachable(f"call failed: {_describe(exc)}", fix="the provider may be offline") from None
        response = (result.meta or {}).get(META_RESPONSE) or {}
        value = (result.structured_content or {}).get("result") if isinstance(result.structured_content, dict) \
            else None
        try:
            receipt = Receipt.from_json(response.get("receipt") or {})
            self._check_receipt(receipt, t, args_hash, value, nonce, scheme, response)
        except VerificationError:
            self._record(t.tool_id, failed=True, paid=t.price if scheme == SCHEME_VOUCHER else 0)
            raise
        if scheme == SCHEME_EXACT:
            transaction = response.get("transaction")
        if result.is_error:
            self._record(t.tool_id, failed=True, paid=receipt.payment)
            raise ProofmeshError(f"tool {t.name} failed at {t.provider}: {value}")
        self._record(t.tool_id, failed=False, paid=receipt.payment)
        return CallResult(t.name, t.provider, t.endpoint, value, receipt.payment, scheme, receipt, transaction,
                          time.perf_counter() - t0)

    def _check_receipt(self, r: Receipt, t: ToolRecord, args_hash: bytes, value: Any, nonce: int, scheme: str,
                       response: dict) -> None:
        problems = []
        if r.tool_id != t.tool_id:
            problems.append("tool id")
        if r.args_hash != args_hash:
            problems.append("arguments hash")
        if r.result_hash != json_hash(value):
            problems.append("result hash")
        if r.payer.lower() != self.address.lower():
            problems.append("payer")
        if r.nonce != nonce:
            problems.append("nonce")
        if scheme == SCHEME_VOUCHER and r.payment != t.price:
            problems.append("payment")
        if problems:
            raise VerificationError(f"receipt does not match the call ({', '.join(problems)})",
                                    fix="do not trust this result")
        if not r.signed_by(self.registry.domain, t.provider):
            raise VerificationError(f"receipt signed by {r.signer(self.registry.domain)}, not the provider "
                                    f"{t.provider}", fix="do not trust this result")
        if scheme == SCHEME_EXACT and response.get("success") and not response.get("transaction"):
            raise VerificationError("exact payment reported without a transaction", fix="use another provider")

    # --- payment state ----------------------------------------------------------
    def _voucher(self, provider: str, price: int):
        # Funding and the cumulative owed are tracked here so the hot path makes no chain
        # call and no extra address normalisation; the Wallet stays the source of nonces.
        with self._lock:
            if provider not in self._funded:
                cid = self.wallet.ensure_channel(provider, max(self.deposit, price))
                st = self.channels.state(cid)
                self._funded[provider] = st.deposit + st.paid
                self._committed[provider] = self.wallet.committed(provider)
                self._channel[provider] = cid
            if self._committed[provider] + price > self._funded[provider]:
                top_up = max(self.deposit, price)
                self.channels.deposit(self._channel[provider], top_up, sender=self.account)
                self._funded[provider] += top_up
            v = self.wallet.pay(provider, price)
            self._committed[provider] = v.cumulative
            return v

    def _resync(self, provider: str, doc: dict) -> bool:
        """The provider holds a newer voucher of ours than the wallet remembers (its newest
        records were lost): resume from it if our own key signed it for this channel."""
        try:
            voucher = Voucher.from_json(doc)
        except ProofmeshError:
            return False
        with self._lock:
            if not self.wallet.resync(provider, voucher):
                return False
            self._committed[provider] = self.wallet.committed(provider)
            return True

    def _usage_due(self, tool_id: bytes, u: _UsageState) -> bool:
        last = self._reported_at.get(tool_id)
        return last is None or u.failures != last[1] or u.calls - last[0] >= self.usage_every

    def _signed_usage(self, tool_id: bytes, u: _UsageState) -> Usage:
        with self._lock:
            self._reported_at[tool_id] = (u.calls, u.failures)
            u.seq += 1
            self._save_usage(tool_id, u)
            return Usage(tool_id, self.address, u.calls, u.failures, u.paid, u.seq).signed(
                self.account, self.registry.domain)

    def _record(self, tool_id: bytes, *, failed: bool, paid: int = 0) -> None:
        with self._lock:
            u = self._usage.setdefault(tool_id, _UsageState())
            if failed:
                u.failures += 1
            else:
                u.calls += 1
            u.paid += paid
            # Counters are journaled with every signed report (each 16th call, each new failure) and
            # on close, not per call: a crash can only make this payer under-report its own usage.
            self._unsaved.add(tool_id)

    def usage_of(self, tool_id: bytes) -> dict[str, int]:
        u = self._usage.get(tool_id, _UsageState())
        return {"calls": u.calls, "failures": u.failures, "paid": u.paid, "seq": u.seq}

    def report_usage(self) -> int:
        """Submit this agent's latest usage of every tool it used on chain; returns the number sent."""
        sent = 0
        for tool_id, u in list(self._usage.items()):
            seq, calls, failures, paid = self.registry.usage_seq(tool_id, self.address)
            if (u.calls, u.failures, u.paid) == (calls, failures, paid):
                continue
            with self._lock:
                u.seq = max(u.seq, seq) + 1
                self._save_usage(tool_id, u)
                usage = Usage(tool_id, self.address, u.calls, u.failures, u.paid, u.seq).signed(
                    self.account, self.registry.domain)
            self.registry.report_usage(usage, sender=self.account)
            sent += 1
        return sent

    def _save_usage(self, tool_id: bytes, u: _UsageState) -> None:
        self._unsaved.discard(tool_id)
        self._journal.put(tool_id.hex(), {"toolId": tool_id.hex(), "calls": u.calls, "failures": u.failures,
                                          "paid": str(u.paid), "seq": u.seq})


def _default_answer_cap(chain: Any) -> int:
    """``http_max_answer_mb`` of the chain's home (the provider side reads its limits the same
    way), else of ``PROOFMESH_HOME``."""
    return max_answer_bytes(getattr(getattr(chain, "home", None), "settings", None))


def _describe(exc: BaseException) -> str:
    # anyio/mcp wrap transport errors in exception groups; name the innermost cause.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
