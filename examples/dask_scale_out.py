"""Scale out on Dask: the parallel engine runs its tasks on a Dask cluster.

The parallel engine takes any ``concurrent.futures.Executor``. A Dask
client gives one (``client.get_executor()``), whose calls run on the
cluster's workers: other processes here, other machines in production.
The engine stays in this process: it decides what runs when, keeps the
results and reverts on failure, as with threads.

A ``distributed.LocalCluster`` of two worker processes stands in for a real
cluster (``Client("tcp://scheduler:8786")``). Six independent tiles of an
image are rendered at once on the workers; a last task stitches them.

Tasks defined in a script (``__main__``) are sent to the workers by value;
in production keep them in a module installed on the workers.

Needs the ``dask`` extra (``pip install -e '.[dask]'``). Run it with::

    python examples/dask_scale_out.py
"""

from __future__ import annotations

import os

try:
    from distributed import Client, LocalCluster
except ImportError:  # the base install has no Dask: say which extra, not a traceback
    raise SystemExit("dask_scale_out.py needs Dask: pip install -e '.[dask]'") from None

from flowkit import engines, task
from flowkit.patterns import linear_flow, unordered_flow

TILES = 6


class RenderTile(task.Task):
    """CPU work on one tile; returns what it made and the process that made it."""

    def execute(self, tile: int) -> dict[str, int]:
        checksum = sum((tile * 7919 + i) % 251 for i in range(200_000))
        return {"tile": tile, "checksum": checksum, "pid": os.getpid()}


class Stitch(task.Task):
    def execute(self, **tiles: dict[str, int]) -> int:
        # The symbols named by ``requires`` arrive as keyword arguments.
        return sum(tile["checksum"] for tile in tiles.values())


def make_flow() -> linear_flow.Flow:
    tiles = unordered_flow.Flow("tiles")  # independent: all may run at once
    for i in range(TILES):
        tiles.add(RenderTile(f"render_{i}", provides=f"tile_{i}", inject={"tile": i}))
    stitch = Stitch("stitch", provides="image", requires=[f"tile_{i}" for i in range(TILES)])
    return linear_flow.Flow("render").add(tiles, stitch)


def main() -> None:
    # Two worker processes of one thread each; no dashboard (no port to pick).
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        workers = set(client.run(os.getpid).values())  # each worker's PID
        print(f"cluster of {len(workers)} worker processes")
        engine = engines.load(make_flow(), engine="parallel", executor=client.get_executor())
        engine.run()
        results = engine.storage.fetch_all()
        ran_in = {results[f"tile_{i}"]["pid"] for i in range(TILES)}
        print(f"{TILES} tiles rendered on the cluster's workers: {ran_in <= workers}")
        print(f"none rendered in this process: {os.getpid() not in ran_in}")
        print(f"image checksum: {results['image']}")
        print(f"final flow state: {engine.storage.get_flow_state()}")


if __name__ == "__main__":  # worker processes import this file: start the cluster only here
    main()
