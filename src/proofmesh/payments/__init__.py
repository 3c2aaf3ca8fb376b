"""Payment channels: pay per request off chain with signed cumulative vouchers,
settle many requests in one transaction.

Shared by ``inference`` (pay a node per answer) and ``agents`` (pay a tool per call).

- :mod:`proofmesh.payments.voucher` — the EIP-712 ``Voucher`` type, signing and recovery.
- :mod:`proofmesh.payments.channels` — the on-chain client (open, deposit, redeem,
  withdraw) plus the payer's :class:`Wallet` and the payee's :class:`Ledger` that keep
  the off-chain state of each channel.
"""

from proofmesh.payments.voucher import Voucher, VOUCHER_TYPES, voucher_domain, sign_voucher, recover_voucher
from proofmesh.payments.channels import (DURABILITY_BEHIND, DURABILITY_FSYNC, DURABILITY_GROUP, BooksUnwritable, ChannelState, Ledger,
                                         PaymentChannels, StaleVoucher, Wallet)

__all__ = ["Voucher", "VOUCHER_TYPES", "voucher_domain", "sign_voucher", "recover_voucher",
           "PaymentChannels", "ChannelState", "Wallet", "Ledger", "BooksUnwritable", "StaleVoucher",
           "DURABILITY_BEHIND", "DURABILITY_FSYNC",
           "DURABILITY_GROUP"]
