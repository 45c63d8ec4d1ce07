"""Unusable audio, a missing peer, a broken model directory, and peer errors: each a clear error."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from peer.__main__ import main
from peer.paths import PeerUnavailable, check_model_dir, require_peer
from peer.run import load_audio, run_peer_pcm, write_wav
from peer.stream import PeerProtocolError, state_of


def test_missing_wav(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        load_audio(tmp_path / "absent.wav")


def test_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        load_audio(path)


def test_wrong_rate(tmp_path: Path) -> None:
    path = tmp_path / "8k.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    with pytest.raises(ValueError, match="expected 16 kHz mono PCM16"):
        load_audio(path)


def test_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.int16))
    with pytest.raises(ValueError, match="no audio"):
        load_audio(path)


def test_samples_that_are_not_int16_mono() -> None:
    with pytest.raises(ValueError, match="1-D int16"):
        run_peer_pcm(np.zeros(16_000, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D int16"):
        run_peer_pcm(np.zeros((2, 16_000), dtype=np.int16))


def test_empty_reference_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "silence.wav"
    write_wav(wav, np.zeros(16_000, dtype=np.int16))
    reference = tmp_path / "ref.txt"
    reference.write_text(" ... \n")
    args = ["--audio", str(wav), "--out", str(tmp_path / "r.json"), "--reference", str(reference)]
    assert main(args) == 2
    assert "reference transcript is empty" in capsys.readouterr().err


def test_cli_reports_bad_audio_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    assert main(["--audio", str(tmp_path / "absent.wav"), "--out", str(out)]) == 2
    assert "bad input" in capsys.readouterr().err
    assert not out.exists()


def test_missing_peer_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ECHOSTREAM_PEER_VENV", str(tmp_path / "no-venv"))
    with pytest.raises(PeerUnavailable, match="make peer-install"):
        require_peer()
    wav = tmp_path / "tone.wav"
    write_wav(wav, np.zeros(16_000, dtype=np.int16))
    assert main(["--audio", str(wav), "--out", str(tmp_path / "r.json")]) == 3
    assert "make peer-install" in capsys.readouterr().err


def test_model_dir_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\0")
    with pytest.raises(PeerUnavailable, match="config.json, tokenizer.json, vocabulary.txt"):
        check_model_dir(tmp_path)


def test_peer_error_update_is_raised() -> None:
    with pytest.raises(PeerProtocolError, match="out of memory"):
        state_of({"status": "error", "error": "out of memory", "lines": []})


def test_update_without_lines_is_not_the_protocol() -> None:
    with pytest.raises(PeerProtocolError, match="'lines'"):
        state_of({"type": "something_else"})


def test_update_joins_committed_lines_and_skips_silence_lines() -> None:
    payload = {
        "status": "active_transcription",
        "lines": [
            {"speaker": 1, "text": " Hello there.", "start": "0:00:00.00", "end": "0:00:01.00"},
            {"speaker": -2, "text": "", "start": "0:00:01.00", "end": "0:00:03.00"},
            {"speaker": 1, "text": " Again.", "start": "0:00:03.00", "end": "0:00:04.00"},
        ],
        "buffer_transcription": " and more",
        "remaining_time_transcription": 1.5,
    }
    assert state_of(payload) == ("Hello there. Again.", "and more", 1.5)
