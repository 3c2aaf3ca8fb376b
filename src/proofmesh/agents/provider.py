"""A tool provider: serves Python functions as paid MCP tools (streamable HTTP).

Every ``tools/call`` goes through the same gate, in this order, and nothing is run or
charged before the previous step passed:

1. the tool exists and the arguments match its JSON schema (JSON-RPC ``-32602``
   otherwise — never charged);
2. a payment is attached in ``_meta["x402/payment"]`` (JSON-RPC ``402`` with the
   payment requirements otherwise);
3. ``voucher``: the payee :class:`~proofmesh.payments.Ledger` checks signer (native
   secp256k1), nonce, amount and deposit and records it *before* the tool runs, so the
   provider never serves an unpaid call and can never redeem more than was signed;
   ``exact``: the EIP-3009 authorization's signer, payee, value and validity window are
   checked before the tool runs and it is executed on chain after, and the result is
   released only if that transaction succeeded;
4. the tool runs; its result goes back with a signed EIP-712 ``Receipt``.

Later, :meth:`ToolProvider.settle` redeems the best voucher of every channel in one
transaction and submits the payers' latest signed ``Usage`` reports to the registry.
"""

from __future__ import annotations

import inspect
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from eth_utils import to_checksum_address
from mcp.server import Server
from mcp.shared.exceptions import MCPError

from proofmesh.agents.receipts import Receipt, Usage
from proofmesh.agents.registry import ToolRegistry, tool_id_of
from proofmesh.agents.schema import ArgumentValidator, ToolSpec, canonical_json, json_hash
from proofmesh.agents.x402 import (FLAG_DETERMINISTIC, META_PAYMENT, META_RESPONSE, PAYMENT_REQUIRED, SCHEME_EXACT,
                                   SCHEME_VOUCHER, Authorization, Requirement, payment_required_data,
                                   schemes_to_bits, token_domain)
from proofmesh.crypto.keccak import keccak256
from proofmesh.errors import InputError, ProofmeshError, VerificationError
from proofmesh.http_limits import HttpLimits
from proofmesh.payments import DURABILITY_GROUP, Ledger, PaymentChannels, StaleVoucher, Voucher
from proofmesh.store.journal import Journal

INVALID_PARAMS = -32602
# Group commit of the payment books: at most one fdatasync per this interval (each costs ~0.2-0.3 ms
# of CPU here); a strict-mode waiter gets its sync at once.
COMMIT_INTERVAL_S = 0.05


@dataclass
class PublishedTool:
    """A tool this provider serves, with its price and on-chain id."""

    spec: ToolSpec
    price: int
    tool_id: bytes
    validator: ArgumentValidator
    is_async: bool = False
    schema_cid: str = ""


@dataclass
class ProviderStats:
    served: int = 0
    failed: int = 0
    refused: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


