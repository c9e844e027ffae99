"""An independent float64 NumPy reference of every method, from docs/methods.rst.

Written from the equations alone, leaf by leaf, without JAX or optax, so that
a test comparing the library against it checks the library against the
specification. Parameters and gradients are dicts path -> np.ndarray; labels
are dicts path -> component.
"""

from __future__ import annotations

import numpy as np

LAMVS = dict(embedding=1.0, attn_qkv=1.5, attn_out=1.5, mlp=1.2, norm=1.0, head=2.0)
LADM = dict(embedding=0.8, attn_qkv=1.05, attn_out=0.95, mlp=1.1, norm=0.65, head=0.9)
MALAO = dict(embedding=1.0, attn_qkv=1.5, attn_out=1.5, mlp=0.8, norm=1.0, head=1.0)
ONES = dict(embedding=1.0, attn_qkv=1.0, attn_out=1.0, mlp=1.0, norm=1.0, head=1.0)
HIDDEN = ("attn_qkv", "attn_out", "mlp")

DEFAULTS = {
    "lamvs": dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, scales=LAMVS),
    "ladm": dict(b1=0.95, b_slow=0.995, b2=0.95, alpha_warmup_steps=500,
                 eps=1e-8, weight_decay=0.1, scales=LADM),
    "aovs": dict(b1=0.9, b2=0.95, gamma=0.05, eps=1e-8, orthogonalize=True,
                 ns_steps=5, weight_decay=0.1, scales=LAMVS),
    "lamo": dict(b1=0.9, b2=0.95, eps=1e-8, normalize_grads=True,
                 weight_decay=0.1, scales=ONES),
    "malao": dict(b1=0.9, b2=0.95, eps=1e-8, clip_threshold=1.0,
                  weight_decay=0.1, scales=MALAO),
    "layer_adam": dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                       scales=LAMVS),
    "stable_adamw": dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                         scales=ONES),
    "adamw": dict(b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, scales=ONES),
    "muon": dict(beta=0.95, ns_steps=5, b1=0.9, b2=0.95, eps=1e-8,
                 weight_decay=0.1, scales=ONES),
}


def newton_schulz(x: np.ndarray, steps: int) -> np.ndarray:
  """Muon's quintic iteration on x / ||x||_F, on the wide orientation."""
  a, b, c = 3.4445, -4.7750, 2.0315
  tall = x.shape[0] > x.shape[1]
  y = x.T if tall else x
  y = y / (np.linalg.norm(y) + 1e-8)
  for _ in range(steps):
    gram = y @ y.T
    y = a * y + (b * gram + c * gram @ gram) @ y
  return y.T if tall else y


def orthogonalized(u: np.ndarray, steps: int, layout=None) -> np.ndarray:
  """Each matrix of `u` orthogonalised and scaled to AdamW's RMS.

  `layout` is `(reduction axes, output axes)`; every other axis indexes
  independent matrices. None: `u` is one matrix.
  """
  if layout is None:
    return newton_schulz(u, steps) * 0.2 * np.sqrt(max(u.shape))
  reduction, output = (tuple(a % u.ndim for a in axes) for axes in layout)
  batch = tuple(a for a in range(u.ndim) if a not in reduction + output)
  moved = np.transpose(u, batch + reduction + output)
  rows = int(np.prod([u.shape[a] for a in reduction]))
  cols = int(np.prod([u.shape[a] for a in output]))
  matrices = moved.reshape(-1, rows, cols)
  done = np.stack([orthogonalized(m, steps) for m in matrices]).reshape(moved.shape)
  return np.transpose(done, np.argsort(batch + reduction + output))


def is_weight(path: str, p: np.ndarray) -> bool:
  """Kernels and embeddings: two or more dimensions, not a bias or a scale."""
  return p.ndim >= 2 and path.rsplit("/", 1)[-1] not in ("bias", "b", "scale")


def layout_of(path: str, p: np.ndarray, label: str):
  """How a hidden weight is read as matrices (None: it is not one): a matrix,
  or a stack of them on the first axis."""
  if label not in HIDDEN or not is_weight(path, p):
    return None
  return ((p.ndim - 2,), (p.ndim - 1,))


def is_hidden_matrix(path: str, p: np.ndarray, label: str) -> bool:
  return layout_of(path, p, label) is not None


