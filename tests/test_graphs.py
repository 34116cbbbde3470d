"""Label distributions P/Q and the label-graph builder (cdlm/graphs.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cdlm.graphs import LabelGraphs, build_edges, build_graphs, label_distribution, temper

SOURCE_TAGS = ["O", "B-PER", "I-PER"]


def test_label_distribution_means_rows_and_reports_unseen_tag():
    probs = [np.array([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2]]), np.array([[0.6, 0.3, 0.1]])]
    gold = [["O", "B-x"], ["O"]]
    dist = label_distribution(probs, gold, ["O", "B-x", "I-x"], n_source=3, tau=1.0)
    assert dist.matrix.shape == (3, 3)
    np.testing.assert_allclose(dist.matrix[0], [0.7, 0.2, 0.1])
    np.testing.assert_allclose(dist.matrix[1], [0.2, 0.6, 0.2])
    np.testing.assert_allclose(dist.matrix[2], [1 / 3] * 3)  # no I-x token: uniform
    np.testing.assert_allclose(dist.matrix.sum(1), 1.0)
    assert dist.counts == [2, 1, 0]
    assert dist.unseen == ["I-x"]


def test_temperature_sharpens_and_flattens():
    p = np.array([[0.7, 0.2, 0.1]])
    assert temper(p, 0.5)[0, 0] > 0.7 > temper(p, 2.0)[0, 0]
    np.testing.assert_allclose(temper(p, 1.0), p)
    # softmax(z / tau) == temper(softmax(z), tau)
    z = np.array([[2.0, 0.5, -1.0]])
    expected = np.exp(z / 3.0) / np.exp(z / 3.0).sum()
    np.testing.assert_allclose(temper(np.exp(z) / np.exp(z).sum(), 3.0), expected)


def test_build_edges_on_hand_made_distribution():
    rows = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    # d(0,1) = sqrt(0.02)/sqrt(2) = 0.1 -> weight 1 - 0.1/0.5 = 0.8; the others are far apart.
    edges = build_edges(rows, theta=0.5)
    assert [(a, b) for a, b, _ in edges] == [(0, 1)]
    assert edges[0][2] == pytest.approx(0.8)
    d12 = math.sqrt(0.81 + 0.01 + 1.0) / math.sqrt(2)
    edges = build_edges(rows, theta=0.99)
    assert [(a, b) for a, b, _ in edges] == [(0, 1), (1, 2)]
    assert edges[1][2] == pytest.approx(1 - d12 / 0.99)


def _graphs() -> LabelGraphs:
    rng = np.random.default_rng(0)

    def probs(n: int) -> np.ndarray:
        p = rng.random((n, 3))
        return p / p.sum(1, keepdims=True)

    source_gold = [["O", "B-PER", "I-PER"], ["B-PER", "O"]]
    target_gold = [["O", "B-pol", "I-pol", "O"], ["B-loc", "O"]]
    return build_graphs(
        [probs(len(s)) for s in source_gold],
        source_gold,
        [probs(len(s)) for s in target_gold],
        target_gold,
        source="src",
        target="tgt",
        source_tags=SOURCE_TAGS,
        target_tags=["O", "B-loc", "I-loc", "B-pol", "I-pol"],
        tau=1.0,
        theta=0.8,
    )


def test_build_graphs_shapes_and_json_round_trip(tmp_path):
    graphs = _graphs()
    assert graphs.P.shape == (5, 3) and graphs.Q.shape == (3, 3)
    np.testing.assert_allclose(graphs.P.sum(1), 1.0)
    np.testing.assert_allclose(graphs.Q.sum(1), 1.0)
    assert graphs.unseen == {"source": [], "target": ["I-loc"]}
    assert graphs.target_counts == [3, 1, 0, 1, 1]
    loaded = LabelGraphs.load(graphs.save(tmp_path / "g.json"))
    np.testing.assert_allclose(loaded.P, graphs.P, atol=1e-6)
    assert loaded.target_tags == graphs.target_tags
    assert [(a, b) for a, b, _ in loaded.target_edges] == [
        (a, b) for a, b, _ in graphs.target_edges
    ]
    assert loaded.params["tau"] == 1.0 and loaded.params["theta"] == 0.8
    assert loaded.params["tau_rule"] == {"tau": 1.0, "q_entropy": None}
    assert loaded.with_theta(0.01).target_edges == []


def _near_one_hot(tags: list[str], rng: np.random.Generator) -> np.ndarray:
    """A confident tagger's output: 0.98 on the gold tag, a little noise elsewhere."""
    n = len(SOURCE_TAGS_5)
    p = rng.random((len(tags), n)) * 0.02
    for i, tag in enumerate(tags):
        p[i, SOURCE_TAGS_5.index(tag)] = 0.98 + (0.01 if tag.startswith("I-") else 0.0)
    return p / p.sum(1, keepdims=True)


