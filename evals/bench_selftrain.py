"""Speed of self-training's labelling pass: the teacher over a pool of synthetic sentences.

    python evals/bench_selftrain.py [--checkpoint DIR] [--sentences 2000] [--min-words 10]
        [--max-words 60] [--repeats 2] [--threads 1 2] [--out evals/results/bench_selftrain.json]

The pool is ``--sentences`` seeded random sentences of ``--min-words`` to ``--max-words`` words
(CrossNER sentences are long: politics averages about 40 tokens), written as a ``.txt`` pool and
read by :func:`cdlm.experiments.selftrain.read_pool`. Each repeat labels the whole pool into a
fresh pseudo-label file with :func:`~cdlm.experiments.selftrain.label_pool` (the tagger's
batched probability path, length-sorted batches bounded by ``predict.max_padding``, every
record written and synced), once per ``--threads`` value in turn; the median per thread count
is reported, with the time a finished file takes to read back (a resumed run) and the
10,000-sentence figure extrapolated (the goal is 5 minutes on two cores). The load average is
recorded: on a shared machine it says how busy the cores were (there, one torch thread is often
faster than two: ``train.threads``).

Without ``--checkpoint`` the tiny checkpoint of the tests is built first (the synthetic corpus
of tests/synthetic.py, 3 epochs, no source pre-training); its encoder is the embedded MiniLM,
so its speed is any MiniLM checkpoint's (accuracy does not enter).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = tuple(
    " ".join(
        [
            "the of and in to a was for on as by with from at his her their that which after",
            "during government party election minister president parliament vote campaign",
            "policy reform coalition opposition committee council senate leader member elected",
            "served announced Angela Merkel Emmanuel Macron Labour Party Bundestag France",
            "Germany Paris Berlin NATO United Nations Cold War 2019 , . ( ) ' s",
        ]
    ).split(" ")
)


def synthetic_pool(path: Path, n: int, low: int, high: int, seed: int) -> None:
    """``n`` seeded sentences of ``low``..``high`` words, one a line."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choices(WORDS, k=rng.randint(low, high))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def tiny_checkpoint(folder: Path) -> Path:
    """The tests' tiny politics tagger (tests/conftest.py ``tiny_checkpoint``)."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import write_synthetic

    from cdlm.config import load_config
    from cdlm.experiments.train import train

    data = write_synthetic(folder / "data")
    config = load_config(
        None,
        {
            "train.target": "politics",
            "train.source_epochs": 0,
            "train.target_epochs": 3,
            "train.batch_size": 8,
            "train.head_lr": 3e-3,
            "train.threads": 1,
        },
    )
    out = folder / "politics__default__seed1"
    train(config, out, data_dir=data, runs=folder / "runs", progress=False, evaluate_test=False)
    return out


def measure(
    checkpoint: Path, pool: list, work: Path, threads: list[int], repeats: int
) -> dict[int, list[float]]:
    """Seconds of a fresh labelling pass per torch thread count, interleaved repeat by repeat
    (a burst of load from other processes then hits every setting alike)."""
    import torch

    from cdlm.config import load_config
    from cdlm.experiments.selftrain import label_pool

    config = load_config(None)
    seconds: dict[int, list[float]] = {n: [] for n in threads}
    for r in range(repeats):
        for n in threads:
            torch.set_num_threads(n)
            load = os.getloadavg()[0]
            labels = work / f"labels_t{n}_r{r}.jsonl"
            passed = label_pool(checkpoint, pool, labels, config, progress=False)
            seconds[n].append(passed.seconds)
            rate = len(pool) / passed.seconds
            print(
                f"repeat {r + 1}/{repeats}, {n} thread(s): {rate:.1f} sentences/s (load {load:.1f})"
            )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--min-words", type=int, default=10)
    parser.add_argument("--max-words", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("evals/results/bench_selftrain.json"))
    args = parser.parse_args()

    from cdlm.config import load_config
    from cdlm.experiments.selftrain import label_pool, read_pool
    from cdlm.provenance import stamp
    from cdlm.results import write_results

    work = Path(tempfile.mkdtemp(prefix="bench_selftrain."))
    checkpoint = args.checkpoint or tiny_checkpoint(work)
    pool_file = work / "pool.txt"
    synthetic_pool(pool_file, args.sentences, args.min_words, args.max_words, args.seed)
    start = time.perf_counter()
    pool = read_pool(pool_file)
    read_seconds = time.perf_counter() - start
    seconds = measure(checkpoint, pool, work, args.threads, args.repeats)
    config = load_config(None)
    start = time.perf_counter()  # a finished file read back: what a resumed run costs
    assert label_pool(checkpoint, pool, next(work.glob("labels_*.jsonl")), config).resumed
    resume_seconds = time.perf_counter() - start
    speed = {n: len(pool) / statistics.median(s) for n, s in seconds.items()}
    words = [len(p.tokens) for p in pool]
    record = {
        "sentences": len(pool),
        "mean_words": sum(words) / len(words),
        "cpus": os.cpu_count(),
        "load_average_1min_after": os.getloadavg()[0],
        "checkpoint": str(checkpoint) if args.checkpoint else "tests' tiny checkpoint (built)",
        "max_padding": config.predict.max_padding,
        "batch_size": config.train.eval_batch_size,
        "read_pool_seconds": read_seconds,
        "label_seconds_by_threads": seconds,
        "sentences_per_s_by_threads": speed,
        "extrapolated_10k_seconds_by_threads": {n: 10_000 / v for n, v in speed.items()},
        "goal_10k_seconds": 300,
        "resume_read_seconds": resume_seconds,
        "provenance": stamp(config=config.model_dump(mode="json")),
    }
    write_results(args.out, record, markdown(record))
    for n, v in speed.items():
        print(f"{n} thread(s): {v:.1f} sentences/s; 10k sentences in {10_000 / v:.0f} s")


def markdown(record: dict) -> str:
    rows = "".join(
        f"| {n} | {v:.1f} | {10_000 / v:.0f} s |\n"
        for n, v in record["sentences_per_s_by_threads"].items()
    )
    return (
        f"# Self-training labelling pass\n\n{record['sentences']} synthetic sentences "
        f"({record['mean_words']:.1f} words on average) on {record['cpus']} cores shared with "
        f"other jobs (load average {record['load_average_1min_after']:.1f} at the end); the "
        f"goal is 10k sentences in {record['goal_10k_seconds']} s. A finished file reads back "
        f"in {record['resume_read_seconds']:.2f} s.\n\n"
        f"| torch threads | sentences/s (median) | 10k sentences (extrapolated) |\n"
        f"|---|---|---|\n{rows}"
    )


if __name__ == "__main__":
    main()
