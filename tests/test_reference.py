"""Every method against the float64 NumPy reference, step by step."""

import jax
import numpy as np
import optax
import pytest

import layeropt_jax
from tests import reference, trees

STEPS = 30
LR = 3e-3
CUSTOM_SCALES = dict(embedding=0.5, attn_qkv=2.0, attn_out=0.7, mlp=1.3,
                     norm=0.2, head=1.7)

# (name, overrides): defaults, then non-default hyperparameters.
CASES = [
    ("lamvs", {}),
    ("lamvs", dict(b1=0.8, b2=0.99, eps=1e-5, weight_decay=0.03,
                   scales=CUSTOM_SCALES)),
    # A rate per component: embeddings and the head undecayed.
    ("lamvs", dict(weight_decay=dict(embedding=0.0, attn_qkv=0.2, attn_out=0.05,
                                     mlp=0.1, norm=0.3, head=0.0))),
    ("ladm", {}),
    # Past the alpha warm-up after step 10.
    ("ladm", dict(b1=0.9, b_slow=0.99, b2=0.98, alpha_warmup_steps=10,
                  eps=1e-6, weight_decay=0.02, scales=CUSTOM_SCALES)),
    ("aovs", {}),
    ("aovs", dict(b1=0.85, b2=0.99, gamma=0.3, ns_steps=3, eps=1e-6,
                  weight_decay=0.05, scales=CUSTOM_SCALES)),
    ("aovs", dict(orthogonalize=False, gamma=0.5)),
    ("lamo", {}),
    ("lamo", dict(b1=0.95, b2=0.99, eps=1e-6, normalize_grads=False,
                  weight_decay=0.0, scales=CUSTOM_SCALES)),
    ("malao", {}),  # tau = 1 with norms in [0.01, 10]: active and inactive.
    ("malao", dict(clip_threshold=100.0, b1=0.8)),  # never active
    ("malao", dict(clip_threshold=0.02, b2=0.99, scales=CUSTOM_SCALES)),
    ("layer_adam", {}),
    ("layer_adam", dict(b1=0.7, b2=0.9, eps=1e-4, scales=CUSTOM_SCALES)),
    ("stable_adamw", {}),
    ("stable_adamw", dict(b1=0.5, b2=0.999, eps=1e-6, weight_decay=0.2,
                          scales=CUSTOM_SCALES)),
    ("adamw", {}),
    ("muon", {}),
    ("muon", dict(beta=0.9, ns_steps=4, b2=0.99, weight_decay=0.01)),
]
ORTHOGONALIZED = {"aovs", "muon"}


def _case_id(case):
  name, overrides = case
  return name + ("-" + "-".join(sorted(overrides)) if overrides else "")


def run_both(name, overrides, tied, steps=STEPS, seed=0, vocab=48, stacked=False):
  params = trees.qwen3_params(tied=tied, seed=seed, vocab=vocab, stacked=stacked)
  labels = trees.flat_labels(params)
  tx = layeropt_jax.get_optimizer(name, LR, **overrides)
  ref = reference.Reference(name, LR, labels, **overrides)

  rng = np.random.default_rng(seed + 1)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=trees.quadratic_loss))
  state = tx.init(params)
  jax_params, ref_params = params, trees.flat(params)
  # The optimizer's parameter change, summed in float64 so that rounding the
  # float32 parameters themselves does not count against the optimizer.
  change = {path: np.zeros_like(p) for path, p in ref_params.items()}
  for _ in range(steps):
    grads = trees.random_grads(params, rng)
    updates, state = update(grads, state, jax_params)
    jax_params = optax.apply_updates(jax_params, updates)
    for path, u in trees.flat(updates).items():
      change[path] += u
    ref_params = ref.step(ref_params, trees.flat(grads))
  ref_change = {path: ref_params[path] - p for path, p in trees.flat(params).items()}
  return change, ref_change, labels, ref


def assert_close(name, overrides, got, want, labels):
  assert set(got) == set(want)
  for path, delta_want in want.items():
    delta_got = got[path]
    orthogonal = (name in ORTHOGONALIZED
                  and overrides.get("orthogonalize", True)
                  and reference.is_hidden_matrix(path, delta_want, labels[path]))
    tol = 3e-3 if orthogonal else 1e-4
    err = np.max(np.abs(delta_got - delta_want)) / np.max(np.abs(delta_want))
    assert err <= tol, f"{path}: relative error {err:.2e} > {tol}"


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_reference(case, tied):
  name, overrides = case
  got, want, labels, ref = run_both(name, overrides, tied)
  assert_close(name, overrides, got, want, labels)
  if name == "malao" and not overrides:
    assert ref.events["clipped"] > 0 and ref.events["unclipped"] > 0
  if name == "malao" and overrides.get("clip_threshold") == 100.0:
    assert ref.events["clipped"] == 0
  if name == "stable_adamw":
    assert ref.events["clipped"] > 0 and ref.events["unclipped"] > 0


# Layers stacked on a leading axis (nnx.scan, levanter's Stacked): each
# layer's slice of a hidden weight is its own matrix, the stacked norm scales
# (2-D) are neither orthogonalised nor decayed.
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ORTHOGONALIZED],
                         ids=[_case_id(c) for c in CASES if c[0] in ORTHOGONALIZED])
def test_stacked_layers_match_reference(case):
  name, overrides = case
  got, want, labels, _ = run_both(name, overrides, tied=True, steps=10, stacked=True)
  assert_close(name, overrides, got, want, labels)


# Embeddings of 98k-99k elements: StableAdamW reduces tensors this large in
# blocks of rows (a loop and a tail); 4099 rows is prime, 4096 splits in 64.
@pytest.mark.parametrize("vocab", [4099, 4096])
def test_stable_adamw_blockwise_statistic_matches_reference(vocab):
  got, want, labels, ref = run_both("stable_adamw", {}, tied=True, steps=10, vocab=vocab)
  assert_close("stable_adamw", {}, got, want, labels)
  assert ref.events["clipped"] > 0


def test_layer_adam_with_the_uniform_table_is_adamw():
  """The benchmark's "AdamW with multipliers" is layer_adam: at 1.0 for
  every label it computes AdamW's updates bit for bit (same defaults, same
  decayed weights), so that a tuned table is judged against AdamW itself."""
  params = trees.qwen3_params(tied=False)
  rng = np.random.default_rng(0)
  adamw = layeropt_jax.adamw(3e-3, weight_decay=0.2)
  uniform = layeropt_jax.layer_adam(3e-3, weight_decay=0.2, scales=layeropt_jax.UNIT_SCALES)
  states = [adamw.init(params), uniform.init(params)]
  ours = [params, params]
  for _ in range(3):
    grads = trees.random_grads(params, rng)
    for i, tx in enumerate((adamw, uniform)):
      ours[i], states[i] = trees.step(tx, ours[i], grads, states[i])
  for got, want in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ours[0])):
    np.testing.assert_array_equal(got, want)
