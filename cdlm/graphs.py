"""Label distributions and label graphs (docs/DESIGN.md, "Label-structure fusion").

The source tagger is run over labelled tokens; for every gold tag t the mean of its (tempered)
predicted distributions over the source tags is the row ``P[t]``. On target data this gives P
(|Y_t| x |Y_s|), on source data Q (|Y_s| x |Y_s|). Two tags whose rows are close are joined by an
edge: d = ||row_a - row_b||_2 / sqrt(2) lies in [0, 1] (sqrt(2) is the largest L2 distance
between two probability vectors), and an edge exists when d < theta with weight 1 - d/theta.
A tag with no tokens gets a uniform row (it knows nothing) and is listed in ``unseen`` so the
user sees it rather than having it silently dropped.

Temperature: ``softmax(z / tau)`` equals ``p ** (1/tau)`` renormalised, so it is applied to the
tagger's probabilities and needs no access to its logits.

**The rules that give both graphs structure** (``fusion.tau = None``, ``fusion.theta = None``,
the defaults). A source tagger trained on its own tags is near one-hot at tau 1, so all rows of
Q sit at the largest distance from each other and no pair is below any useful theta: the
source graph had no edges. So:

- tau is set on the source side: the temperature at which Q's rows (the source tagger on the
  held-out source ``fusion.q_split``) have mean normalised entropy ``fusion.q_entropy``
  (:func:`tau_for_entropy`; entropy divided by log |Y_s|, 0 = one-hot, 1 = uniform). The same
  tau tempers P, so both graphs read the same tagger at the same temperature.
- theta is set per graph: the threshold that links a share ``fusion.edge_density`` of all tag
  pairs (:func:`theta_for_density`), halfway between the last linked and the first unlinked
  distance. The edge weights stay ``1 - d/theta``, so the closest pairs weigh most.

A fixed ``fusion.tau`` / ``fusion.theta`` replaces either rule.

A graph file ``graphs/<source>__<target>.json`` holds both graphs (tags, token counts, P, Q,
edges with weights) and the parameters used, so it can be read, plotted and reused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cdlm.errors import DataError, require
from cdlm.results import atomic_write_text, portable

SCHEMA_VERSION = 1


def temper(probs: np.ndarray, tau: float) -> np.ndarray:
    """``softmax(log p / tau)`` row-wise: the temperature applied to probabilities."""
    logp = np.log(np.clip(probs, 1e-12, None)) / tau
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


@dataclass
class LabelDistribution:
    """Rows: gold tags; columns: source tags. ``counts[t]`` tokens were averaged into row t."""

    matrix: np.ndarray  # [n_gold, n_source], rows sum to 1
    counts: list[int]
    unseen: list[str]  # gold tags without tokens (their row is uniform)


def label_distribution(
    probs: Sequence[np.ndarray],
    gold: Sequence[Sequence[str]],
    gold_tags: Sequence[str],
    n_source: int,
    tau: float = 1.0,
) -> LabelDistribution:
    """Mean tempered source-tag distribution per gold tag.

    ``probs[k]`` is the source tagger's [W_k, n_source] distribution for sentence k, whose gold
    tags are ``gold[k]`` (W_k of them, each in ``gold_tags``).
    """
    index = {tag: i for i, tag in enumerate(gold_tags)}
    sums = np.zeros((len(gold_tags), n_source), dtype=np.float64)
    counts = np.zeros(len(gold_tags), dtype=np.int64)
    for k, (sent_probs, sent_tags) in enumerate(zip(probs, gold, strict=True)):
        sent_probs = np.asarray(sent_probs, dtype=np.float64)
        if sent_probs.shape != (len(sent_tags), n_source):
            raise ValueError(
                f"sentence {k}: probabilities {sent_probs.shape} do not match "
                f"{len(sent_tags)} words x {n_source} source tags"
            )
        try:
            rows = np.array([index[t] for t in sent_tags], dtype=np.int64)
        except KeyError as exc:
            raise DataError(f"sentence {k}: tag {exc.args[0]!r} is not in the label set") from None
        np.add.at(sums, rows, temper(sent_probs, tau))
        np.add.at(counts, rows, 1)
    matrix = np.full_like(sums, 1.0 / n_source)
    seen = counts > 0
    matrix[seen] = sums[seen] / counts[seen, None]
    unseen = [tag for tag, c in zip(gold_tags, counts, strict=True) if c == 0]
    return LabelDistribution(matrix=matrix, counts=counts.tolist(), unseen=unseen)


def mean_entropy(rows: np.ndarray) -> float:
    """Mean entropy of the rows divided by log(columns): 0 for one-hot rows, 1 for uniform."""
    p = np.clip(rows, 1e-12, None)
    return float((-(p * np.log(p)).sum(-1)).mean() / math.log(rows.shape[-1]))


def tau_for_entropy(
    probs: Sequence[np.ndarray],
    gold: Sequence[Sequence[str]],
    tags: Sequence[str],
    target: float,
    bounds: tuple[float, float] = (0.05, 1000.0),
) -> float:
    """The temperature at which the label distribution of ``probs`` (rows: ``gold`` tags) has
    mean normalised entropy ``target`` (bisection on log tau; the entropy grows with tau).
    The bounds are returned when the target lies beyond them."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])

    def entropy(log_tau: float) -> float:
        rows = label_distribution(probs, gold, tags, len(tags), math.exp(log_tau)).matrix
        return mean_entropy(rows)

    if entropy(hi) <= target:
        return bounds[1]
    if entropy(lo) >= target:
        return bounds[0]
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if entropy(mid) < target else (lo, mid)
    return round(math.exp((lo + hi) / 2), 4)


