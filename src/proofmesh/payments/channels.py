"""Payment channels: the on-chain client and the two off-chain books.

- :class:`PaymentChannels` wraps the ``PaymentChannels`` contract (open, deposit,
  redeem, redeem_batch, request_withdrawal, withdraw).
- :class:`Wallet` is the payer's side: one channel per payee, signs the next
  cumulative voucher for each paid request, holds back conditional amounts until
  released.
- :class:`Ledger` is the payee's side: checks every incoming voucher (signer,
  nonce, amount, deposit) before the request is served, keeps the best voucher per
  channel, and settles all channels in one ``redeem_batch`` transaction.

Conditional payments (a zk answer paid only once its proof is delivered): the payer
signs a voucher whose ``condition`` the oracle contract must confirm on chain. Each
condition is its own lane on chain (audit M4): the voucher's ``cumulative`` counts
only that condition's payments and is never added to the unconditional total, so
redeeming later unconditional vouchers cannot void it, and the payee redeems it
(batched with the rest) once the oracle confirms the condition. The payer's
:meth:`Wallet.release` / :meth:`Wallet.forfeit` only close its own books.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from eth_utils import to_checksum_address

from proofmesh.errors import InputError, VerificationError
from proofmesh.store.journal import DURABILITY_BEHIND, DURABILITY_FSYNC, DURABILITY_GROUP, Journal
from proofmesh.payments.voucher import (ZERO_ADDRESS, ZERO_BYTES32, Voucher, checksum, recover_voucher_bytes,
                                        sign_voucher, voucher_domain)

CONTRACT = "PaymentChannels"


@dataclass(frozen=True)
class ChannelState:
    """A channel as the contract stores it."""

    channel: bytes
    payer: str
    payee: str
    deposit: int
    paid: int
    nonce: int
    unlock_at: int
    open: bool


class PaymentChannels:
    """Typed client of the PaymentChannels contract."""

    def __init__(self, chain) -> None:
        self.chain = chain
        self.contract = chain.contract(CONTRACT)
        self.address = to_checksum_address(self.contract.address)
        self.domain = voucher_domain(chain.chain_id, self.address)

    # --- views ---------------------------------------------------------------
    def channel_id(self, payer: str, payee: str) -> bytes:
        return bytes(self.chain.call(self.contract.functions.channel_id(
            to_checksum_address(payer), to_checksum_address(payee))))

    def state(self, channel: bytes) -> ChannelState:
        payer, payee, deposit, paid, nonce, unlock_at, is_open = self.chain.call(
            self.contract.functions.channels(channel))
        return ChannelState(bytes(channel), payer, payee, deposit, paid, nonce, unlock_at, is_open)

    def lane_paid(self, channel: bytes, condition: bytes) -> int:
        """What a conditional lane of ``channel`` has redeemed so far."""
        return self.chain.call(self.contract.functions.lane_paid(channel, condition))

    def withdraw_delay(self) -> int:
        return self.chain.call(self.contract.functions.withdraw_delay())

    # --- writes --------------------------------------------------------------
    def _sender(self, sender):
        return sender or self.chain.account

    def _check_funds(self, sender, amount: int) -> None:
        token = self.chain.contract("MeshToken")
        balance = self.chain.call(token.functions.balanceOf(sender.address))
        if balance < amount:
            raise InputError(f"{sender.address} holds {balance} MESH wei, needs {amount} for the channel",
                             fix="fund the payer account or deposit less")
        allowance = self.chain.call(token.functions.allowance(sender.address, self.address))
        if allowance < amount:
            self.chain.transact(token.functions.approve(self.address, amount), sender=sender)

    def open(self, payee: str, amount: int, sender=None) -> bytes:
        """Open a channel from ``sender`` to ``payee`` with ``amount`` MESH wei; returns its id."""
        sender = self._sender(sender)
        if amount <= 0:
            raise InputError("channel deposit must be positive", fix="pass an amount > 0 (MESH wei)")
        cid = self.channel_id(sender.address, payee)
        if self.state(cid).open:
            raise InputError(f"a channel from {sender.address} to {payee} is already open",
                             fix="deposit into it instead of opening another")
        self._check_funds(sender, amount)
        self.chain.transact(self.contract.functions.open(to_checksum_address(payee), amount), sender=sender)
        return cid

    def deposit(self, channel: bytes, amount: int, sender=None) -> None:
        sender = self._sender(sender)
        if amount <= 0:
            raise InputError("deposit must be positive", fix="pass an amount > 0 (MESH wei)")
        self._check_funds(sender, amount)
        self.chain.transact(self.contract.functions.deposit(channel, amount), sender=sender)

    def _already(self, v: Voucher) -> int:
        # what the voucher's lane has redeemed: the channel's unconditional total, or its condition's lane
        return self.lane_paid(v.channel, v.condition) if v.conditional else self.state(v.channel).paid

    def redeem(self, voucher: Voucher, sender=None) -> int:
        """Redeem one voucher (the payee calls); returns the amount paid."""
        before = self._already(voucher)
        self.chain.transact(self.contract.functions.redeem(*voucher.as_args()), sender=self._sender(sender))
        return voucher.cumulative - before

    def redeem_batch(self, vouchers: list[Voucher], sender=None) -> int:
        """Redeem up to 64 vouchers (one unconditional per channel, any conditional lanes) in
        one transaction; returns the total paid."""
        if not vouchers:
            return 0
        if len(vouchers) > 64:
            raise InputError(f"{len(vouchers)} vouchers in one batch; the contract takes at most 64",
                             fix="split the batch")
        before = sum(self._already(v) for v in vouchers)
        self.chain.transact(self.contract.functions.redeem_batch([v.as_args() for v in vouchers]),
                            sender=self._sender(sender))
        return sum(v.cumulative for v in vouchers) - before

    def request_withdrawal(self, channel: bytes, sender=None) -> int:
        """Start the withdrawal delay; returns the unlock timestamp."""
        self.chain.transact(self.contract.functions.request_withdrawal(channel), sender=self._sender(sender))
        return self.state(channel).unlock_at

    def cancel_withdrawal(self, channel: bytes, sender=None) -> None:
        self.chain.transact(self.contract.functions.cancel_withdrawal(channel), sender=self._sender(sender))

    def withdraw(self, channel: bytes, sender=None) -> int:
        """Refund the unclaimed deposit after the delay and close the channel; returns the refund."""
        deposit = self.state(channel).deposit
        self.chain.transact(self.contract.functions.withdraw(channel), sender=self._sender(sender))
        return deposit


class StaleVoucher(VerificationError):
    """A voucher whose nonce is not above the newest one the payee accepted (replay, or a
    payer wallet that lost its newest records); ``latest`` is that newest voucher."""

    def __init__(self, message: str, latest: "Voucher | None" = None, *, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.latest = latest


class BooksUnwritable(VerificationError):
    """The payment books could not be made durable (disk error): no further voucher is accepted."""


def _whole_books(obj):
    # the books' first format: one JSON object of every book, rewritten per update
    return obj.items() if isinstance(obj, dict) else ()


def _books_journal(path: Path, durability: str, commit_interval_s: float) -> Journal:
    return Journal(path, durability, commit_interval_s, legacy=_whole_books, error=BooksUnwritable,
                   what="payment books")


class _JournaledBooks:
    """Durability marks shared by both sides' books (``_journal`` is None for books in RAM).

    In group or write-behind mode: take ``mark()`` right after ``pay``/``accept``, then ask
    ``durable(mark)`` or block in ``wait_durable(mark)`` before relying on the record.
    """

    _journal: "Journal | None"

    def mark(self) -> int:
        return self._journal.written if self._journal is not None else 0

    def durable(self, mark: int) -> bool:
        return self._journal is None or self._journal.durable(mark)

    def wait_durable(self, mark: int) -> None:
        if self._journal is not None:
            self._journal.wait_durable(mark)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


@dataclass
class _PayerChannel:
    channel: bytes
    payee: str
    committed: int = 0                 # unconditional cumulative owed
    nonce: int = 0                     # last nonce signed
    pending: dict[str, int] = field(default_factory=dict)  # condition hex -> amount held back


class Wallet(_JournaledBooks):
    """The payer's off-chain books: one channel per payee, next voucher per request.

    State is persisted (``path``, an fsynced append-only journal) after every voucher
    so a restarted payer never re-uses a nonce or forgets what it already promised.
    """

    def __init__(self, channels: PaymentChannels, account, path: Path | None = None, *,
                 durability: str = DURABILITY_FSYNC, commit_interval_s: float = 0.0) -> None:
        self.channels = channels
        self.account = account
        self.path = path
        self._lock = threading.Lock()
        self._books: dict[str, _PayerChannel] = {}
        self._journal = _books_journal(path, durability, commit_interval_s) if path is not None else None
        if self._journal is not None:
            for payee, b in self._journal.records.items():
                self._books[payee] = _PayerChannel(bytes.fromhex(b["channel"]), payee, int(b["committed"]),
                                                   int(b["nonce"]), {k: int(v) for k, v in b["pending"].items()})

    def _save(self, payee: str) -> None:
        if self._journal is None:
            return
        b = self._books[payee]
        self._journal.put(payee, {"channel": b.channel.hex(), "committed": str(b.committed), "nonce": b.nonce,
                                  "pending": {k: str(v) for k, v in b.pending.items()}})

    def ensure_channel(self, payee: str, deposit: int) -> bytes:
        """The open channel to ``payee``, opening it with ``deposit`` if there is none."""
        payee = to_checksum_address(payee)
        with self._lock:
            cid = self.channels.channel_id(self.account.address, payee)
            st = self.channels.state(cid)
            if not st.open:
                self.channels.open(payee, deposit, sender=self.account)
                st = self.channels.state(cid)
            book = self._books.get(payee)
            if book is None or book.channel != cid:
                # a fresh channel (or one we lost track of): resume from what the chain knows
                book = _PayerChannel(cid, payee, committed=st.paid, nonce=st.nonce)
                self._books[payee] = book
                self._save(payee)
            return cid

    def resync(self, payee: str, voucher: Voucher) -> bool:
        """Resume from ``voucher`` if this wallet's own key signed it for the channel to ``payee``
        and it is newer than what the wallet remembers (its newest records were lost, e.g. by an
        OS crash, while the payee kept them). Adopting it is safe: it only states what this
        payer already signed. Returns whether the wallet moved forward."""
        payee = checksum(payee)
        with self._lock:
            book = self._books.get(payee)
            if book is None or voucher.channel != book.channel or voucher.conditional:
                return False
            try:
                signer = recover_voucher_bytes(self.channels.domain, voucher)
            except VerificationError:
                return False
            if signer.hex() != self.account.address[2:].lower() or voucher.nonce <= book.nonce:
                return False
            book.nonce = voucher.nonce
            book.committed = max(book.committed, int(voucher.cumulative))
            self._save(payee)
            return True

    def channel_of(self, payee: str) -> bytes | None:
        b = self._books.get(to_checksum_address(payee))
        return b.channel if b else None

    def pay(self, payee: str, amount: int, *, oracle: str = ZERO_ADDRESS,
            condition: bytes = ZERO_BYTES32) -> Voucher:
        """Sign the next voucher adding ``amount`` for ``payee`` (conditional if ``condition``)."""
        payee = checksum(payee)
        if amount < 0:
            raise InputError("payment amount must be >= 0", fix="pass a non-negative price")
        with self._lock:
            book = self._books.get(payee)
            if book is None:
                raise InputError(f"no channel to {payee}", fix="call ensure_channel(payee, deposit) first")
            if self._journal is not None:
                self._journal.check()          # never sign what the books cannot keep
            book.nonce += 1
            if condition != ZERO_BYTES32:
                # its own lane: cumulative over this condition only (audit M4)
                lane = book.pending.get(condition.hex(), 0) + amount
                v = Voucher(book.channel, lane, book.nonce, oracle, condition)
                book.pending[condition.hex()] = lane
            else:
                v = Voucher(book.channel, book.committed + amount, book.nonce, oracle, condition)
                book.committed += amount
            self._save(payee)
        return sign_voucher(self.account, self.channels.domain, v)

    def release(self, payee: str, condition: bytes) -> int:
        """The condition was met (e.g. proof checked): close it in our books. The payee is
        paid by the conditional voucher itself, on its own lane, once the oracle confirms
        it on chain; the amount is *not* added to later unconditional vouchers (that
        would pay it twice)."""
        payee = to_checksum_address(payee)
        with self._lock:
            book = self._books[payee]
            amount = book.pending.pop(condition.hex(), None)
            if amount is None:
                raise InputError(f"no pending conditional payment {condition.hex()} to {payee}",
                                 fix="release only conditions you paid with pay(..., condition=...)")
            self._save(payee)
            return amount

    def forfeit(self, payee: str, condition: bytes) -> int:
        """The condition failed (e.g. proof missing/invalid): its voucher can never be
        redeemed (the oracle never confirms it); drop it from our books."""
        with self._lock:
            return self._books[to_checksum_address(payee)].pending.pop(condition.hex(), 0)

    def committed(self, payee: str) -> int:
        return self._books[to_checksum_address(payee)].committed


@dataclass
class _PayeeChannel:
    channel: bytes
    payer: str
    owed: int                      # unconditional cumulative the payer owes us
    nonce: int                     # highest nonce accepted
    deposit: int                   # cached on-chain deposit
    paid: int                      # cached on-chain paid
    best: Voucher | None = None    # highest unconditional voucher accepted
    conditional: dict[str, tuple[Voucher, int]] = field(default_factory=dict)  # cond hex -> (voucher, price)


class Ledger(_JournaledBooks):
    """The payee's off-chain books: accept a request only with a voucher that pays for it.

    ``accept`` checks the signer (the channel's payer, recovered with the native
    secp256k1 backend), the nonce (strictly above every accepted one), the amount
    (cumulative covers everything owed plus this price) and the deposit (cached;
    refreshed from the chain only when a voucher seems to exceed it).
    """

    def __init__(self, channels: PaymentChannels, payee: str, path: Path | None = None, *,
                 durability: str = DURABILITY_FSYNC, commit_interval_s: float = 0.0) -> None:
        self.channels = channels
        self.payee = to_checksum_address(payee)
        self.path = path
        self._lock = threading.Lock()
        self._books: dict[bytes, _PayeeChannel] = {}
        self._journal = _books_journal(path, durability, commit_interval_s) if path is not None else None
        if self._journal is not None:
            self._load()

    def _load(self) -> None:
        for cid_hex, b in self._journal.records.items():
            best = Voucher.from_json(b["best"]) if b.get("best") else None
            cond = {k: (Voucher.from_json(v), int(p)) for k, (v, p) in b.get("conditional", {}).items()}
            self._books[bytes.fromhex(cid_hex)] = _PayeeChannel(bytes.fromhex(cid_hex), b["payer"], int(b["owed"]),
                                                                int(b["nonce"]), int(b["deposit"]), int(b["paid"]),
                                                                best, cond)

    def _save(self, channel: bytes) -> None:
        if self._journal is None:
            return
        b = self._books[channel]
        self._journal.put(channel.hex(), {
            "payer": b.payer, "owed": str(b.owed), "nonce": b.nonce, "deposit": str(b.deposit),
            "paid": str(b.paid), "best": b.best.to_json() if b.best else None,
            "conditional": {k: [v.to_json(), str(p)] for k, (v, p) in b.conditional.items()}})

    def _book(self, channel: bytes) -> _PayeeChannel:
        b = self._books.get(channel)
        if b is None:
            st = self.channels.state(channel)
            if not st.open:
                raise VerificationError("payment channel is not open", fix="open a channel to this node first")
            if to_checksum_address(st.payee) != self.payee:
                raise VerificationError(f"payment channel pays {st.payee}, not this node {self.payee}",
                                        fix="open a channel to this node's address")
            b = _PayeeChannel(channel, to_checksum_address(st.payer), st.paid, st.nonce, st.deposit, st.paid)
            self._books[channel] = b
        return b

    def check_channel(self, channel: bytes) -> str:
        """The payer of ``channel`` if it is open and pays this payee; VerificationError otherwise."""
        with self._lock:
            return self._book(channel).payer

    def accept(self, voucher: Voucher, price: int) -> int:
        """Check ``voucher`` pays ``price`` on top of what is owed; record it. Returns the new
        total owed on the unconditional lane.

        An unconditional voucher must cover everything owed plus ``price`` with a nonce
        above every accepted one; a conditional voucher opens its condition's own lane
        with at least ``price``. Either way everything promised (the unconditional total
        and every lane not yet redeemed) must fit the channel's deposit. Raises
        VerificationError (nothing recorded) when the voucher is forged, replayed, too
        small or exceeds the deposit.
        """
        with self._lock:
            if self._journal is not None:
                self._journal.check()          # fail-stop: never accept what the books cannot keep
            b = self._book(voucher.channel)
            signer = recover_voucher_bytes(self.channels.domain, voucher)
            if signer.hex() != b.payer[2:].lower():
                raise VerificationError(f"voucher signed by {checksum('0x' + signer.hex())}, not the channel's "
                                        f"payer {b.payer}", fix="sign vouchers with the payer's key")
            lanes = sum(v.cumulative for v, _ in b.conditional.values())
            if voucher.conditional:
                if voucher.condition.hex() in b.conditional:
                    raise VerificationError("a voucher for this condition was already accepted (replay)",
                                            fix="condition each zk payment on its own receipt")
                if voucher.cumulative < price:
                    raise VerificationError(f"conditional voucher for {voucher.cumulative} does not cover the "
                                            f"price {price}", fix="sign the zk answer's price on its own lane")
                promised = b.owed - b.paid + lanes + voucher.cumulative
            else:
                if voucher.nonce <= b.nonce:
                    raise StaleVoucher(f"voucher nonce {voucher.nonce} is not above {b.nonce} (replay or stale)",
                                       b.best if b.best is not None and b.best.nonce == b.nonce else None,
                                       fix="sign a new voucher with the next nonce")
                if voucher.cumulative < b.owed + price:
                    raise VerificationError(
                        f"voucher for {voucher.cumulative} does not cover {b.owed} owed + price {price}",
                        fix="sign a voucher whose cumulative includes every unconditional payment and this price")
                promised = voucher.cumulative - b.paid + lanes
            if promised > b.deposit:
                st = self.channels.state(voucher.channel)   # the payer may have topped up
                promised += b.paid - st.paid
                b.deposit, b.paid = st.deposit, st.paid
                if not st.open or promised > b.deposit:
                    raise VerificationError(
                        f"voucher for {voucher.cumulative} exceeds the channel deposit ({b.deposit} left; "
                        f"{promised} promised in all, conditional lanes included)",
                        fix="deposit more into the channel")
            if voucher.conditional:
                b.conditional[voucher.condition.hex()] = (voucher, price)
            else:
                b.nonce = voucher.nonce
                b.owed = voucher.cumulative
                b.best = voucher
            self._save(voucher.channel)
            return b.owed

    def owed(self, channel: bytes) -> int:
        return self._books[channel].owed

    def unsettled(self) -> int:
        """Total accepted but not yet redeemed on chain (unconditional vouchers only)."""
        return sum((b.best.cumulative - b.paid) for b in self._books.values() if b.best and b.best.cumulative > b.paid)

    def settle(self, sender=None, oracle_check=None) -> int:
        """Redeem, in one transaction per 64 vouchers, the best unconditional voucher of
        every channel and every conditional lane whose condition is met; returns the
        total paid.

        ``oracle_check(voucher) -> bool`` decides whether a conditional voucher is
        redeemable now (default: ask its oracle contract on chain).
        """
        with self._lock:
            picks: list[Voucher] = []
            for b in self._books.values():
                st = self.channels.state(b.channel)
                b.deposit, b.paid = st.deposit, st.paid
                if not st.open:
                    continue
                room = st.deposit
                if b.best and b.best.nonce > st.nonce and st.paid < b.best.cumulative <= st.paid + room:
                    picks.append(b.best)
                    room -= b.best.cumulative - st.paid
                for v, _ in b.conditional.values():
                    if v.cumulative <= room and (oracle_check(v) if oracle_check else self._condition_met(v)):
                        picks.append(v)
                        room -= v.cumulative
            if not picks:
                return 0
            total = 0
            for i in range(0, len(picks), 64):
                total += self.channels.redeem_batch(picks[i:i + 64], sender=sender)
            for v in picks:
                b = self._books[v.channel]
                if v.conditional:
                    b.deposit -= v.cumulative
                    del b.conditional[v.condition.hex()]
                else:
                    b.deposit -= v.cumulative - b.paid
                    b.paid = v.cumulative
                self._save(v.channel)
            return total

    def _condition_met(self, v: Voucher) -> bool:
        abi = [{"name": "is_fulfilled", "type": "function", "stateMutability": "view",
                "inputs": [{"name": "condition", "type": "bytes32"}], "outputs": [{"name": "", "type": "bool"}]}]
        try:
            c = self.channels.chain.w3.eth.contract(address=v.oracle, abi=abi)
            return bool(c.functions.is_fulfilled(v.condition).call())
        except Exception:  # an oracle that reverts or does not exist fulfils nothing
            return False

