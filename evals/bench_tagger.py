"""Tagger inference throughput next to the raw encoder forward pass, same run, same sentences.

    python evals/bench_tagger.py [--checkpoint runs/politics__baseline__seed1] [--domain politics]
        [--split test] [--repeats 3] [--threads N] [--out evals/results/bench_tagger.json]

Three measurements over the same sentences, in the same length-sorted batches of
``train.eval_batch_size``, interleaved ``--repeats`` times (the median is reported, so a burst of
load from other processes hits all three alike):

- ``encoder_forward``: the checkpoint's encoder on pre-tokenised, padded batches (pure forward);
- ``encoder_tokenize_forward``: the plain Hugging Face way, tokenizer + forward, truncating at
  ``encoder.max_pieces`` (it does not window, so it does slightly less work on long sentences);
- ``tagger``: ``Tagger.predict_tags`` — tokenising, windowing, forward, casing features, head,
  softmax and Viterbi decoding, i.e. everything ``cdlm eval`` times.

The target is ``tagger / encoder_tokenize_forward >= 0.8``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--domain", default="politics")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("evals/results/bench_tagger.json"))
    args = parser.parse_args()

    import torch

    from cdlm.data.registry import load_split
    from cdlm.inference.tagging import default_checkpoint
    from cdlm.model.encoder import encoder_label
    from cdlm.provenance import stamp
    from cdlm.results import write_results

    if args.threads:
        torch.set_num_threads(args.threads)
    from cdlm.model.tagger import Tagger

    checkpoint = args.checkpoint or default_checkpoint()
    model = Tagger.load(checkpoint)
    sentences = [list(s.tokens) for s in load_split(args.domain, args.split, args.data_dir)]
    size = model.config.train.eval_batch_size
    max_pieces = model.config.encoder.max_pieces
    order = sorted(sentences, key=len)
    batches = [order[k : k + size] for k in range(0, len(order), size)]
    tok = model.tokenizer

    def tokenize(batch: list[list[str]]):
        return tok(
            batch,
            is_split_into_words=True,
            padding=True,
            truncation=True,
            max_length=max_pieces,
            return_tensors="pt",
        )

    pretokenized = [tokenize(b) for b in batches]

    def encoder_forward() -> None:
        with torch.inference_mode():
            for enc in pretokenized:
                model.encoder(**enc)

    def encoder_tokenize_forward() -> None:
        with torch.inference_mode():
            for b in batches:
                model.encoder(**tokenize(b))

    def tagger() -> None:
        model.predict_tags(order, batch_size=size)

    runs = {
        "encoder_forward": encoder_forward,
        "encoder_tokenize_forward": encoder_tokenize_forward,
        "tagger": tagger,
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    tagger()  # warm-up (allocations, one-off initialisation)
    for r in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
        print(
            f"repeat {r + 1}/{args.repeats}: "
            + ", ".join(f"{name} {len(sentences) / seconds[name][-1]:.1f} sent/s" for name in runs)
        )

    speed = {name: len(sentences) / statistics.median(s) for name, s in seconds.items()}
    record = {
        "domain": args.domain,
        "split": args.split,
        "sentences": len(sentences),
        "words": sum(map(len, sentences)),
        "batch_size": size,
        "threads": torch.get_num_threads(),
        "checkpoint": str(checkpoint),
        "encoder": encoder_label(model.encoder_name),
        "sentences_per_s": speed,
        "seconds": seconds,
        "ratio_tagger_vs_tokenize_forward": speed["tagger"] / speed["encoder_tokenize_forward"],
        "ratio_tagger_vs_forward": speed["tagger"] / speed["encoder_forward"],
        "target_ratio": 0.8,
        "provenance": stamp(config=model.config.model_dump(mode="json")),
    }
    write_results(args.out, record)
    print(
        json.dumps(
            {
                k: record[k]
                for k in (
                    "sentences_per_s",
                    "ratio_tagger_vs_tokenize_forward",
                    "ratio_tagger_vs_forward",
                )
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