def distances(rows: np.ndarray) -> np.ndarray:
    """Pairwise L2 distances of the rows divided by sqrt(2) (in [0, 1] for distributions)."""
    diff = rows[:, None, :] - rows[None, :, :]
    return np.sqrt((diff**2).sum(-1)) / math.sqrt(2.0)


def theta_for_density(rows: np.ndarray, density: float) -> float:
    """The threshold that links ``density`` of all pairs of rows (at least one pair): halfway
    between the distance of the last pair linked and the first pair left out."""
    n = len(rows)
    if n < 2:
        return 1.0
    d = np.sort(distances(rows)[np.triu_indices(n, 1)])
    k = min(max(round(density * len(d)), 1), len(d))
    upper = d[k] if k < len(d) else min(d[-1] + 1e-3, 1.0)
    return float(min((d[k - 1] + upper) / 2, 1.0)) or 1e-6


def build_edges(rows: np.ndarray, theta: float) -> list[tuple[int, int, float]]:
    """Undirected edges ``(a, b, weight)`` with a < b between rows closer than ``theta``.

    Self-loops are not listed: the GCN adds its own.
    """
    dist = distances(rows)
    edges = []
    n = len(rows)
    for a in range(n):
        for b in range(a + 1, n):
            if dist[a, b] < theta:
                edges.append((a, b, float(1.0 - dist[a, b] / theta)))
    return edges


def adjacency(n: int, edges: Sequence[tuple[int, int, float]]) -> np.ndarray:
    """Symmetric weighted adjacency matrix of an edge list (zero diagonal)."""
    adj = np.zeros((n, n), dtype=np.float32)
    for a, b, w in edges:
        adj[a, b] = adj[b, a] = w
    return adj


