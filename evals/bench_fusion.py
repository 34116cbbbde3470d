"""Training-step time of the GCN fusion variant against the baseline, measured in one run.

Both models start from the same cached source tagger, see the same politics batches and take
full training steps (forward, loss incl. the fusion's GW and auxiliary losses, backward,
optimizer step). Steps alternate baseline / gcn so that load from other processes hits both
alike; the reported figure is the ratio of median step times.

    python evals/bench_fusion.py [--target politics] [--steps 40] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path


def main() -> None:
    import torch

    from cdlm.config import VARIANTS, load_config
    from cdlm.data.registry import domain_labels, load_split
    from cdlm.experiments.loop import batches, make_optimizer, set_seed
    from cdlm.experiments.train import pretrain_source, target_graphs
    from cdlm.model.tagger import Tagger
    from cdlm.provenance import stamp
    from cdlm.results import write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="politics")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("evals/results/bench_fusion.json"))
    args = parser.parse_args()

    configs = {
        v: load_config(overrides={**VARIANTS[v], "train.target": args.target, "train.variant": v})
        for v in ("baseline", "gcn")
    }
    source, source_dir, _, _ = pretrain_source(configs["baseline"], progress=False)
    labels = domain_labels(args.target)
    train_sents = load_split(args.target, "train")
    models, optims = {}, {}
    for variant, cfg in configs.items():
        set_seed(1)
        graphs = target_graphs(cfg, source, source_dir, train_sents, None)  # None: no fusion
        model = Tagger.from_source(cfg, labels, source, graphs=graphs)
        model.train()
        models[variant] = model
        optims[variant] = make_optimizer(
            model, cfg, max((args.steps + args.warmup) // cfg.train.target_epochs, 1)
        )
    chunks = list(batches(train_sents, configs["baseline"].train.batch_size, random.Random(1)))
    times: dict[str, list[float]] = {v: [] for v in models}
    for step in range(args.steps + args.warmup):
        chunk = chunks[step % len(chunks)]
        for variant, model in models.items():
            optimizer, scheduler = optims[variant]
            batch = model.builder([s.tokens for s in chunk], [s.tags for s in chunk])
            start = time.perf_counter()
            out = model(batch)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if step >= args.warmup:
                times[variant].append(time.perf_counter() - start)
    median = {v: statistics.median(t) for v, t in times.items()}
    fusion_params = sum(p.numel() for p in models["gcn"].fusion.parameters())
    result = {
        "target": args.target,
        "steps": args.steps,
        "batch_size": configs["baseline"].train.batch_size,
        "median_step_s": median,
        "mean_step_s": {v: statistics.fmean(t) for v, t in times.items()},
        "ratio_gcn_to_baseline": median["gcn"] / median["baseline"],
        "fusion_parameters": fusion_params,
        "torch_threads": torch.get_num_threads(),
        "source_checkpoint": str(source_dir),
        "provenance": stamp(config=configs["gcn"].model_dump(mode="json")),
    }
    write_results(args.out, result)
    print(
        f"median step: baseline {median['baseline']:.3f}s, gcn {median['gcn']:.3f}s, "
        f"ratio {result['ratio_gcn_to_baseline']:.2f}x ({args.steps} steps) -> {args.out}"
    )


if __name__ == "__main__":
    main()
