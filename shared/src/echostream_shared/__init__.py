"""EchoStream shared contracts."""

import os

# numpy's OpenBLAS runs small matrix products (the mel spectrogram, the VAD) on a thread per core,
# which then spin waiting for more: in a faster-whisper worker at 8 streams that thread took 0.43
# cores, more than both decoders. OpenBLAS reads this when numpy loads, so each service package
# imports this one first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
