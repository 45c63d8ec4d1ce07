"""The real WhisperLiveKit server, real speech, real time: the runner end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from speech_corpus import item

from peer.__main__ import main
from peer.paths import PeerUnavailable, model_dir, require_peer

pytestmark = [pytest.mark.slow, pytest.mark.corpus]


@pytest.fixture
def peer_ready() -> None:
    try:
        require_peer()
        model_dir()
    except PeerUnavailable as error:
        pytest.skip(str(error))


@pytest.mark.usefixtures("peer_ready")
def test_jfk_end_to_end(tmp_path: Path) -> None:
    jfk = item("jfk")
    out = tmp_path / "peer.json"
    code = main(
        ["--audio", str(jfk.path), "--out", str(out), "--reference-text", jfk.text]
        + ["--log-dir", str(tmp_path)]
    )
    assert code == 0, (tmp_path / "whisperlivekit.log").read_text()[-3000:]
    result = json.loads(out.read_text())

    assert result["schema"] == "echostream.peer/1"
    assert result["wer"] <= 0.1, result["transcript"]
    assert result["offline"]["wer"] <= 0.1
    latency = result["latency"]
    assert latency["words_timed"] == latency["words_in_transcript"] >= 20
    words = result["words"]
    assert all(w["first_seen_t"] <= w["committed_t"] for w in words)
    assert all(0.0 < w["commit_latency_s"] < 30.0 for w in words)
    # words are committed in audio order
    assert [w["committed_t"] for w in words] == sorted(w["committed_t"] for w in words)
    assert 0.0 < latency["word_commit_after_word_end"]["p50"] < 15.0
    cpu = result["cpu"]
    assert cpu["server_cpu_s"] > 0.5
    assert math.isclose(
        cpu["cpu_s_per_audio_s"], cpu["server_cpu_s"] / jfk.duration_s, rel_tol=0.05
    )
    assert cpu["wall_s"] >= jfk.duration_s  # paced at real time
    assert result["system"]["server_env"]["HF_HUB_OFFLINE"] == "1"
    assert result["audio"]["max_send_lateness_s"] < 0.5
    lines = (tmp_path / "messages.jsonl").read_text().splitlines()
    assert len(lines) == result["messages"]["received"]
    assert json.loads(lines[-1])["msg"] == {"type": "ready_to_stop"}


@pytest.mark.usefixtures("peer_ready")
def test_a_peer_still_busy_after_max_drain_is_reported_not_waited_for(tmp_path: Path) -> None:
    jfk = item("jfk")
    out = tmp_path / "peer.json"
    args = ["--audio", str(jfk.path), "--out", str(out), "--reference-text", jfk.text]
    assert main([*args, "--max-drain", "0", "--no-offline"]) == 0
    result = json.loads(out.read_text())
    latency = result["latency"]
    assert latency["drained"] is False
    assert latency["drain_after_last_audio_s"] < 1.0
    assert result["offline"] is None
    assert latency["words_timed"] == 0  # no offline word clock
    # what it had committed when the runner stopped waiting, and nothing after that
    assert latency["words_in_transcript"] <= len(jfk.text.split())
    assert all(s["t"] <= result["cpu"]["wall_s"] for s in result["states"])
