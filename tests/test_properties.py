"""Property tests: random shapes, scales and hyperparameters (hypothesis)."""

import chex
from hypothesis import given, settings, strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax

import layeropt_jax
from layeropt_jax.labels import COMPONENTS
from tests import reference, trees

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)
LR = 1e-2

shapes = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)
leaves = st.tuples(shapes, st.sampled_from(COMPONENTS))
param_specs = st.lists(leaves, min_size=1, max_size=4)
betas = st.floats(0.0, 0.99)
decays = st.floats(0.5, 0.999)
eps = st.floats(1e-8, 1e-4)


@st.composite
def hyperparameters(draw, name):
  common = dict(b1=draw(betas), b2=draw(decays), eps=draw(eps),
                weight_decay=draw(st.floats(0.0, 0.3)))
  extra = {
      "lamvs": {},
      "ladm": dict(b_slow=draw(decays),
                   alpha_warmup_steps=draw(st.integers(1, 10))),
      "aovs": dict(gamma=draw(st.floats(0.0, 0.9)),
                   ns_steps=draw(st.integers(1, 6)),
                   orthogonalize=draw(st.booleans())),
      "lamo": dict(normalize_grads=draw(st.booleans())),
      "malao": dict(clip_threshold=draw(st.floats(0.01, 10.0))),
      "layer_adam": {},
      "stable_adamw": {},
      "muon": dict(beta=draw(betas), ns_steps=draw(st.integers(1, 6))),
  }[name]
  scales = dict(zip(COMPONENTS, draw(
      st.lists(st.floats(0.0, 3.0), min_size=6, max_size=6))))
  if name != "muon":
    extra["scales"] = scales
  return {**common, **extra}


def _tree(specs, rng):
  params = {f"leaf{i}": jnp.asarray(0.1 * rng.standard_normal(shape), jnp.float32)
            for i, (shape, _) in enumerate(specs)}
  labels = {f"leaf{i}": label for i, (_, label) in enumerate(specs)}
  return params, labels


@st.composite
def cases(draw):
  name = draw(st.sampled_from(sorted(set(reference.DEFAULTS) - {"adamw"})))
  return name, draw(param_specs), draw(hyperparameters(name)), draw(
      st.floats(-3.0, 2.0)), draw(st.integers(0, 2**16))


@SETTINGS
@given(cases())
def test_random_trees_agree_with_reference(case):
  name, specs, hp, log_scale, seed = case
  rng = np.random.default_rng(seed)
  params, labels = _tree(specs, rng)
  tx = layeropt_jax.get_optimizer(name, LR, param_labels=labels, **hp)
  ref = reference.Reference(name, LR, labels, **hp)
  state = tx.init(params)
  p, ref_p = params, trees.flat(params)
  change = {k: 0.0 for k in ref_p}
  for _ in range(3):
    grads = jax.tree.map(
        lambda x: jnp.asarray(rng.standard_normal(x.shape) * 10.0**log_scale,
                              jnp.float32), params)
    updates, state = tx.update(grads, state, p)
    chex.assert_tree_all_finite(updates)
    p = optax.apply_updates(p, updates)
    for k, u in trees.flat(updates).items():
      change[k] = change[k] + u
    ref_p = ref.step(ref_p, trees.flat(grads))
  for k, want in ref_p.items():
    want = want - trees.flat(params)[k]
    orthogonal = (name in ("aovs", "muon") and hp.get("orthogonalize", True)
                  and reference.is_hidden_matrix(k, want, labels[k]))
    tol = 3e-3 if orthogonal else 1e-4
    np.testing.assert_allclose(change[k], want, rtol=tol,
                               atol=tol * np.max(np.abs(want)) + 1e-12,
                               err_msg=f"{name} {k} {hp}")


@SETTINGS
@given(st.sampled_from(list(layeropt_jax.OPTIMIZERS)), param_specs,
       st.integers(0, 2**16))
def test_zero_gradients_give_finite_updates(name, specs, seed):
  params, labels = _tree(specs, np.random.default_rng(seed))
  kwargs = ({"param_labels": labels}
            if "param_labels" in layeropt_jax.hyperparameters(name) else {})
  tx = layeropt_jax.get_optimizer(name, LR, **kwargs)
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  for _ in range(2):
    updates, state = tx.update(zeros, state, params,
                               obj_fn=trees.quadratic_loss)
    chex.assert_tree_all_finite(updates)
    chex.assert_tree_all_finite(state)