@dataclass
class LabelGraphs:
    """The source graph (over Y_s, from Q) and the target graph (over Y_t, from P)."""

    source: str
    target: str
    source_tags: list[str]
    target_tags: list[str]
    P: np.ndarray  # [n_target, n_source]
    Q: np.ndarray  # [n_source, n_source]
    source_counts: list[int]
    target_counts: list[int]
    source_edges: list[tuple[int, int, float]]
    target_edges: list[tuple[int, int, float]]
    unseen: dict[str, list[str]]  # {"source": [...], "target": [...]}
    params: dict[str, Any] = field(default_factory=dict)  # tau, theta, checkpoint, ...

    def with_theta(self, theta: float | None, density: float = 0.15) -> LabelGraphs:
        """The same distributions with edges rebuilt (no tagger needed): for a fixed threshold
        ``theta``, or per graph for the edge ``density`` when ``theta`` is None."""
        theta_s = theta if theta is not None else theta_for_density(self.Q, density)
        theta_t = theta if theta is not None else theta_for_density(self.P, density)
        params = {
            **self.params,
            "theta": theta,
            "edge_density": None if theta is not None else density,
            "theta_source": round(theta_s, 6),
            "theta_target": round(theta_t, 6),
        }
        return LabelGraphs(
            **{
                **self.__dict__,
                "source_edges": build_edges(self.Q, theta_s),
                "target_edges": build_edges(self.P, theta_t),
                "params": params,
            }
        )

    def same_edge_rule(self, theta: float | None, density: float) -> bool:
        """Whether the stored edges were built by this theta (or density rule)."""
        p = self.params
        if theta is not None:
            return p.get("theta") == theta
        return p.get("theta") is None and p.get("edge_density") == density

    def to_json(self) -> dict[str, Any]:
        def edges(es: Sequence[tuple[int, int, float]], tags: list[str]) -> list[dict[str, Any]]:
            return [{"a": tags[a], "b": tags[b], "weight": round(w, 6)} for a, b, w in es]

        return {
            "schema": SCHEMA_VERSION,
            "source": self.source,
            "target": self.target,
            "params": self.params,
            "source_tags": self.source_tags,
            "target_tags": self.target_tags,
            "source_counts": self.source_counts,
            "target_counts": self.target_counts,
            "unseen": self.unseen,
            "P": np.round(self.P, 6).tolist(),
            "Q": np.round(self.Q, 6).tolist(),
            "source_edges": edges(self.source_edges, self.source_tags),
            "target_edges": edges(self.target_edges, self.target_tags),
        }

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> LabelGraphs:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(
                f"{path}: graph file not found (make it with `cdlm graphs build`)"
            ) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        try:
            if data.get("schema") != SCHEMA_VERSION:
                raise DataError(f"{path}: field 'schema': expected {SCHEMA_VERSION}")
            s_tags, t_tags = list(data["source_tags"]), list(data["target_tags"])

            def edges(items: list[dict[str, Any]], tags: list[str]) -> list:
                pos = {t: i for i, t in enumerate(tags)}
                return [(pos[e["a"]], pos[e["b"]], float(e["weight"])) for e in items]

            graphs = cls(
                source=data["source"],
                target=data["target"],
                source_tags=s_tags,
                target_tags=t_tags,
                P=np.asarray(data["P"], dtype=np.float64),
                Q=np.asarray(data["Q"], dtype=np.float64),
                source_counts=list(data["source_counts"]),
                target_counts=list(data["target_counts"]),
                source_edges=edges(data["source_edges"], s_tags),
                target_edges=edges(data["target_edges"], t_tags),
                unseen=dict(data["unseen"]),
                params=dict(data["params"]),
            )
        except KeyError as exc:
            raise DataError(f"{path}: field {exc.args[0]!r} missing or unknown tag") from None
        if graphs.P.shape != (len(t_tags), len(s_tags)) or graphs.Q.shape != (len(s_tags),) * 2:
            raise DataError(f"{path}: field 'P'/'Q': shape does not match the tag lists")
        return graphs


def build_graphs(
    source_probs: Sequence[np.ndarray],
    source_gold: Sequence[Sequence[str]],
    target_probs: Sequence[np.ndarray],
    target_gold: Sequence[Sequence[str]],
    *,
    source: str,
    target: str,
    source_tags: list[str],
    target_tags: list[str],
    tau: float | None,
    theta: float | None,
    q_entropy: float = 0.3,
    edge_density: float = 0.15,
    params: dict[str, Any] | None = None,
) -> LabelGraphs:
    """Both label distributions and both graphs from source-tagger outputs; ``tau`` and
    ``theta`` None choose them by the rules of the module docstring."""
    rule = {"tau": tau, "q_entropy": None if tau is not None else q_entropy}
    if tau is None:
        tau = tau_for_entropy(source_probs, source_gold, source_tags, q_entropy)
    q = label_distribution(source_probs, source_gold, source_tags, len(source_tags), tau)
    p = label_distribution(target_probs, target_gold, target_tags, len(source_tags), tau)
    graphs = LabelGraphs(
        source=source,
        target=target,
        source_tags=list(source_tags),
        target_tags=list(target_tags),
        P=p.matrix,
        Q=q.matrix,
        source_counts=q.counts,
        target_counts=p.counts,
        source_edges=[],
        target_edges=[],
        unseen={"source": q.unseen, "target": p.unseen},
        params={"tau": tau, "tau_rule": rule, **(params or {})},
    )
    return graphs.with_theta(theta, edge_density)


def graph_path(graphs_dir: str | Path, source: str, target: str) -> Path:
    return Path(graphs_dir) / f"{source}__{target}.json"


