"""proofmesh resets the recursion limit py_ecc raises at import (see proofmesh/__init__.py):
C-recursive parsers such as the stdlib's json then raise RecursionError on absurdly nested
input instead of overflowing the C stack and killing the process."""

import subprocess
import sys

_PROBE = """
import sys, json, threading
import proofmesh
import eth_account, web3, eth            # py_ecc and py-evm, which both set the limit at import
from proofmesh.chain.embedded import EmbeddedChain   # noqa: F401
assert sys.getrecursionlimit() == proofmesh.RECURSION_LIMIT, sys.getrecursionlimit()
errors = []
def parse():
    try:
        json.loads("[" * 2_000_000)
    except RecursionError:
        errors.append("RecursionError")
parse()
t = threading.Thread(target=parse)
t.start()
t.join()
print(",".join(errors))
"""


def test_deeply_nested_json_raises_instead_of_crashing():
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    # a crash is a negative return code (SIGSEGV) and no output
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert run.stdout.strip() == "RecursionError,RecursionError"