SOURCE_TAGS_5 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_rules_give_a_confident_source_graph_edges():
    from cdlm.graphs import mean_entropy, tau_for_entropy, theta_for_density

    rng = np.random.default_rng(0)
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]] * 20
    probs = [_near_one_hot(g, rng) for g in gold]
    fixed = build_graphs(
        probs,
        gold,
        probs,
        gold,
        source="s",
        target="t",
        source_tags=SOURCE_TAGS_5,
        target_tags=SOURCE_TAGS_5,
        tau=1.0,
        theta=0.5,
    )
    assert fixed.source_edges == []  # near one-hot rows: all far apart at tau 1
    tau = tau_for_entropy(probs, gold, SOURCE_TAGS_5, 0.4)
    q = label_distribution(probs, gold, SOURCE_TAGS_5, 5, tau).matrix
    assert tau > 1.0 and mean_entropy(q) == pytest.approx(0.4, abs=1e-3)
    ruled = build_graphs(
        probs,
        gold,
        probs,
        gold,
        source="s",
        target="t",
        source_tags=SOURCE_TAGS_5,
        target_tags=SOURCE_TAGS_5,
        tau=None,
        theta=None,
        q_entropy=0.4,
        edge_density=0.2,
    )
    assert ruled.params["tau"] == pytest.approx(tau)
    # 20% of the 10 pairs: exactly two edges per graph, the closest pairs.
    assert len(ruled.source_edges) == 2 and len(ruled.target_edges) == 2
    theta = theta_for_density(ruled.Q, 0.2)
    assert ruled.params["theta_source"] == pytest.approx(theta, abs=1e-6)
    assert all(0 < w < 1 for _, _, w in ruled.source_edges)
    # The edge rule can be changed on a built graph without the tagger.
    assert len(ruled.with_theta(None, 0.5).source_edges) == 5
    assert ruled.same_edge_rule(None, 0.2) and not ruled.same_edge_rule(0.5, 0.2)


def test_load_rejects_bad_file(tmp_path):
    from cdlm.errors import DataError

    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:2"):
        LabelGraphs.load(bad)
    with pytest.raises(DataError, match="cdlm graphs build"):
        LabelGraphs.load(tmp_path / "missing.json")


def test_draw_writes_png(tmp_path):
    from cdlm.graphs import draw

    out = draw(_graphs(), tmp_path / "g.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graphs_from_a_real_tagger_on_crossner(crossner_dir):
    """P and Q from the real encoder (an untrained head is enough for shapes and sums)."""
    import torch

    from cdlm.config import load_config
    from cdlm.data.registry import domain_labels, load_split
    from cdlm.graphs import graphs_from_tagger
    from cdlm.model.tagger import Tagger

    config = load_config(
        overrides={"fusion.q_max_sentences": 12, "fusion.tau": 2.0, "fusion.q_split": "train"}
    )
    torch.manual_seed(0)
    tagger = Tagger.create(config, domain_labels("conll2003"))
    target = load_split("politics", "train")[:6]
    graphs = graphs_from_tagger(
        tagger, config, source="conll2003", target="politics", target_sentences=target
    )
    n_s, n_t = len(tagger.labels), len(domain_labels("politics"))
    assert graphs.Q.shape == (n_s, n_s) and graphs.P.shape == (n_t, n_s)
    np.testing.assert_allclose(graphs.P.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(graphs.Q.sum(1), 1.0, rtol=1e-6)
    assert sum(graphs.target_counts) == sum(len(s.tokens) for s in target)
    # 6 sentences cannot cover every politics tag: the missing ones are uniform and reported
    missing = [t for t, c in zip(graphs.target_tags, graphs.target_counts, strict=True) if c == 0]
    assert missing and graphs.unseen["target"] == missing
    i = graphs.target_tags.index(missing[0])
    np.testing.assert_allclose(graphs.P[i], 1.0 / n_s)
    assert graphs.params["tau"] == 2.0 and graphs.params["source_sentences"] == 12
