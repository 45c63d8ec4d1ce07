"""``make bench``: latency, accuracy, CPU, stability and capacity of the whole system, beside a peer.

Run it as ``PYTHONPATH=tests:. python -m bench --out docs/bench`` (``--smoke`` for a short check).
The modules are named so that pytest does not collect them; the smoke test is
``tests/test_bench_smoke.py``.

Layout:

* ``audio``: what is streamed: corpus utterances grouped into talks, laid out on one source;
* ``system``: the contract of a system under test (``StreamingSystem``) and what a pass returns;
* ``native``: the whole system started as ``make run`` starts it, fed through the native protocol;
* ``peer_pass``: WhisperLiveKit on the same audio (``tests/peer``), summarized like our passes;
* ``stability``: the share of shown partial text later retracted, for any system;
* ``offline``: the accuracy and CPU limit, the same model decoding each talk in one call;
* ``metrics``: latency, WER and CPU figures computed from any system's results;
* ``report``: ``REPORT.md``, the plots and the raw JSON;
* ``run``: the command line and the scenarios (main and long-form sessions, capacity ramps, peer).
"""
