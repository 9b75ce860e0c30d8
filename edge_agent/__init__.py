"""Call-quality analysis at the agent's seat: the streaming pipeline, its events and their transport."""

import os

# The pipeline multiplies small matrices every 100 ms. A multi-threaded BLAS gains nothing on them, and its
# worker threads busy-wait between calls: measured, a whole core burnt next to 0.6 % of real work. The station
# shares one core with everything else, so BLAS runs in the calling thread unless the user says otherwise.
# (Must happen before numpy is first imported; every entry point imports this package first.)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
