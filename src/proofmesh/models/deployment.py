"""Contracts of the models capability, deployed after the core contracts.

ModelRegistry has no dependencies. ModelEvaluation reads versions from it, draws
evaluators from NodeRegistry and pays honest evaluators from the Emission EVALUATION pool
(pool 5). Neither bonds stake, so neither is a NodeRegistry domain. The compute capability, deployed after this one, authorises its
JobMarket with ``ModelRegistry.set_registrar(job_market, True)`` in its own ``after`` hook.
"""

from proofmesh.chain.deploy import ContractSpec

ATTEST_WINDOW = 3 * 86400        # seconds drawn evaluators have to attest
MAX_DEVIATION_BPS = 500          # an attestation > 5% from the median is an outlier...
MIN_DEVIATION = 1_000            # ...unless within 0.001 (fixed-point 6 decimals) of it
EVAL_REWARD = 5 * 10**18         # MESH per attestation near the median

CONTRACTS = [
    ContractSpec(name="ModelRegistry"),
    ContractSpec(name="ModelEvaluation",
                 args=lambda book: [book["ModelRegistry"], book["NodeRegistry"], book["Emission"], ATTEST_WINDOW,
                                    MAX_DEVIATION_BPS, MIN_DEVIATION, EVAL_REWARD],
                 pools=[5]),
]
