"""Bad input raises ValueError naming the argument."""

import networkx as nx
import numpy as np
import pytest

from optimlab.conic import (
    MatrixCompletionSDP,
    MaxCutSDP,
    NonnegativeOrthant,
    PhaseLift,
    QuadraticProgram,
    conic_descent,
    goemans_williamson,
    lowrank_moco,
    moco,
)


def test_non_symmetric_cost_raises():
    L = np.array([[1.0, -1.0], [-0.5, 0.5]])
    with pytest.raises(ValueError, match="symmetric"):
        MaxCutSDP(L)
    with pytest.raises(ValueError, match="P must be symmetric"):
        QuadraticProgram(np.array([[1.0, 2.0], [0.0, 1.0]]), np.zeros(2), NonnegativeOrthant(2))


def test_graph_with_self_loop_or_negative_weight_raises():
    g = nx.path_graph(4)
    g.add_edge(1, 1)
    with pytest.raises(ValueError, match="self-loops"):
        MaxCutSDP(g)
    h = nx.path_graph(4)
    h.edges[0, 1]["weight"] = -2.0
    with pytest.raises(ValueError, match="weights"):
        MaxCutSDP(h)


def test_shapes_and_penalties_are_validated():
    mask = np.eye(4, dtype=bool)
    with pytest.raises(ValueError, match="values"):
        MatrixCompletionSDP(mask, np.ones(3))
    with pytest.raises(ValueError, match="trace_penalty"):
        MatrixCompletionSDP(mask, np.ones((4, 4)), trace_penalty=-1.0)
    with pytest.raises(ValueError, match="trace_penalty"):
        PhaseLift(np.ones((3, 2)), np.ones(3), trace_penalty=-0.1)
    with pytest.raises(ValueError, match="b of shape"):
        PhaseLift(np.ones((3, 2)), np.ones(4))
    with pytest.raises(ValueError, match="q must have shape"):
        QuadraticProgram(np.eye(2), np.zeros(3), NonnegativeOrthant(2))
    with pytest.raises(ValueError, match="beta"):
        MaxCutSDP(nx.path_graph(3), beta=-1.0)


def test_unknown_options_raise():
    prob = QuadraticProgram(np.eye(2), -np.ones(2), NonnegativeOrthant(2))
    with pytest.raises(ValueError, match="step"):
        conic_descent(prob, step="zigzag")
    with pytest.raises(ValueError, match="certificate"):
        moco(prob, certificate="psychic")
    with pytest.raises(ValueError, match="momentum"):
        moco(prob, momentum="3/(t+3)")
    with pytest.raises(ValueError, match="momentum"):
        moco(prob, momentum=1.5)
    with pytest.raises(ValueError, match="form"):
        MaxCutSDP(nx.path_graph(3), form="barrier")
    with pytest.raises(ValueError, match="problem"):
        lowrank_moco(prob)
    with pytest.raises(ValueError, match="sketch_rank"):
        lowrank_moco(MaxCutSDP(nx.path_graph(5)), sketch_rank=0)
    with pytest.raises(ValueError, match="n_rounds"):
        goemans_williamson(np.eye(3), nx.path_graph(3), n_rounds=0)
