"""EchoStream shared contracts."""

import os

# Thread pools that spin while they wait starve a shared core. Each service package imports this
# one first, so these are set before numpy, whisper.cpp or CTranslate2 load and read them.
# - OpenMP (whisper.cpp, CTranslate2): with another process on one of two cores, a 2-thread
#   whisper.cpp decode waited a scheduler slice at every barrier, 25 s instead of 2 s for 11 s of
#   audio; batched faster-whisper spent 0.055 CPU-s per audio-s passive against 0.114 active.
# - numpy's OpenBLAS runs small matrix products (the mel spectrogram, the VAD) on a thread per
#   core: in a faster-whisper worker at 8 streams its helper took 0.43 cores, more than both
#   decoders. Services run their parallel work themselves.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
