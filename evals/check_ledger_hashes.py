"""Every run recorded in a committed suite ledger must keep its run hash.

    python evals/check_ledger_hashes.py

A ledger record (:mod:`cdlm.experiments.ledger`) is reused only while its run's config hashes as
it did when the run was recorded; a config change that moves a hash makes suites train again
(or drop their recorded runs). For each suite file under ``evals/`` whose ledger folder exists,
this hashes every planned run that has a record from today's config and compares. A ledger
file no suite plans is reported as unchecked. Exit status 1 when a hash changed or a record
went unchecked.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from cdlm.errors import ConfigError
from cdlm.experiments.ledger import entry_path, read_entry
from cdlm.experiments.suite import SuiteSpec, ledger_dir, load_suite, planned_runs, run_config
from cdlm.runs import config_hash

REPO = Path(__file__).resolve().parents[1]


class LedgerCheck(NamedTuple):
    checked: int  # ledger files whose hash was recomputed (once or more)
    compared: int  # (suite, record) hashes recomputed: a ledger may serve several suites
    changed: list[str]  # "<suite>: <record>: <recorded> -> <today>"
    unchecked: list[str]  # ledger files no suite plans


def suites(root: Path) -> Iterator[tuple[Path, SuiteSpec, Path]]:
    """(suite file, spec, ledger folder) of every suite under ``root/evals`` with a ledger."""
    for path in sorted((root / "evals").rglob("*.toml")):
        try:
            spec = load_suite(path)
        except ConfigError:  # a TOML file that is not a suite
            continue
        ledger = root / ledger_dir(spec)
        if ledger.is_dir():
            yield path, spec, ledger


def check(root: Path = REPO) -> LedgerCheck:
    """Recompute the hash of every recorded run of every suite with a committed ledger."""
    seen: set[Path] = set()
    ledgers: set[Path] = set()
    changed = []
    compared = 0
    for path, spec, ledger in suites(root):
        ledgers.add(ledger)
        for variant, domain, seed in planned_runs(spec):
            entry = read_entry(ledger, variant, domain, seed)
            if entry is None:
                continue
            record = entry_path(ledger, variant, domain, seed)
            seen.add(record)
            compared += 1
            today = config_hash(run_config(spec, variant, domain, seed))
            if today != entry.config_hash:
                changed.append(f"{path.name}: {record.name}: {entry.config_hash} -> {today}")
    files = {f for ledger in ledgers for f in ledger.glob("*.json")}
    unchecked = sorted(str(f.relative_to(root)) for f in files - seen)
    return LedgerCheck(len(seen), compared, changed, unchecked)


def main() -> int:
    result = check(REPO)
    for line in result.changed:
        print(f"changed: {line}")
    for name in result.unchecked:
        print(f"unchecked (no suite plans it): {name}")
    print(
        f"{result.checked} ledger records checked ({result.compared} suite runs), "
        f"{len(result.changed)} hashes changed, {len(result.unchecked)} unchecked"
    )
    return 1 if result.changed or result.unchecked else 0


if __name__ == "__main__":
    sys.exit(main())
