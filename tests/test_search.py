"""The coordinate search on objectives whose optimum is known."""

import math

import pytest

from layeropt_jax.search import Grid, coordinate_search, search_multipliers, tune

SQRT2 = 2 ** 0.5


def test_grids_and_their_edges():
  values = lambda grid, around: [grid.value(around, k) for k in grid.steps()]
  assert values(Grid(SQRT2), 0.004) == [0.00282843, 0.004, 0.00565685]
  assert values(Grid(3.0, zero=True), 0.1) == [0.0, 0.0333333, 0.1, 0.3]
  assert values(Grid(2.0, complement=True), 0.95) == [0.975, 0.95, 0.9]
  # Points are steps from the value the stage started around: no drift.
  assert Grid(SQRT2).value(0.002, 6) == 0.016
  assert Grid(SQRT2).beyond(1.0, [-1, 0, 1], 1) == 2
  assert Grid(SQRT2).beyond(1.0, [-1, 0, 1], -1) == -2
  assert Grid(SQRT2).beyond(1.0, [-1, 0, 1], 0) is None
  # A weight decay best at 0 extends between 0 and its smallest other point.
  assert Grid(3.0, zero=True).beyond(0.1, [-math.inf, -1, 0, 1], -math.inf) == -2
  assert Grid(3.0, zero=True).beyond(0.1, [-math.inf, -1, 0, 1], -1) is None
  # b2 extends towards 1 and away from it, never to or past 0.
  assert Grid(2.0, complement=True).beyond(0.95, [-1, 0, 1], -1) == -2
  assert Grid(2.0, complement=True).beyond(0.75, [-1, 0, 1], 1) is None
  with pytest.raises(ValueError, match="needs 1 - value > 0"):
    Grid(2.0, complement=True).check(1.0)


def _bowl(optimum):
  """A loss whose minimum over the log of each value is at `optimum`, plus
  a seed's offset (common to every point, as a seed's luck is)."""
  return lambda point, seed: 3.0 + 0.01 * seed + sum(
      (math.log(point[k]) - math.log(v)) ** 2 for k, v in optimum.items())


def test_the_search_finds_a_known_optimum_extending_its_grids_in_order():
  """Learning rate 8x below its optimum, b2 off by half a step: the first
  stage extends its grid until the optimum lies inside, each stage in the
  given order, every choice inside its grid, each evaluation asked once."""
  optimum = {"lr": 0.016, "b2_complement": 0.05}
  calls = []

  def objective(point, seed):
    calls.append((tuple(sorted(point.items())), seed))
    return _bowl({"lr": optimum["lr"]})(point, seed) + (
        math.log(1 - point["b2"]) - math.log(optimum["b2_complement"])) ** 2

  coordinates = [("lr", Grid(SQRT2)), ("b2", Grid(2.0, complement=True)), ("lr", Grid(SQRT2))]
  search = tune(objective, {"lr": 0.002, "b2": 0.9}, coordinates, seeds=(0, 1, 2),
                max_extensions=8)
  assert search.done and [s.name for s in search.path] == ["lr", "b2", "lr"]
  assert search.point == {"lr": 0.016, "b2": 0.95}
  assert all(stage.inside for stage in search.path)
  first = search.path[0]
  assert len(first.losses) == 3 + 6 and max(first.losses) == 0.0226274
  assert len(calls) == len(set(calls))  # the second lr stage reuses the first's points
  assert all(len(losses) == 3 for stage in search.path for losses in stage.losses.values())


def test_the_search_waits_for_its_pending_evaluations_and_resumes():
  """Asked with nothing known it waits for the first grid at every seed;
  with those known, for the next stage's new points only."""
  objective = _bowl({"lr": 0.004, "weight_decay": 0.1})
  coordinates = [("lr", Grid(SQRT2)), ("weight_decay", Grid(3.0, zero=True))]
  start = {"lr": 0.004, "weight_decay": 0.3}
  first = coordinate_search(start, coordinates, lambda p, s: None, seeds=(0, 1, 2))
  assert not first.done and not first.path
  assert sorted({p["lr"] for p, _ in first.pending}) == [0.00282843, 0.004, 0.00565685]
  assert {s for _, s in first.pending} == {0, 1, 2} and len(first.pending) == 9
  known = {(tuple(sorted(p.items())), s): objective(p, s) for p, s in first.pending}
  loss = lambda p, s: known.get((tuple(sorted(p.items())), s))
  second = coordinate_search(start, coordinates, loss, seeds=(0, 1, 2))
  assert [s.name for s in second.path] == ["lr"] and second.point["lr"] == 0.004
  # The decay grid around 0.3 is 0, 0.1, 0.3, 0.9: 0.3 is the first stage's choice.
  assert sorted({p["weight_decay"] for p, _ in second.pending}) == [0.0, 0.1, 0.9]


def test_a_diverged_point_is_the_worst_and_an_edge_past_the_limit_is_reported():
  def objective(point, seed):
    return math.nan if point["lr"] > 0.01 else -math.log(point["lr"])  # best: the largest
  search = tune(objective, {"lr": 0.002}, [("lr", Grid(SQRT2))], seeds=(0,), max_extensions=2)
  # Two extensions (0.004, 0.00566) and the best still on the edge: reported.
  assert search.point["lr"] == 0.00565685 and not search.path[0].inside
  search = tune(objective, {"lr": 0.002}, [("lr", Grid(SQRT2))], seeds=(0,), max_extensions=8)
  assert search.point["lr"] == 0.008
  assert search.path[0].inside and math.isnan(search.path[0].losses[0.0113137][0])