def draw(graphs: LabelGraphs, out: Path) -> Path:
    """A PNG with the source graph, the target graph and the heat map of P.

    Nodes sit on a circle in label-set order (so B-x and I-x are neighbours and every picture
    of the same label set has the same layout), node size grows with the tag's token count
    (grey = no tokens), and edge width and opacity grow with the weight relative to the
    panel's strongest edge (sparse graphs also print each weight).
    """
    matplotlib = require("matplotlib", "plot", "drawing label graphs")
    nx = require("networkx", "plot", "drawing label graphs")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 3, figsize=(24, 8.5), gridspec_kw={"width_ratios": [1, 1.4, 1.1]}, layout="constrained"
    )

    def panel(ax, tags, counts, edges, title):
        g = nx.Graph()
        g.add_nodes_from(range(len(tags)))
        g.add_weighted_edges_from(edges)
        pos = nx.circular_layout(g)
        # Width and shade relative to the panel's strongest edge (a source graph's weights
        # can all be small), the weight itself written at the middle of the edge.
        strongest = max((w for _, _, w in edges), default=1.0) or 1.0
        for a, b, d in g.edges(data=True):
            w = d["weight"] / strongest
            ax.plot(
                [pos[a][0], pos[b][0]],
                [pos[a][1], pos[b][1]],
                color=plt.cm.Blues(0.45 + 0.55 * w),
                linewidth=0.8 + 4.0 * w,
                alpha=0.35 + 0.6 * w,
                zorder=1,
            )
            if len(edges) <= 12:
                mid = (pos[a] + pos[b]) / 2
                ax.annotate(f"{d['weight']:.2f}", mid, fontsize=7, color="#08306b", ha="center")
        top = max(max(counts), 1)
        sizes = [120 + 700 * math.sqrt(c / top) for c in counts]
        node_colors = ["#bbbbbb" if c == 0 else "#fdd49e" for c in counts]
        nx.draw_networkx_nodes(
            g, pos, ax=ax, node_size=sizes, node_color=node_colors, edgecolors="#7f2704"
        )
        for i, tag in enumerate(tags):
            x, y = pos[i]
            ax.annotate(
                f"{tag} ({counts[i]})",
                (x, y),
                xytext=(x * 1.13, y * 1.13),
                ha="left" if x > 0.05 else "right" if x < -0.05 else "center",
                va="center",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.set_xlim(-1.7, 1.7)
        ax.set_ylim(-1.3, 1.3)
        ax.set_title(title)
        ax.axis("off")

    prm = graphs.params
    theta_s = prm.get("theta_source", prm.get("theta"))
    theta_t = prm.get("theta_target", prm.get("theta"))
    panel(
        axes[0],
        graphs.source_tags,
        graphs.source_counts,
        graphs.source_edges,
        f"source graph ({graphs.source}, from Q): {len(graphs.source_edges)} edges, "
        f"theta={theta_s:.3g}",
    )
    panel(
        axes[1],
        graphs.target_tags,
        graphs.target_counts,
        graphs.target_edges,
        f"target graph ({graphs.target}, from P): {len(graphs.target_edges)} edges, "
        f"theta={theta_t:.3g}",
    )
    im = axes[2].imshow(graphs.P, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes[2].set_xticks(range(len(graphs.source_tags)), graphs.source_tags, rotation=60, fontsize=8)
    axes[2].set_yticks(range(len(graphs.target_tags)), graphs.target_tags, fontsize=8)
    axes[2].set_xlabel(f"source tag ({graphs.source})")
    axes[2].set_title(f"P: target tag -> source tag distribution (tau={prm.get('tau')})")
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def checkpoint_fingerprint(checkpoint: Path) -> str:
    """First 16 hex digits of the SHA-256 of a checkpoint's weights: which source model a graph
    file was built from (so a stale file is not reused)."""
    import hashlib

    digest = hashlib.sha256()
    with open(Path(checkpoint) / "model.safetensors", "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _graph_params(
    tagger: Any, fusion: Any, n_source: int, n_target: int, checkpoint: Path | None
) -> dict[str, Any]:
    """What a graph file records of how it was built (the checkpoint named portably)."""
    params: dict[str, Any] = {
        "q_split": fusion.q_split,
        "q_max_sentences": fusion.q_max_sentences,
        "source_sentences": n_source,
        "target_sentences": n_target,
        "encoder": getattr(tagger, "encoder_name", None) or "embedded",
    }
    if checkpoint is not None:
        params["checkpoint"] = portable(str(checkpoint))
        params["checkpoint_sha256"] = checkpoint_fingerprint(checkpoint)
    return params


def graphs_from_tagger(
    tagger: Any,
    config: Any,
    *,
    source: str,
    target: str,
    checkpoint: Path | None = None,
    target_sentences: Sequence[Any] | None = None,
    progress: bool = False,
    data_dir: Path | str | None = None,
    source_probs: Sequence[np.ndarray] | None = None,
) -> LabelGraphs:
    """Run the source tagger over source and target train sentences and build both graphs.

    ``config`` is the full :class:`cdlm.config.CdlmConfig` (``fusion.tau``, ``fusion.theta``,
    their rules, ``fusion.q_split``, ``fusion.q_max_sentences``); ``target_sentences``
    defaults to the target train split (pass the K-shot sample when training on one).
    ``source_probs`` are the tagger's outputs on the source sentences when already computed
    (:func:`source_probabilities`), so several targets share one pass over the source data.
    """
    from cdlm.data.registry import domain_labels, domain_name, load_split

    fusion = config.fusion
    source_sents = _q_sentences(config, source, data_dir)
    if target_sentences is None:
        target_sentences = load_split(target, "train", data_dir)
    target_tags = domain_labels(target, data_dir)
    src_gold = [s.tags for s in source_sents]
    unknown = sorted({t for tags in src_gold for t in tags} - set(tagger.labels))
    if unknown:
        raise DataError(f"source tags {unknown} are not in the source checkpoint's label set")
    src_probs = source_probs
    if src_probs is None:
        src_probs = _predict(tagger, source_sents, f"{len(source_sents)} {source}", progress)
    if len(src_probs) != len(source_sents):
        raise ValueError(f"{len(src_probs)} source predictions for {len(source_sents)} sentences")
    tgt_probs = _predict(tagger, target_sentences, f"{len(target_sentences)} {target}", progress)
    params = _graph_params(tagger, fusion, len(source_sents), len(target_sentences), checkpoint)
    return build_graphs(
        src_probs,
        src_gold,
        tgt_probs,
        [s.tags for s in target_sentences],
        source=domain_name(source),
        target=domain_name(target),
        source_tags=list(tagger.labels),
        target_tags=target_tags,
        tau=fusion.tau,
        theta=fusion.theta,
        q_entropy=fusion.q_entropy,
        edge_density=fusion.edge_density,
        params=params,
    )


def source_probabilities(
    tagger: Any, config: Any, source: str, data_dir: Path | str | None = None
) -> list[np.ndarray]:
    """The tagger's distributions on the source sentences Q is estimated from."""
    sents = _q_sentences(config, source, data_dir)
    return _predict(tagger, sents, f"{len(sents)} {source}", progress=True)


def _q_sentences(config: Any, source: str, data_dir: Path | str | None) -> list[Any]:
    """The source sentences Q (and the tau rule) are estimated on."""
    from cdlm.data.registry import load_split

    sents = load_split(source, config.fusion.q_split, data_dir)
    n = config.fusion.q_max_sentences
    return sents[:n] if n is not None else sents


def _predict(tagger: Any, sentences: Sequence[Any], what: str, progress: bool) -> list:
    tokens = [list(s.tokens) for s in sentences]
    if not progress:
        return tagger.predict_proba(tokens)
    from rich.console import Console

    with Console(stderr=True).status(f"source tagger over {what} sentences"):
        return tagger.predict_proba(tokens)


def load_or_build(
    tagger: Any,
    config: Any,
    checkpoint: Path,
    *,
    source: str,
    target: str,
    cache_dir: Path | None = None,
    target_sentences: Sequence[Any] | None = None,
    data_dir: Path | str | None = None,
) -> LabelGraphs:
    """The graphs for training: the file in ``fusion.graphs_dir`` (or ``cache_dir``) when it
    was built from this very source checkpoint with the same tau rule and data, else freshly
    built (and saved to ``cache_dir`` when given). Edges are rebuilt by the fusion module when
    the theta rule differs."""
    from cdlm.data.registry import domain_name

    fingerprint = checkpoint_fingerprint(checkpoint)
    name = graph_path("", domain_name(source), domain_name(target)).name
    candidates = [Path(config.fusion.graphs_dir) / name]
    if cache_dir is not None:
        candidates.append(Path(cache_dir) / name)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            graphs = LabelGraphs.load(path)
        except DataError:
            continue
        p = graphs.params
        fusion = config.fusion
        rule = {
            "tau": fusion.tau,
            "q_entropy": None if fusion.tau is not None else fusion.q_entropy,
        }
        if (
            p.get("checkpoint_sha256") == fingerprint
            and p.get("tau_rule") == rule
            and p.get("q_split") == fusion.q_split
            and p.get("q_max_sentences") == fusion.q_max_sentences
            and (target_sentences is None or p.get("target_sentences") == len(target_sentences))
        ):
            return graphs
    graphs = graphs_from_tagger(
        tagger,
        config,
        source=source,
        target=target,
        checkpoint=checkpoint,
        target_sentences=target_sentences,
        data_dir=data_dir,
    )
    if cache_dir is not None:
        graphs.save(Path(cache_dir) / name)
    return graphs
