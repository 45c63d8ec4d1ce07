"""``make bench``: latency, accuracy, CPU and capacity of the streaming workers, written to a report.

Run it as ``PYTHONPATH=tests python -m bench --out docs/bench`` (``--smoke`` for a short check).
The modules are named so that pytest does not collect them; the smoke test is
``tests/test_bench_smoke.py``.

Layout, so that a peer system (issue #8) plugs in beside the EchoStream worker:

* ``audio``: what is streamed: corpus utterances grouped into talks, laid out on one source;
* ``system``: the contract of a system under test (``StreamingSystem``) and what a pass returns;
* ``echostream``: the whisper worker on a real nats-server, fed by ``capture_sim``;
* ``offline``: the accuracy and CPU limit, the same model decoding each talk in one call;
* ``metrics``: latency, WER and CPU figures computed from any system's results;
* ``report``: ``REPORT.md``, the plots and the raw JSON;
* ``run``: the command line and the scenarios (main session, capacity ramp).
"""
