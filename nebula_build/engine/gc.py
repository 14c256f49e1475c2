"""`nebula-build gc`: prune cache entries that no lock entry or declared image uses."""

from __future__ import annotations

from nebula_build.engine.prepare import Prepared
from nebula_build.state.lockfile import Entries


def collect(prepared: Prepared, lock: Entries, *, dry_run: bool = False) -> tuple[int, int]:
    """Remove unreferenced cache entries; returns (entries, bytes)."""
    keep = {entry.generation_key for entry in lock.values()}
    keep |= {spec.generation_key for spec in prepared.specs.values()}
    store = prepared.store
    removed = freed = 0
    for key in list(store.keys()):
        if key in keep:
            continue
        removed += 1
        freed += store.size(key) if dry_run else store.remove(key)
    if not dry_run:
        live_outputs = {entry.output_key for entry in lock.values()}
        live_outputs |= {spec.output_key for spec in prepared.specs.values()}
        for output_key in list(store.output_keys()):
            if output_key not in live_outputs:
                store.remove_output(output_key)
    return removed, freed
