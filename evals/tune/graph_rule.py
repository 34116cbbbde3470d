"""What the label-graph rules give on the real source tagger (issue 14 item 2): for each target
entropy of Q's rows, the temperature it sets and the edges of the source graph (and of one
target graph) at the configured edge density.

    python evals/tune/graph_rule.py --target politics \
        --out evals/results/tune_graph_rule

Writes OUT.json and OUT.md. Needs the cached source model (trained first if missing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from cdlm.config import load_config
    from cdlm.data.registry import domain_labels, load_split
    from cdlm.experiments.train import pretrain_source
    from cdlm.graphs import (
        _q_sentences,
        build_graphs,
        label_distribution,
        mean_entropy,
    )
    from cdlm.provenance import stamp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="politics")
    ap.add_argument("--entropies", default="0.1,0.2,0.3,0.4,0.5")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = load_config(None, {})
    tagger, checkpoint, _, _ = pretrain_source(cfg, progress=False)
    assert tagger is not None
    src = _q_sentences(cfg, cfg.train.source, None)
    tgt = load_split(args.target, "train")
    src_probs = tagger.predict_proba([s.tokens for s in src])
    tgt_probs = tagger.predict_proba([s.tokens for s in tgt])
    src_gold, tgt_gold = [s.tags for s in src], [s.tags for s in tgt]
    s_tags, t_tags = list(tagger.labels), domain_labels(args.target)
    at_one = label_distribution(src_probs, src_gold, s_tags, len(s_tags), 1.0).matrix
    rows = []
    for target in [float(x) for x in args.entropies.split(",")]:
        g = build_graphs(
            src_probs,
            src_gold,
            tgt_probs,
            tgt_gold,
            source="conll2003",
            target=args.target,
            source_tags=s_tags,
            target_tags=t_tags,
            tau=None,
            theta=None,
            q_entropy=target,
            edge_density=cfg.fusion.edge_density,
        )
        rows.append(
            {
                "q_entropy": target,
                "tau": g.params["tau"],
                "p_entropy": mean_entropy(g.P),
                "theta_source": g.params["theta_source"],
                "theta_target": g.params["theta_target"],
                "source_edges": [(s_tags[a], s_tags[b], round(w, 3)) for a, b, w in g.source_edges],
                "target_edges": [(t_tags[a], t_tags[b], round(w, 3)) for a, b, w in g.target_edges],
            }
        )
    prov = stamp()
    result = {
        "target": args.target,
        "q_split": cfg.fusion.q_split,
        "q_sentences": len(src),
        "q_entropy_at_tau_1": mean_entropy(at_one),
        "edge_density": cfg.fusion.edge_density,
        "checkpoint": str(checkpoint),
        "rows": rows,
        "provenance": prov,
    }
    lines = [
        f"# Label-graph rules on the source tagger (conll2003 {cfg.fusion.q_split}, "
        f"{len(src)} sentences; target {args.target})",
        "",
        f"Mean normalised entropy of Q's rows at tau 1: {result['q_entropy_at_tau_1']:.3f}. "
        f"Edge density {cfg.fusion.edge_density} of all tag pairs per graph.",
        "",
        "| Q entropy | tau | P entropy | source edges | target edges (first 6) |",
        "|---:|---:|---:|---|---|",
    ]
    for r in rows:
        src_e = ", ".join(f"{a}-{b} {w}" for a, b, w in r["source_edges"])
        tgt_e = ", ".join(f"{a}-{b} {w}" for a, b, w in r["target_edges"][:6])
        lines.append(
            f"| {r['q_entropy']} | {r['tau']:.3g} | {r['p_entropy']:.3f} | {src_e} | {tgt_e} |"
        )
    lines += ["", f"- command: `{prov['command']}`", f"- commit: `{prov['commit']}`"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
