"""faster-whisper (CTranslate2) streaming transcription worker."""

import os

import echostream_shared  # noqa: F401  (one BLAS thread: set before numpy loads)

# The model is a local directory, validated at start-up: nothing may ever reach the Hugging Face
# hub (faster-whisper downloads whatever is not a path). huggingface_hub reads this on import.
os.environ["HF_HUB_OFFLINE"] = "1"
