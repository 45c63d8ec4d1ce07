"""``python -m peer``: measure WhisperLiveKit on one WAV and write the JSON result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peer.paths import PeerUnavailable
from peer.run import run_peer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peer", description=__doc__)
    parser.add_argument("--audio", type=Path, required=True, help="16 kHz mono PCM16 WAV")
    parser.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument("--reference", type=Path, help="text file with the reference transcript")
    reference.add_argument("--reference-text", help="the reference transcript itself")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the server")
    parser.add_argument(
        "--min-chunk-size", type=float, help="WLK's flag, seconds (default: WLK's 0.1)"
    )
    parser.add_argument("--no-vac", action="store_true", help="turn off WLK's Silero VAC")
    parser.add_argument(
        "--no-offline",
        action="store_true",
        help="skip the offline pass (then no word clock: no per-word latency)",
    )
    parser.add_argument(
        "--max-drain",
        type=float,
        default=600.0,
        help="seconds to wait after the last frame for the peer to finish (default 600)",
    )
    parser.add_argument("--log-dir", type=Path, help="keep the server's log here")
    args = parser.parse_args(argv)

    text = args.reference_text
    if args.reference is not None:
        if not args.reference.is_file():
            parser.error(f"--reference {args.reference}: no such file")
        text = args.reference.read_text(encoding="utf-8").strip()
    try:
        result = run_peer(
            args.audio,
            text,
            threads=args.threads,
            min_chunk_size_s=args.min_chunk_size,
            vac=not args.no_vac,
            offline=not args.no_offline,
            log_dir=args.log_dir,
            max_drain_s=args.max_drain,
        )
    except ValueError as error:
        print(f"bad input: {error}", file=sys.stderr)
        return 2
    except PeerUnavailable as error:
        print(f"the peer cannot run: {error}", file=sys.stderr)
        return 3
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    latency = result["latency"]
    print(
        f"WER {result['wer']}  commit p50 {latency['word_commit_after_word_end']['p50']}  "
        f"p95 {latency['word_commit_after_word_end']['p95']}  "
        f"CPU-s/audio-s {result['cpu']['cpu_s_per_audio_s']:.3f}  -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
