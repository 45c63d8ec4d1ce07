"""faster-whisper (CTranslate2) streaming transcription worker."""
