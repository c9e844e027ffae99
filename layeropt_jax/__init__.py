"""layeropt_jax: layer-wise adaptive optimizers as optax transformations."""

from layeropt_jax._adaptive import scale_by_adam
from layeropt_jax.aovs import aovs, orthogonalize_matrix, scale_by_aovs
from layeropt_jax.baselines import adamw, ademamix, lamb, lion, muon, sophia
from layeropt_jax.labels import (
    COMPONENTS,
    DEFAULT_LABEL_RULES,
    hidden_matrix_mask,
    label_params,
)
from layeropt_jax.ladm import ScaleByLadmState, ladm, ladm_alpha, scale_by_ladm
from layeropt_jax.lamo import ScaleByLamoState, lamo, lamo_beta, scale_by_lamo
from layeropt_jax.lamvs import lamvs, scale_by_lamvs
from layeropt_jax.layer_adam import layer_adam
from layeropt_jax.layerwise import (
    AOVS_SCALES,
    LADM_SCALES,
    LAMVS_SCALES,
    MALAO_SCALES,
    UNIT_SCALES,
    matrices_mask,
    scale_by_layer,
)
from layeropt_jax.malao import clip_by_tensor_norm, malao
from layeropt_jax.registry import (
    OPTIMIZERS,
    get_optimizer,
    hyperparameters,
)
from layeropt_jax.stable_adam import scale_by_stable_adam, stable_adamw

__version__ = "0.1.0"
