"""optimlab._random: one rule for seeds and generators; counter-based streams; the global RNG is never touched."""

import numpy as np
import pytest
import torch

from optimlab._random import check_generator, counter_generator, mix64


def test_int_seeds_a_new_generator_each_time():
    a, b = check_generator(7), check_generator(7)
    assert a is not b
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    na, nb = check_generator(7, kind="numpy"), check_generator(7, kind="numpy")
    assert np.array_equal(na.random(4), nb.random(4))


def test_generators_are_returned_as_is():
    g = torch.Generator().manual_seed(1)
    assert check_generator(g) is g
    n = np.random.default_rng(1)
    assert check_generator(n, kind="numpy") is n


def test_none_is_nondeterministic_and_leaves_the_global_rng_alone():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    seeds = {check_generator(None).initial_seed() for _ in range(4)}
    check_generator(None, kind="numpy").random()
    assert len(seeds) == 4
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


@pytest.mark.parametrize("bad", [True, -1, 1.5, "3", np.random.default_rng(0)])
def test_bad_input_names_the_argument(bad):
    with pytest.raises(ValueError, match="generator must be None, a non-negative int seed or a torch generator"):
        check_generator(bad)


def test_wrong_kind_and_device():
    with pytest.raises(ValueError, match="numpy generator"):
        check_generator(torch.Generator(), kind="numpy")
    with pytest.raises(ValueError, match="kind must be one of"):
        check_generator(0, kind="jax")
    with pytest.raises(ValueError, match="device"):
        check_generator(torch.Generator(), device="meta")


def test_counter_generator_is_stateless_and_rank_aware():
    draw = lambda *a: torch.rand(8, generator=counter_generator(*a))
    assert torch.equal(draw(3, 10, "layer.weight"), draw(3, 10, "layer.weight"))
    assert not torch.equal(draw(3, 10, "layer.weight"), draw(3, 11, "layer.weight"))
    assert not torch.equal(draw(3, 10, "a"), draw(3, 10, "b"))
    assert not torch.equal(draw(3, 10, "a", 0), draw(3, 10, "a", 1))
    assert not torch.equal(draw(3, 10, "a"), draw(3, 10, "a", 0))


def test_mix64_is_order_sensitive_and_64_bit():
    assert mix64(1, 2) != mix64(2, 1)
    assert 0 <= mix64(2**70, -1) < 2**64
    assert mix64(5) == mix64(5)
