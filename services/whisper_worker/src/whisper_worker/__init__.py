"""whisper_worker"""