class UsageBook:
    """Latest payer-signed Usage report per (tool, payer), journaled; highest ``seq`` wins."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        # synced at most once a second: losing the newest report to an OS crash leaves the one before
        self._journal = Journal(path, DURABILITY_GROUP, 1.0, what="usage reports",
                                legacy=lambda r: [(f"{r['toolId']}:{r['payer']}", r)])
        self.latest: dict[tuple[bytes, str], Usage] = {}
        for rec in self._journal.records.values():
            u = Usage.from_json(rec)
            self.latest[(u.tool_id, u.payer)] = u

    def offer(self, usage: Usage) -> bool:
        with self._lock:
            cur = self.latest.get((usage.tool_id, usage.payer))
            if cur is not None and cur.seq >= usage.seq:
                return False
            self.latest[(usage.tool_id, usage.payer)] = usage
            rec = usage.to_json()
            self._journal.put(f"{rec['toolId']}:{rec['payer']}", rec)
            return True

    def close(self) -> None:
        self._journal.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ToolProvider:
    """Serve tools over MCP with x402 payments, sign receipts, settle and report usage.

    ``chain`` is a :class:`proofmesh.chain.client.Chain` whose ``account`` is the
    provider (a staked TOOL_PROVIDER node); ``state_dir`` keeps the voucher ledger
    and usage reports so a restart can neither lose money nor accept a replay.
    """

    def __init__(self, chain, tools: list[ToolSpec], prices: dict[str, int] | int, *,
                 state_dir: Path | None = None, schemes: tuple[str, ...] = (SCHEME_VOUCHER, SCHEME_EXACT),
                 host: str = "127.0.0.1", port: int = 0, server_name: str = "proofmesh-tools",
                 strict_durability: bool = False, deterministic: bool = False,
                 limits: HttpLimits | None = None) -> None:
        if not tools:
            raise InputError("no tools to serve", fix="pass at least one module:function")
        self.chain = chain
        self.account = chain.account
        self.address = to_checksum_address(self.account.address)
        self.host = host
        self.port = port or free_port(host)
        # what one MCP client may send: body size (413 past it), connections (503 past them);
        # default: the settings of the chain's home (or of PROOFMESH_HOME)
        self.limits = limits or HttpLimits.from_settings(getattr(getattr(chain, "home", None), "settings", None))
        self.schemes = tuple(schemes)
        # Declaring the tools deterministic makes two receipts with equal arguments and different
        # results slashable (ToolRegistry.prove_fault): only for pure functions, errors included.
        self.schemes_bits = schemes_to_bits(self.schemes) | (FLAG_DETERMINISTIC if deterministic else 0)
        self.registry = ToolRegistry(chain)
        self.channels = PaymentChannels(chain)
        self.token = to_checksum_address(chain.contract("MeshToken").address)
        self.token_domain = token_domain(chain.chain_id, self.token)
        self.state_dir = state_dir
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        # Books: every accepted voucher is written to the OS before its call runs (a process crash
        # loses nothing) and fdatasynced by a group-commit thread off the request path. With
        # ``strict_durability`` a result is released only once its voucher is on disk (the sync
        # overlaps the tool run); without, an OS crash / power loss can lose the vouchers of the
        # sync in flight (~one fdatasync): revenue of those calls unless the payer pays again
        # (vouchers are cumulative), and the same number of replayable vouchers after restart.
        self.strict_durability = strict_durability
        self.ledger = Ledger(self.channels, self.address, state_dir / "vouchers.json" if state_dir else None,
                             durability=DURABILITY_GROUP, commit_interval_s=COMMIT_INTERVAL_S)
        self.usage = UsageBook(state_dir / "usage.jsonl" if state_dir else None)
        self.stats = ProviderStats()
        self._payers: dict[bytes, str] = {}
        # Chain writes from the server thread and settle() from another must not interleave nonces.
        self._chain_lock = threading.Lock()
        self.tools: dict[str, PublishedTool] = {}
        for spec in tools:
            if spec.name in self.tools:
                raise InputError(f"two tools named {spec.name!r}", fix="give each function its own --name")
            price = prices if isinstance(prices, int) else prices.get(spec.name)
            if price is None or price < 0:
                raise InputError(f"no price for tool {spec.name!r}", fix="pass --price (MESH per call)")
            self.tools[spec.name] = PublishedTool(spec, int(price), tool_id_of(self.address, spec.name),
                                                  ArgumentValidator(spec.input_schema),
                                                  inspect.iscoroutinefunction(spec.func))
        # Without get_tool_input_schema the SDK runs the whole tools/list handler on every
        # tools/call (to check Mcp-Param headers): ~0.3 ms of the per-call budget.
        self.server = Server(server_name, on_list_tools=self._list_tools, on_call_tool=self._call_tool,
                             get_tool_input_schema=self._input_schema)
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- endpoint ---------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def app(self):
        """The Starlette ASGI app (streamable HTTP, JSON responses) behind the body limit."""
        return self.limits.wrap(self.server.streamable_http_app(json_response=True, host=self.host))

    def _uvicorn_config(self, **kw: Any) -> uvicorn.Config:
        return uvicorn.Config(self.app(), host=self.host, port=self.port, log_level="warning",
                              **self.limits.uvicorn_options(), **kw)

    def start(self, timeout: float = 10.0) -> str:
        """Serve in a background thread; returns the endpoint once it accepts connections."""
        if self._thread is not None:
            return self.endpoint
        self._uvicorn = uvicorn.Server(self._uvicorn_config(lifespan="on"))
        self._thread = threading.Thread(target=self._uvicorn.run, name=f"mcp-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ProofmeshError(f"MCP server on {self.endpoint} did not start",
                                     fix="pick another --port or check that the host is local")
            time.sleep(0.01)
        return self.endpoint

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._uvicorn = None
        self.close()

    def close(self) -> None:
        """Close the books: a clean stop leaves every accepted voucher on disk, and gives the
        state directory's journals back (their locks) to the next owner."""
        try:
            self.ledger.close()
        finally:
            self.usage.close()

    def serve_forever(self) -> None:
        """Serve in the foreground (the CLI); returns on Ctrl-C."""
        try:
            uvicorn.Server(self._uvicorn_config()).run()
        finally:
            self.close()

    def __enter__(self) -> "ToolProvider":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- on chain ---------------------------------------------------------------
    def publish(self, store=None, endpoint: str | None = None) -> dict[str, bytes]:
        """Put every schema in the blob store (a ``BlobStore``; by CID) and register or update the
        tools on chain. Without a store the CID is still computed and registered."""
        from proofmesh.crypto.cid import cid_of_bytes
        out = {}
        for t in self.tools.values():
            data = t.spec.schema_bytes()
            t.schema_cid = store.put_bytes(data) if store is not None else cid_of_bytes(data)
            ep = endpoint or self.endpoint
            with self._chain_lock:
                existing = self.chain.call(self.registry.contract.functions.tools(t.tool_id))
                if int(existing[0], 16) == 0:
                    self.registry.register(t.spec.name, t.schema_cid, ep, t.price, self.schemes_bits,
                                           sender=self.account)
                elif not existing[6]:
                    raise InputError(f"tool {t.spec.name!r} was retired by this provider",
                                     fix="publish it under a new --name")
                else:
                    self.registry.update(t.tool_id, t.schema_cid, ep, t.price, self.schemes_bits, sender=self.account)
            out[t.spec.name] = t.tool_id
        return out

    def settle(self) -> dict[str, int]:
        """Redeem every channel's best voucher in one transaction, then report usage."""
        with self._chain_lock:
            return settle_books(self.registry, self.ledger, self.usage, self.account)

    # --- MCP handlers -----------------------------------------------------------
    def requirements(self, t: PublishedTool) -> list[Requirement]:
        out = []
        for scheme in self.schemes:
            contract = self.channels.address if scheme == SCHEME_VOUCHER else self.token
            out.append(Requirement(scheme=scheme, chain_id=self.chain.chain_id, amount=t.price, pay_to=self.address,
                                   asset=self.token, tool=t.spec.name, tool_id=t.tool_id, contract=contract,
                                   registry=self.registry.address))
        return out

    def _input_schema(self, name: str) -> dict | None:
        t = self.tools.get(name)
        return t.spec.input_schema if t is not None else None

    async def _list_tools(self, ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=t.spec.name, description=t.spec.description, input_schema=t.spec.input_schema,
                       meta={"x402/accepts": [r.to_json() for r in self.requirements(t)]})
            for t in self.tools.values()])

    def _refuse(self, t: PublishedTool, reason: str, message: str, latest: Voucher | None = None) -> MCPError:
        self.stats.refuse(reason)
        data = payment_required_data(self.requirements(t), message)
        if latest is not None:
            # The newest voucher this provider holds on the channel, signed by the payer: a payer
            # whose wallet lost its newest records resumes from it (Wallet.resync).
            data["latestVoucher"] = latest.to_json()
        return MCPError(PAYMENT_REQUIRED, message, data)

    async def _call_tool(self, ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        t = self.tools.get(params.name)
        if t is None:
            self.stats.refuse("unknown_tool")
            raise MCPError(INVALID_PARAMS, f"unknown tool {params.name!r}",
                           {"tools": sorted(self.tools)})
        args = params.arguments or {}
        problems = t.validator.errors(args)
        if problems:
            self.stats.refuse("schema")
            raise MCPError(INVALID_PARAMS, "arguments do not match the tool's schema: " + "; ".join(problems),
                           {"errors": problems, "inputSchema": t.spec.input_schema})
        meta = params.meta or {}
        if not isinstance(meta, dict):
            meta = meta.model_dump(by_alias=True)
        payment = meta.get(META_PAYMENT)
        if not isinstance(payment, dict):
            raise self._refuse(t, "unpaid", f"payment required: {t.price} MESH wei per call")
        scheme = payment.get("scheme")
        if scheme not in self.schemes:
            raise self._refuse(t, "scheme", f"payment scheme {scheme!r} not accepted")
        if payment.get("network") != f"eip155:{self.chain.chain_id}":
            raise self._refuse(t, "network", f"payment for network {payment.get('network')!r}, "
                                             f"this tool is paid on eip155:{self.chain.chain_id}")
        payload = payment.get("payload")
        if not isinstance(payload, dict):
            raise self._refuse(t, "malformed", "payment payload must be a JSON object")
        if scheme == SCHEME_VOUCHER:
            return await self._call_with_voucher(t, args, payload)
        return await self._call_with_exact(t, args, payload)

    async def _call_with_voucher(self, t: PublishedTool, args: dict, payload: dict) -> types.CallToolResult:
        try:
            voucher = Voucher.from_json(payload["voucher"])
            if voucher.conditional:
                raise VerificationError("conditional vouchers are not accepted for tool calls",
                                        fix="send an unconditional voucher")
            # Checks signer, nonce, amount and deposit; records it only if all pass.
            self.ledger.accept(voucher, t.price)
            mark = self.ledger.mark()
            payer = self._payer_of(voucher.channel)
        except (KeyError, TypeError) as exc:
            raise self._refuse(t, "malformed", f"malformed voucher payment: {exc!r}") from exc
        except StaleVoucher as exc:
            raise self._refuse(t, "voucher", f"voucher refused: {exc.message}", exc.latest) from exc
        except ProofmeshError as exc:
            raise self._refuse(t, "voucher", f"voucher refused: {exc.message}") from exc
        usage_doc = payload.get("usage")
        if usage_doc is not None:
            # A bad usage report does not make the call unpaid; it is just not kept.
            try:
                usage = Usage.from_json(usage_doc)
                if usage.tool_id == t.tool_id and usage.payer.lower() == payer.lower() and \
                        usage.signer(self.registry.domain) == payer:
                    self.usage.offer(usage)
            except ProofmeshError:
                self.stats.by_reason["bad_usage"] = self.stats.by_reason.get("bad_usage", 0) + 1
        return await self._run(t, args, payer, voucher.nonce, scheme=SCHEME_VOUCHER, mark=mark)

    def _payer_of(self, channel: bytes) -> str:
        # The ledger has just checked the voucher against this channel's on-chain payer;
        # cache it so the hot path makes no chain call.
        payer = self._payers.get(channel)
        if payer is None:
            payer = to_checksum_address(self.channels.state(channel).payer)
            self._payers[channel] = payer
        return payer

    async def _call_with_exact(self, t: PublishedTool, args: dict, payload: dict) -> types.CallToolResult:
        try:
            auth = Authorization.from_json(payload)
            # The token checks the window against block time, which on dev chains can run ahead.
            now = await anyio.to_thread.run_sync(self.chain.timestamp)
            if auth.to != self.address:
                raise VerificationError(f"authorization pays {auth.to}, not this provider {self.address}")
            if auth.value < t.price:
                raise VerificationError(f"authorization for {auth.value} is below the price {t.price}")
            if not (auth.valid_after < now < auth.valid_before):
                raise VerificationError("authorization is outside its validity window")
            if auth.signer(self.token_domain) != auth.sender:
                raise VerificationError("authorization is not signed by its 'from' address")
        except ProofmeshError as exc:
            raise self._refuse(t, "exact", f"exact payment refused: {exc.message}") from exc
        return await self._run(t, args, auth.sender, int.from_bytes(auth.nonce, "big"), scheme=SCHEME_EXACT,
                               auth=auth)

    async def _run(self, t: PublishedTool, args: dict, payer: str, nonce: int, *, scheme: str,
                   auth: Authorization | None = None, mark: int = 0) -> types.CallToolResult:
        failed = False
        try:
            if t.is_async:
                value = await t.spec.func(**args)
            else:
                value = await anyio.to_thread.run_sync(lambda: t.spec.func(**args))
            encoded = canonical_json(value)
        except Exception as exc:  # the tool's own failure: reported to the caller, counted as a failure
            failed = True
            value = {"error": f"{type(exc).__name__}: {exc}"}
            encoded = canonical_json(value)
        text = encoded.decode()
        response: dict[str, Any] = {"success": not failed, "scheme": scheme}
        if auth is not None:
            if failed:
                # Not settled: an exact payment is executed only for a served call.
                response["payment"] = "not settled (tool failed)"
                payment = 0
            else:
                try:
                    rcpt = await anyio.to_thread.run_sync(self._settle_exact_locked, t.tool_id, auth)
                except ProofmeshError as exc:
                    raise self._refuse(t, "settle", f"exact payment did not settle: {exc.message}") from exc
                response["transaction"] = rcpt.tx_hash
                payment = auth.value
        else:
            payment = t.price
        receipt = Receipt(t.tool_id, json_hash(args), keccak256(encoded), payer, payment, nonce)
        response["receipt"] = receipt.signed(self.account, self.registry.domain).to_json()
        if self.strict_durability and mark and not self.ledger.durable(mark):
            try:
                await anyio.to_thread.run_sync(self.ledger.wait_durable, mark)
            except ProofmeshError as exc:
                raise self._refuse(t, "books", f"voucher could not be recorded: {exc.message}") from exc
        if failed:
            self.stats.failed += 1
        else:
            self.stats.served += 1
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structured_content={"result": value}, is_error=failed,
                                    meta={META_RESPONSE: response})

    def _settle_exact_locked(self, tool_id: bytes, auth: Authorization):
        with self._chain_lock:
            return self.registry.settle_exact(tool_id, auth, sender=self.account)



