"""Distributed runs on Ray: the driver plans and owns the store; workers run shards of episodes.

``[run] executor = "ray"`` (or ``esc-eval run --ray ADDRESS``) runs a plan with a
``DistributedRunner`` instead of a ``Runner``:

* The **driver** (the ``esc-eval run`` process) plans the episode keys, skips those the store has
  finished, and deals the rest round-robin into one shard per worker. It is the only process that
  touches the store: it writes every record the workers send back, in order, with the store's
  single writer, and keeps the ``RunProgress`` the monitor shows (with a row per worker).
* Each **worker** is a Ray actor (``EpisodeWorker``) running the same asyncio ``Runner`` on its
  shard, with the same backends, turn policy, detectors and judge, and the per-endpoint limits
  divided among the workers (``split_limits``). Instead of a store it writes into a
  ``RecordSink``, which keeps the store calls (``start``, ``turn``, ``end``, ``score``, ``event``)
  as records. The driver polls ``drain()`` every ``poll_interval`` seconds and receives a
  ``Batch``: the records since the last poll, the keys completed since then (ended and, with a
  judge, every score recorded), and the worker's counters.
* **Fault tolerance**: when a worker dies (process killed, node lost), its next ``drain()`` raises
  ``RayActorError``. Every key of its shard it did not report complete goes to a fresh worker in
  its slot (at most ``max_replacements`` times per slot); the monitor shows it as ``w0 running (1 lost)``. The new attempt's ``start`` record wipes
  the partial turns and scores the dead one left (``Store.start_episode``), and turns and scores are
  keyed ``INSERT OR REPLACE``, so each episode is in the store exactly once. If the driver dies,
  ``esc-eval run ... --resume`` continues as on one machine.

Example::

    plan = RunPlan.prepare(config)
    store = Store.create(path, config=config.to_dict(), fingerprint=plan.fingerprint())
    result = await DistributedRunner(plan, store, address="local", workers=2).run()

Ray is an optional dependency (``pip install "esc-eval[ray]"``); this module imports it lazily.
"""

from esc_eval.runs.distributed.executor import DistributedError, DistributedRunner, connect
from esc_eval.runs.distributed.shards import deal, split_limits
from esc_eval.runs.distributed.sink import Batch, RecordSink, Rejudge
from esc_eval.runs.distributed.worker import EpisodeWorker

__all__ = ["Batch", "DistributedError", "DistributedRunner", "EpisodeWorker", "RecordSink", "Rejudge", "connect", "deal",
           "split_limits"]
