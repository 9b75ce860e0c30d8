"""Call-quality analysis at the agent's seat: the streaming pipeline, its events and their transport."""

import os

# The pipeline multiplies small matrices every 100 ms. A multi-threaded BLAS gains nothing on them, and its
# worker threads busy-wait between calls: measured, a whole core burnt next to 0.6 % of real work. The station
# shares one core with everything else, so BLAS runs in the calling thread unless the user says otherwise.
# (Must happen before numpy is first imported; every entry point imports this package first.)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# onnxruntime (1.32 seen) keeps a device id and a telemetry store under ~/.cache/Microsoft/DeveloperTools from its
# first session on, for usage events it may send: a seat must neither phone home nor write files beside its audio
# path (tests/test_capture.py traces that). It reads this when first imported, so it is set here, before any of
# our modules imports it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