def test_a_coordinate_needs_a_start_value():
  with pytest.raises(ValueError, match=r"coordinates \['b2'\] have no start value"):
    tune(lambda p, s: 0.0, {"lr": 1.0}, [("b2", Grid(2.0))], seeds=(0,))
  with pytest.raises(ValueError, match="passes must be >= 1, got 0"):
    tune(lambda p, s: 0.0, {"lr": 1.0}, [("lr", Grid(2.0))], seeds=(0,), passes=0)


def test_multipliers_found_label_by_label_then_again_where_they_moved():
  """A loss whose per-label optimum is known, with an interaction between
  two labels (a first pass lands off the optimum; the second pass, over the
  labels that moved, corrects it): visited in the order given, the grid
  1/2..2 in sqrt(2) steps extended past 2 where the optimum lies beyond."""
  labels = ("embedding", "attn_qkv", "attn_out", "mlp", "norm")
  optimum = {"embedding": 0.5, "attn_qkv": 1.0, "attn_out": 2.82843, "mlp": 1.41421,
             "norm": 1.0}
  calls = []

  def objective(scales, seed):
    calls.append((tuple(sorted(scales.items())), seed))
    assert set(scales) == set(labels)
    # While attn_out is still at 1, the embedding's best lies a step higher.
    coupling = (math.log(scales["embedding"]) - math.log(optimum["embedding"])) * (
        math.log(scales["attn_out"]) - math.log(optimum["attn_out"]))
    return _bowl(optimum)(scales, seed) + 0.5 * coupling

  search = search_multipliers(objective, labels, seeds=(0, 1))
  assert search.done and search.point == optimum
  first, second = search.path[:5], search.path[5:]
  assert [s.name for s in first] == list(labels) and first[0].chosen == 0.707107
  assert [s.name for s in second] == ["embedding", "attn_out", "mlp"]
  assert second[0].chosen == 0.5
  assert sorted(first[0].losses) == [0.5, 0.707107, 1.0, 1.41421, 2.0]
  assert max(first[2].losses) > 2.0 and all(stage.inside for stage in search.path)
  assert len(calls) == len(set(calls))
  with pytest.raises(ValueError, match="labels must be distinct"):
    search_multipliers(objective, ("mlp", "mlp"), seeds=(0,))


def test_search_multipliers_tunes_a_small_model_of_your_own():
  """The helper with a real training function: a two-layer network trained
  by `layer_adam` with the table's multipliers (its own labels, passed as
  `param_labels`). The table found is on the grid, visited in label order,
  and no worse at its seeds than the uniform table it started from."""
  import jax
  import jax.numpy as jnp
  import optax

  from layeropt_jax import UNIT_SCALES, layer_adam

  labels = {"hidden": "embedding", "out": "mlp"}
  x = jax.random.normal(jax.random.key(0), (64, 8))
  y = jnp.tanh(x @ jax.random.normal(jax.random.key(1), (8, 16))) @ jax.random.normal(
      jax.random.key(2), (16, 1))

  def loss(params):
    return jnp.mean((jnp.tanh(x @ params["hidden"]) @ params["out"] - y) ** 2)

  def objective(scales, seed):
    tx = layer_adam(3e-2, weight_decay=0.0, scales={**UNIT_SCALES, **scales},
                    param_labels=labels)
    keys = jax.random.split(jax.random.key(seed))
    params = {"hidden": 0.3 * jax.random.normal(keys[0], (8, 16)),
              "out": 0.3 * jax.random.normal(keys[1], (16, 1))}

    @jax.jit
    def train(params):
      def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None
      return loss(jax.lax.scan(step, (params, tx.init(params)), length=60)[0][0])

    return float(train(params))

  search = search_multipliers(objective, ("embedding", "mlp"), seeds=(0,))
  assert set(search.point) == {"embedding", "mlp"}
  assert all(math.log(v, SQRT2) == pytest.approx(round(math.log(v, SQRT2)), abs=1e-4)
             for v in search.point.values())
  assert [s.name for s in search.path[:2]] == ["embedding", "mlp"]
  # The uniform table is the first stage's centre; the last stage's choice
  # is the table found.
  first, last = search.path[0], search.path[-1]
  assert last.losses[last.chosen] <= first.losses[1.0]


def test_a_point_reached_along_two_paths_is_one_point():
  """From a start, every stage's points lie on the start's lattice: sqrt(2)
  four times from 1 is 4, around 5.65685 a step up is 8 (not 7.99999), so a
  later stage reuses an earlier one's evaluations."""
  grid = Grid(SQRT2)
  assert grid.value(5.65685, 1) == 7.99999  # alone, rounding drifts
  assert grid.value(5.65685, 1, anchor=1.0) == 8.0
  assert [grid.value(2.82843, k, anchor=1.0) for k in (-1, 0, 1, 2)] == [
      2.0, 2.82843, 4.0, 5.65685]
  assert Grid(2.0, complement=True).value(0.9, -1, anchor=0.95) == 0.95
  # Stage 1 stops at 5.65685 (its extensions spent); stage 2 around it
  # asks only for the two points above that stage 1 has not evaluated.
  objective = _bowl({"x": 8.0})
  calls = []
  search = tune(lambda p, s: calls.append(p["x"]) or objective(p, s), {"x": 1.0},
                [("x", Grid(SQRT2, width=2))] * 2, seeds=(0,), max_extensions=3)
  assert [stage.chosen for stage in search.path] == [5.65685, 8.0]
  assert sorted(set(search.path[1].losses) - set(search.path[0].losses)) == [8.0, 11.3137]
  assert len(calls) == len(set(calls)) and search.path[1].inside
