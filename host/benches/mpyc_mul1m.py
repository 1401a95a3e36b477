"""The BASELINES "mul-1M" workload on MPyC, for `parley bench mpc --mpyc-python PY`.

3 local parties (`-M3`, Shamir t = 1, semi-honest). Party 0 inputs a_i = (i mod 1000) + 1,
party 1 inputs b_i = (i mod 997) + 2. Timed after input sharing: T1 is one vectorised
multiplication of N elements with the sum opened; T2 is N/1000 - 1 dependent rounds of
acc <- acc * b[chunk] (chunks of 1000) with the sum opened. Party 0 prints one JSON line.

Our own benchmark script; MPyC is only imported as a library.
"""
import json
import sys
import time

import numpy as np
from mpyc.runtime import mpc

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
CHUNK = 1000


async def main():
    await mpc.start()
    secint = mpc.SecInt(64)
    idx = np.arange(N, dtype=np.int64)
    a_plain = (idx % 1000) + 1 if mpc.pid == 0 else np.zeros(N, dtype=np.int64)
    b_plain = (idx % 997) + 2 if mpc.pid == 1 else np.zeros(N, dtype=np.int64)
    a = mpc.input(secint.array(a_plain), senders=0)
    b = mpc.input(secint.array(b_plain), senders=1)
    await mpc.barrier("inputs shared")

    t0 = time.perf_counter()
    s1 = await mpc.output(mpc.np_sum(a * b))
    t1 = time.perf_counter() - t0

    t0 = time.perf_counter()
    acc = a[:CHUNK]
    for k in range(1, N // CHUNK):
        acc = acc * b[k * CHUNK:(k + 1) * CHUNK]
    await mpc.output(mpc.np_sum(acc))
    t2 = time.perf_counter() - t0
    await mpc.shutdown()
    if mpc.pid == 0:
        print(json.dumps({
            "n": N,
            "t1_seconds": t1,
            "t1_mults_per_s": N / t1,
            "t1_checksum": int(s1),
            "t2_seconds": t2,
            "t2_mults_per_s": (N - CHUNK) / t2,
        }), flush=True)


if __name__ == "__main__":
    mpc.run(main())