def settle_books(registry: ToolRegistry, ledger: Ledger, usage: UsageBook, account) -> dict[str, int]:
    """Redeem the best voucher of every channel (one transaction per 64 channels), then submit
    each payer's latest usage report that the chain has not seen yet."""
    redeemed = ledger.settle(sender=account)
    reported = skipped = 0
    for u in list(usage.latest.values()):
        seq, *_ = registry.usage_seq(u.tool_id, u.payer)
        if u.seq <= seq:
            continue
        try:
            registry.report_usage(u, sender=account)
            reported += 1
        except ProofmeshError:
            # e.g. paid value not (yet) backed by settled payments; the payer can still report it
            skipped += 1
    return {"redeemed": redeemed, "usage_reported": reported, "usage_skipped": skipped}


def settle_from_state(chain, state_dir: Path) -> dict[str, int]:
    """Settle from a provider's persisted books (``proofmesh agents settle``)."""
    if not (state_dir / "vouchers.json").exists() and not (state_dir / "usage.jsonl").exists():
        raise InputError(f"no provider state in {state_dir}", fix="publish tools and serve paid calls first")
    ledger = Ledger(PaymentChannels(chain), chain.account.address, state_dir / "vouchers.json")
    try:
        usage = UsageBook(state_dir / "usage.jsonl")
        try:
            return settle_books(ToolRegistry(chain), ledger, usage, chain.account)
        finally:
            usage.close()
    finally:
        ledger.close()