class Reference:
  """One optimizer, stepped on float64 copies of the parameters.

  `events` counts, per kind, how often a data-dependent branch was taken
  (MALAO's clip, StableAdamW's update clip), so tests can check that a run
  exercised both sides.
  """

  def __init__(self, name, learning_rate, labels, **overrides):
    unknown = set(overrides) - set(DEFAULTS[name])
    assert not unknown, unknown
    self.name = name
    self.lr = learning_rate
    self.labels = labels
    self.hp = {**DEFAULTS[name], **overrides}
    self.t = 0
    self.state = {}
    self.events = {"clipped": 0, "unclipped": 0}

  def step(self, params, grads):
    self.t += 1
    new = {}
    for path, p in params.items():
      p = np.asarray(p, np.float64)
      g = np.asarray(grads[path], np.float64)
      label = self.labels[path]
      st = self.state.setdefault(path, {})
      # The matrices of a hidden weight (None for any other leaf).
      self.layout = layout_of(path, p, label)
      u = getattr(self, "_" + self.name)(g, p, label, st)
      if is_weight(path, p):
        rate = self.hp["weight_decay"]
        u = u + (rate[label] if isinstance(rate, dict) else rate) * p
      new[path] = p - self.lr * self.hp["scales"][label] * u
    return new

  # -- helpers ---------------------------------------------------------------

  def _count(self, clipped):
    self.events["clipped" if clipped else "unclipped"] += 1

  def _adam_moments(self, g, st, b1, b2):
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v_old"] = st.get("v", np.zeros_like(g))
    st["v"] = b2 * st["v_old"] + (1 - b2) * g * g
    t = self.t
    return st["m"] / (1 - b1**t), st["v"] / (1 - b2**t)

  def _adam(self, g, st):
    h = self.hp
    m_hat, v_hat = self._adam_moments(g, st, h["b1"], h["b2"])
    return m_hat / (np.sqrt(v_hat) + h["eps"])

  # -- methods ---------------------------------------------------------------

  def _lamvs(self, g, p, label, st):
    h = self.hp
    m_hat, v_hat = self._adam_moments(g, st, h["b1"], h["b2"])
    eps_t = h["eps"] / np.sqrt(self.t)
    return m_hat / np.sqrt(v_hat + eps_t)

  def _ladm(self, g, p, label, st):
    h, t = self.hp, self.t
    st["mf"] = h["b1"] * st.get("mf", 0.0) + (1 - h["b1"]) * g
    st["ms"] = h["b_slow"] * st.get("ms", 0.0) + (1 - h["b_slow"]) * g
    st["v"] = h["b2"] * st.get("v", 0.0) + (1 - h["b2"]) * g * g
    alpha = 0.95 - 0.15 * min(t / h["alpha_warmup_steps"], 1.0)
    m_hat = (alpha * st["mf"] / (1 - h["b1"]**t)
             + (1 - alpha) * st["ms"] / (1 - h["b_slow"]**t))
    return m_hat / (np.sqrt(st["v"] / (1 - h["b2"]**t)) + h["eps"])

  def _aovs(self, g, p, label, st):
    h, t = self.hp, self.t
    m_hat, v_hat = self._adam_moments(g, st, h["b1"], h["b2"])
    v_old_hat = v_hat if t == 1 else st["v_old"] / (1 - h["b2"]**(t - 1))
    v_tilde = (1 - h["gamma"]) * v_hat + h["gamma"] * v_old_hat
    u = m_hat / (np.sqrt(v_tilde) + h["eps"])
    if h["orthogonalize"] and self.layout is not None:
      u = orthogonalized(u, h["ns_steps"], self.layout)
    return u

  def _lamo(self, g, p, label, st):
    h, t = self.hp, self.t
    n = np.sqrt(np.sum(g * g))
    beta = h["b1"] * (1 - np.exp(-n))
    if h["normalize_grads"]:
      g = g / (n + 1e-8)
    st["m"] = beta * st.get("m", 0.0) + (1 - beta) * g
    st["P"] = st.get("P", 1.0) * beta
    st["v"] = h["b2"] * st.get("v", 0.0) + (1 - h["b2"]) * g * g
    return (st["m"] / (1 - st["P"])) / (
        np.sqrt(st["v"] / (1 - h["b2"]**t)) + h["eps"])

  def _malao(self, g, p, label, st):
    tau = self.hp["clip_threshold"]
    n = np.sqrt(np.sum(g * g))
    self._count(n > tau)
    return self._adam(g * min(1.0, tau / n) if n > 0 else g, st)

  def _layer_adam(self, g, p, label, st):
    return self._adam(g, st)

  _adamw = _layer_adam

  def _stable_adamw(self, g, p, label, st):
    h = self.hp
    m_hat, v_hat = self._adam_moments(g, st, h["b1"], h["b2"])
    rms = np.sqrt(np.mean(g * g / np.maximum(v_hat, h["eps"]**2)))
    self._count(rms > 1)
    return m_hat / (np.sqrt(v_hat) + h["eps"]) / max(1.0, rms)

  def _muon(self, g, p, label, st):
    h, t = self.hp, self.t
    if self.layout is None:
      return self._adam(g, st)
    beta = h["beta"]
    st["m"] = beta * st.get("m", 0.0) + (1 - beta) * g
    # Nesterov: look one step ahead along the bias-corrected momentum.
    m_hat = beta * st["m"] / (1 - beta**(t + 1)) + (1 - beta) * g / (1 - beta**t)
    return orthogonalized(m_hat, h["ns_steps"], self.layout)
