"""What a durable journal costs: one journaled operation's store writes with synchronous=FULL vs NORMAL.

An operation as the engine records it (begin, three journal steps, finish: five commits) on a fresh store in
`directory`, the two settings interleaved round by round so that drift in the disk's speed hits both alike.
FULL fsyncs the WAL at every commit (a recorded step survives a power loss); NORMAL only at checkpoints.

Alone:  .venv/bin/python bench/journal.py [--operations N] [--dir DIR]
"""

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vmhost.store.sqlite import Store

STEPS = ("define", "created-paused", "resumed")
ROUNDS = 10
Mode = Literal["FULL", "NORMAL"]


@dataclass
class JournalResult:
    operations: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {"FULL": [], "NORMAL": []})
    """Per mode, seconds per operation, one value per round."""

    def median_ms(self, mode: Mode) -> float:
        return statistics.median(self.seconds[mode]) * 1000

    @property
    def ratio(self) -> float:
        return self.median_ms("FULL") / self.median_ms("NORMAL")

    def table_row(self, number: str = "7") -> list[str]:
        return [
            number,
            f"journaled operation's store writes, {self.operations} ops",
            f"FULL {self.median_ms('FULL'):.2f} ms",
            f"NORMAL {self.median_ms('NORMAL'):.2f} ms",
            f"FULL/NORMAL {self.ratio:.2f}",
            "report only",
            "-",
        ]

    def raw_line(self) -> tuple[str, str]:
        spread = ", ".join(
            f"{mode} min {min(values) * 1000:.2f} ms max {max(values) * 1000:.2f} ms"
            for mode, values in self.seconds.items()
        )
        return (f"7  journaled operation (5 commits), median of {ROUNDS} rounds", spread)


def _one_round(store: Store, operations: int) -> float:
    began = time.perf_counter()
    for index in range(operations):
        op = store.begin_operation(f"bench-{index}", None, "start")
        for step in STEPS:
            store.journal(op, step, note=step)
        store.finish_operation(op, "succeeded")
    return (time.perf_counter() - began) / operations


def bench_journal(directory: Path, operations: int = 50) -> JournalResult:
    """`directory` should be on the data dir's file system: fsync costs what that disk makes it cost."""
    result = JournalResult(operations)
    modes: tuple[Mode, ...] = ("FULL", "NORMAL")
    stores = {mode: Store(directory / f"journal-{mode.lower()}.db", synchronous=mode) for mode in modes}
    try:
        for store in stores.values():
            _one_round(store, 5)  # warm-up: schema, WAL file, page cache
        for _ in range(ROUNDS):
            for mode, store in stores.items():
                result.seconds[mode].append(_one_round(store, operations))
    finally:
        for store in stores.values():
            store.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--operations", type=int, default=50, help="operations per round (default 50)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where the stores go (default /var/tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vmhost-journal-", dir=args.dir) as directory:
        result = bench_journal(Path(directory), args.operations)
    print(" | ".join(result.table_row()))
    print("  ".join(result.raw_line()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
