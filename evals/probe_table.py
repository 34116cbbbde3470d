"""One table from several ``cdlm probe`` result files: type survival under swap and nonce.

    python evals/probe_table.py evals/results/probe__*__*.json --out evals/results/probe_table

Writes OUT.json (the numbers and the files they came from) and OUT.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cdlm.provenance import stamp
from cdlm.results import write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for path in args.files:
        data = json.loads(path.read_text(encoding="utf-8"))
        row = {
            "domain": data["domain"],
            "variant": data["variant"],
            "sentences": data["sentences"],
            "entities": data["predicted_entities"],
            "file": str(path),
            "probe_command": data["provenance"]["command"],
            "probe_commit": data["provenance"]["commit"],
        }
        for mode in ("swap", "nonce"):
            row[mode] = data["modes"][mode]["overall"]["rate"]
        rows.append(row)
    lines = [
        "# Entity-bias probe: how often the predicted type survives a name change (%)",
        "",
        "swap = the name replaced by a same-type name from another sentence or domain; "
        "nonce = replaced by a made-up placeholder. Higher = the type comes from the context.",
        "",
        "| domain | variant | entities | swap | nonce |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['domain']} | {r['variant']} | {r['entities']} | {100 * r['swap']:.1f} "
            f"| {100 * r['nonce']:.1f} |"
        )
    prov = stamp()
    lines += ["", f"- command: `{prov['command']}`", f"- commit: `{prov['commit']}`"]
    write_results(
        args.out.with_suffix(".json"), {"rows": rows, "provenance": prov}, "\n".join(lines) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
